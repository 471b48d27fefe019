"""The fal protocol client: the one place batchrun talks HTTP to an inference API.

`FalClient.call` sends a planned request the way its job asks (docs/fal-protocol.md):

- run: one POST to `<run base>/<endpoint>[/<path>]`; the answer is the model's.
- subscribe: POST to the queue, journal the handle (`Events.submitted`), follow the status through
  the SSE stream (`status_url/stream`) or, when that is unavailable, by polling with backoff, then
  GET `response_url`. Three HTTP requests per job when the stream works.

How requests go on the wire (one httpx transport; deadlines, answer size bounds, the target's
hosts only) is `batchrun.client.transport`'s business. Every failure becomes an `Outcome` with a
record-shaped error: no httpx (or aiohttp) exception leaves this module; they are mapped once, in
`transport.transport_failure`, and what is retried is decided by `batchrun.client.retry`. Every
string that reaches an Outcome passes through the run's `Redactor`.

A subscribe without `client_timeout` is followed for at most FOLLOW_CEILING_S (docs/spec.md): a
status that never completes must not hold a nightly run forever.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from collections.abc import Mapping
from typing import Any

import anyio
import httpx
import httpx_sse

from batchrun.client.failover import BACKUP_HOSTS
from batchrun.client.inputs import InputFileError, encode_files, has_files
from batchrun.client.queue import (
    STATUSES,
    CallState,
    Events,
    InvalidAnswer,
    QueueHandle,
)
from batchrun.client.retry import (
    Phase,
    TransportFailure,
    Verdict,
    backoff_delay,
    error_record,
    get_retried,
    judge_response,
    judge_transport,
    shorten,
)
from batchrun.client.storage import Uploads
from batchrun.client.transport import SEND_ERRORS, Answer, Call, Sender, origin, ssl_context
from batchrun.plan.planner import PlannedRequest
from batchrun.redact import Redactor
from batchrun.spec.checks import HEADER_CONTROL
from batchrun.spec.model import Job, RetryPolicy
from batchrun.spec.template import TemplateError, env_names, resolve_env

# fal's smallest start timeout is *more than* this (the spec schema's start_timeout bound too).
MIN_START_TIMEOUT_S = 1.0

__all__ = ["Events", "FalClient", "Outcome", "QueueHandle"]

CANCEL_GRACE = 5.0  # bound on the best-effort cancel after a client timeout
MAX_POLL_INTERVAL = 2.0
# The follow deadline of a subscribe without client_timeout: a day covers the longest fal queues
# seen; past it the request is cancelled and recorded as a client_timeout.
FOLLOW_CEILING_S = 24 * 3600.0
STREAM_DRAIN_S = 0.5  # after COMPLETED, how long to wait for the server to end the stream (it should at once)



@dataclasses.dataclass(slots=True)
class Outcome:
    ok: bool
    result: dict[str, Any] | None  # the model's JSON object on success
    error: dict[str, Any] | None  # {"type", "status_code", "detail", "retryable"} (record schema)
    request_id: str | None
    attempts: int  # HTTP attempts of the run call or queue submit (>= 1 if anything was sent)
    logs: list[dict[str, Any]] | None  # runner logs when with_logs
    metrics: dict[str, Any] | None
    queue_s: float | None  # time spent IN_QUEUE (subscribe)
    served_from: str | None  # X-Fal-Served-From when present
    inputs: dict[str, dict[str, Any]] | None = None  # `$file` arguments sent: path -> {path, sha256, bytes}
    asked: dict[str, Any] | None = None  # the options that shaped the call (record field `asked`)
    rerouted_to: str | None = None  # the endpoint that served it, when fal said it rerouted (§9.4)


@dataclasses.dataclass(slots=True)
class _Prepared:
    post: Call
    start_timeout_sent: bool
    inputs: dict[str, dict[str, Any]] | None
    asked: dict[str, Any]


# Fallbacks and media lifetime (docs/fal-protocol.md §9.4, §9.5).
DISABLE_FALLBACKS = "x-fal-disable-fallbacks"  # fal's reliability docs
DISABLE_FALLBACKS_LEGACY = "x-app-fal-disable-fallback"  # fal's header reference
LIFECYCLE_PREFERENCE = "X-Fal-Object-Lifecycle-Preference"
# fal publishes no header naming the endpoint a rerouted request ran on (§9.4: UNCONFIRMED); this is
# the embedded server's, and the one place to change when fal documents its own.
FALLBACK_ENDPOINT = "x-fal-fallback-endpoint"

_URL_CACHE_SIZE = 1024  # distinct (job, path, hint, headers) a run posts with (more: built each time)


@dataclasses.dataclass(slots=True)
class _Fixed:
    """The part of a POST that does not depend on the request's arguments."""

    job: Job  # the key holds id(job): this proves the entry is that job's, not a reused id's
    url: str
    parsed: httpx.URL
    headers: dict[str, str]  # shared by the Calls of the job: nothing writes to a Call's headers
    start_timeout: float | None
    asked: dict[str, Any]  # copied per request (CallState.asked_seen)


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; absurd nesting recurses
        return None


def _version() -> str:
    import batchrun

    return str(batchrun.__version__)


def _origins(*urls: str) -> set[str]:
    """The hosts requests may go to; an unparsable base URL adds none (every request to it is an
    input_error when it is built, see _prepare)."""
    found = set()
    for url in urls:
        try:
            found.add(origin(url))
        except httpx.InvalidURL:
            pass
    return found


def _follow_deadline(request: PlannedRequest) -> float:
    return request.job.client_timeout or FOLLOW_CEILING_S


class FalClient:
    """One per run, shared by all workers; an async context manager."""

    def __init__(
        self,
        *,
        run_url: str,
        queue_url: str,
        auth: str | None,
        redactor: Redactor,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
        environ: Mapping[str, str] | None = None,
        poll_interval: float = 0.1,
        rng: random.Random | None = None,
        ca_bundle: str | None = None,
        uploads: Uploads | None = None,
        backup_hosts: Mapping[str, str] = BACKUP_HOSTS,
    ) -> None:
        """`uploads`: where large `$file` inputs go (batchrun.client.storage); None: data URIs only.
        `backup_hosts`: fal's backup domains (batchrun.client.failover); tests map loopback ports."""
        import os

        self._uploads = uploads

        self._run_url = run_url.rstrip("/")
        self._queue_url = queue_url.rstrip("/")
        self._redactor = redactor
        self._environ = os.environ if environ is None else environ
        self._poll_interval = poll_interval
        self._rng = rng or random.Random()
        headers = {"User-Agent": f"batchrun/{_version()}"}
        if auth is not None:
            headers["Authorization"] = auth
            redactor.add(auth)
            redactor.add(auth.partition(" ")[2])
        # Requests (and the key) go only to the target's own hosts: a queue answer naming any other
        # host is refused (docs/fal-protocol.md §10).
        self._sender = Sender(
            headers=headers,
            max_connections=max_connections,
            transport=transport,
            origins=_origins(self._run_url, self._queue_url),
            verify=ssl_context(ca_bundle) if transport is None else None,
            backup_hosts=backup_hosts,
            on_failover=self._failed_over,
        )
        self._failed_over_from: set[str] = set()
        self._fixed: dict[tuple[int, str, str | None, tuple[tuple[str, str], ...]], _Fixed] = {}  # see _prepare

    def _failed_over(self, primary: str, backup: str, reason: str) -> None:
        """Said once per host a run: fal-client logs every time, which floods a batch."""
        if primary not in self._failed_over_from:
            self._failed_over_from.add(primary)
            print(f"batchrun: warning: cannot connect to {primary} ({self._redactor.text(reason)}); a request "
                  f"that cannot connect there goes to fal's backup domain {backup}", file=sys.stderr)

    async def __aenter__(self) -> FalClient:
        await self._sender.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._sender.__aexit__(*exc_info)

    # ---- public operations --------------------------------------------------------------------

    async def call(self, request: PlannedRequest, events: Events) -> Outcome:
        """Send `request` in its job's mode and return how it ended. Never raises for a failed
        request; cancellation propagates (a journaled queue request keeps running)."""
        try:
            prepared = await self._prepare(request)
        except (TemplateError, InputFileError, ValueError, TypeError) as exc:
            detail = self._redactor.text(str(exc))
            error = error_record("input_error", None, detail, False)
            return Outcome(False, None, error, None, 0, None, None, None, None)  # nothing was asked
        if request.mode == "run":
            return await self._run(request, prepared, events)
        return await self._subscribe(request, prepared, events)

    async def reattach(self, request: PlannedRequest, handle: QueueHandle, events: Events) -> Outcome:
        """Follow an already-submitted queue request to its result (resume). Never submits; the
        journaled submit counts as the one attempt."""
        state = CallState(attempts=1, handle=handle)
        with anyio.move_on_after(_follow_deadline(request)) as scope:
            outcome, _ = await self._follow(request, handle, events, state)
            return outcome
        assert scope.cancelled_caught
        return await self._timed_out(request, state)

    async def cancel(self, handle: QueueHandle) -> bool:
        """Ask the queue to cancel; True when it accepted (2xx). Transport errors are retried a
        few times; a 400 (already completed) or 404 (unknown) is False. Never raises."""
        for attempt in range(1, 4):
            answer = await self._sender.exchange(Call("PUT", handle.cancel_url, None, None, {}, True, None))
            if not isinstance(answer, TransportFailure):
                return answer.is_success
            if answer.fatal:
                return False
            await anyio.sleep(0.1 * attempt)
        return False

    # ---- building and sending -----------------------------------------------------------------

    async def _prepare(self, request: PlannedRequest) -> _Prepared:
        job = request.job
        # Everything but the body is the same for every request of a job with the same path, hint
        # and headers: built and checked once (see _Fixed), unless the headers name env values.
        key = (id(job), request.path, request.hint, tuple(request.headers.items()))
        fixed = self._fixed.get(key)
        if fixed is not None and fixed.job is not job:
            fixed = None
        header_env = env_names(request.headers) if fixed is None else set()
        for name in header_env:
            if name in self._environ:
                self._redactor.add(self._environ[name])
        used: set[str] = set()
        arguments = resolve_env(request.arguments, self._environ, used)
        for name in used:  # before anything is sent or raised with their values in it
            self._redactor.add(self._environ[name])
        if fixed is None:
            fixed = self._fix(request)  # first: a header that cannot be sent fails before any upload
            if not header_env and len(self._fixed) < _URL_CACHE_SIZE:
                self._fixed[key] = fixed
        inputs = None
        if has_files(arguments):
            # upload: true sends every file to storage (threshold 0), false none (no uploader), unset by size
            arguments, inputs = await encode_files(arguments, None if job.upload is False else self._uploads,
                                                   threshold=0 if job.upload else None)
        try:
            body = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        except UnicodeEncodeError:
            # A lone surrogate: Python's stand-in for bytes that are not UTF-8 (in an environment
            # variable or a file name) or a JSON "\ud800" escape. Said without quoting the text.
            raise ValueError("the arguments hold text that is not valid Unicode (a lone surrogate: bytes that "
                             "are not UTF-8 in an environment variable or a file name, or a \\ud800-style "
                             "escape in a dataset); nothing was sent") from None
        queue = request.mode != "run"
        post = Call("POST", fixed.url, fixed.parsed, body, fixed.headers, queue, None if queue else job.timeout,
                    max_bytes=job.max_answer_bytes)
        return _Prepared(post, fixed.start_timeout is not None, inputs or None, fixed.asked)

    def _fix(self, request: PlannedRequest) -> _Fixed:
        """The headers, URL and `asked` of `request`'s POST. Raises TemplateError or ValueError
        for a request that cannot be sent."""
        job = request.job
        headers = {"Content-Type": "application/json"}
        # Job headers may replace our defaults (a custom Authorization for a proxy), but the typed
        # options below are the spec's explicit word and win over raw headers.
        headers.update(resolve_env(request.headers, self._environ))
        start_timeout = job.start_timeout
        if request.mode == "subscribe" and start_timeout is None and (job.client_timeout or 0) > MIN_START_TIMEOUT_S:
            # fal-client: client_timeout implies start_timeout, but fal refuses one of 1 s or less
            # ("Timeout must be greater than 1 seconds"): a shorter client_timeout sends none.
            start_timeout = job.client_timeout
        if start_timeout is not None:
            headers["X-Fal-Request-Timeout"] = str(float(start_timeout))
        if request.hint is not None:
            headers["X-Fal-Runner-Hint"] = request.hint
        if request.mode == "subscribe" and job.priority is not None:
            headers["X-Fal-Queue-Priority"] = job.priority
        if job.fallbacks is False:
            # Two names are documented for the same switch (docs/fal-protocol.md §9.4); which one
            # the platform honours is unconfirmed, and it ignores headers it does not know.
            headers[DISABLE_FALLBACKS] = headers[DISABLE_FALLBACKS_LEGACY] = "true"
        if job.media_lifetime is not None:
            headers[LIFECYCLE_PREFERENCE] = job.media_lifetime.header()
        for name, value in headers.items():
            # aiohttp would raise at send time (header injection guard) and take the run down. The
            # value is not quoted: it may be a secret.
            if HEADER_CONTROL.search(value):
                raise ValueError(
                    f"header {name}: its value contains a line break or another control "
                    "character, which HTTP does not allow"
                )
            if not (value.isascii() and name.isascii()):
                raise ValueError(
                    f"header {name}: header names and values must be ASCII (httpx and "
                    "fal's ingress reject anything else)"
                )
        if any(segment in {".", ".."} for segment in request.path.split("/")):
            # URL normalisation would resolve them, so a templated path could call another app.
            raise ValueError(
                f"path {request.path!r}: '.' and '..' segments are not allowed (they would leave the endpoint)"
            )
        base = self._run_url if request.mode == "run" else self._queue_url
        url = f"{base}/{request.endpoint.strip('/')}"
        if request.path.strip("/"):
            url += "/" + request.path.strip("/")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"cannot build the request to {url}: {exc}") from exc
        return _Fixed(job, url, parsed, headers, start_timeout, self._asked(request, headers, start_timeout))

    def _asked(
        self, request: PlannedRequest, headers: Mapping[str, str], start_timeout: float | None
    ) -> dict[str, Any]:
        """The options that shaped the call, for the record: only those that apply, and header
        names only (a value may be a key; names pass the redactor too, being spec text)."""
        job = request.job
        asked: dict[str, Any] = {}
        if request.hint is not None:
            asked["hint"] = request.hint
        if request.mode == "subscribe" and job.priority is not None:
            asked["priority"] = job.priority
        if job.fallbacks is not None:
            asked["fallbacks"] = job.fallbacks
        if job.media_lifetime is not None:
            asked["media_lifetime_s"] = job.media_lifetime.seconds  # None: never expires
        if request.mode == "run" and job.timeout is not None:
            asked["timeout"] = float(job.timeout)  # the run call's HTTP timeout
        if job.client_timeout is not None:
            asked["client_timeout"] = float(job.client_timeout)
        if start_timeout is not None:
            asked["start_timeout"] = float(start_timeout)  # as sent in X-Fal-Request-Timeout
        asked["headers"] = sorted({self._redactor.text(name) for name in headers})
        return asked

    async def _attempts(
        self, request: PlannedRequest, prepared: _Prepared, events: Events, phase: Phase
    ) -> tuple[Answer | None, Verdict | None, int]:
        """Send until a 2xx, a final error or max_attempts; returns (last answer, verdict, attempts)."""
        policy = request.job.retries
        attempt = 0
        while True:
            attempt += 1
            answer = await self._sender.exchange(prepared.post)
            if not isinstance(answer, TransportFailure):
                if answer.is_success:
                    return answer, None, attempt
                verdict = self._judge(answer, policy)
                response: Answer | None = answer
            else:
                verdict = judge_transport(
                    answer, phase=phase, policy=policy, start_timeout_sent=prepared.start_timeout_sent
                )
                response = None
            if not verdict.retry or attempt >= policy.max_attempts:
                return response, verdict, attempt
            delay = backoff_delay(attempt, policy, self._rng, verdict.retry_after)
            events.retrying(request, attempt, delay, verdict.reason, rate_limited=verdict.rate_limited)
            await anyio.sleep(delay)

    def _judge(self, answer: Answer, policy: RetryPolicy) -> Verdict:
        """judge_response on a redacted body: the detail is shortened there, and a cut can split a
        secret the server echoed so that redacting afterwards no longer finds it."""
        body = self._redactor.scrub(_json(answer.content))
        return judge_response(answer.status_code, answer.headers, body, self._redactor.text(answer.text), policy=policy)

    # ---- run ----------------------------------------------------------------------------------

    async def _run(self, request: PlannedRequest, prepared: _Prepared, events: Events) -> Outcome:
        response, verdict, attempts = await self._attempts(request, prepared, events, Phase.RUN)
        state = CallState(inputs=prepared.inputs, asked=prepared.asked)
        return self._answer_outcome(response, verdict, attempts, state)

    def _header_text(self, response: Answer, name: str) -> str | None:
        """A header of the answer, redacted; None when absent or empty."""
        value = response.headers.get(name)
        return self._redactor.text(value) if value else None

    def _answer_outcome(
        self, response: Answer | None, verdict: Verdict | None, attempts: int, state: CallState
    ) -> Outcome:
        """The Outcome of a final answer (a run answer or a queue result)."""
        request_id = state.handle.request_id if state.handle else None
        served_from = rerouted_to = None
        if response is not None:  # header values too: a server may echo anything back
            request_id = request_id or self._header_text(response, "x-fal-request-id")
            served_from = self._header_text(response, "x-fal-served-from")
            rerouted_to = self._header_text(response, FALLBACK_ENDPOINT)
        result = None
        if verdict is None and response is not None:
            body = _json(response.content)
            if isinstance(body, dict):
                result = body
            else:
                what = "a JSON " + type(body).__name__ if body is not None else "not JSON"
                # Redact before shortening: a cut can split a secret so the redactor no longer sees it.
                text = self._redactor.text(" ".join(response.text.split()))
                detail = shorten(f"HTTP {response.status_code} answer is {what}: {text}")
                verdict = Verdict(error_record("invalid_response", response.status_code, detail, False), retry=False)
        error = None
        if verdict is not None:
            error = dict(verdict.error)
            if error["type"] == "http_error" and state.error_type:
                error["type"] = state.error_type  # the COMPLETED status named it; the result did not
        return Outcome(
            ok=error is None,
            result=self._redactor.scrub(result),
            error=self._redactor.scrub(error),
            request_id=request_id,
            attempts=attempts,
            logs=state.logs,
            metrics=self._redactor.scrub(state.metrics),
            queue_s=state.queue_s,
            served_from=served_from,
            rerouted_to=rerouted_to,
            inputs=state.inputs,
            asked=state.asked_seen(),
        )

    # ---- subscribe ----------------------------------------------------------------------------

    async def _subscribe(self, request: PlannedRequest, prepared: _Prepared, events: Events) -> Outcome:
        state = CallState(inputs=prepared.inputs, asked=prepared.asked)
        with anyio.move_on_after(_follow_deadline(request)) as scope:
            return await self._submit_and_follow(request, prepared, events, state)
        assert scope.cancelled_caught
        return await self._timed_out(request, state)

    async def _submit_and_follow(
        self, request: PlannedRequest, prepared: _Prepared, events: Events, state: CallState
    ) -> Outcome:
        policy = request.job.retries
        while True:
            response, verdict, attempts = await self._attempts(request, prepared, events, Phase.SUBMIT)
            state.attempts += attempts
            if verdict is not None or response is None:
                return self._answer_outcome(response, verdict, state.attempts, state)
            try:
                handle, first_status = self._handle(response)
            except InvalidAnswer as exc:
                invalid = Verdict(error_record("invalid_response", response.status_code, str(exc), False), retry=False)
                return self._answer_outcome(None, invalid, state.attempts, state)
            state.resubmitted(handle)
            with anyio.CancelScope(shield=True):
                # The journal must hold the request id even if we are cancelled right now.
                await events.submitted(request, handle)
            state.take(request, events, self._redactor, first_status)
            outcome, verdict = await self._follow(request, handle, events, state)
            if verdict is None or not verdict.retry or state.attempts >= policy.max_attempts:
                return outcome
            # A platform 5xx result with the server_errors opt-in: submit again (a new attempt).
            delay = backoff_delay(state.attempts, policy, self._rng, verdict.retry_after)
            events.retrying(request, state.attempts, delay, verdict.reason, rate_limited=verdict.rate_limited)
            await anyio.sleep(delay)

    @staticmethod
    def _handle(response: Answer) -> tuple[QueueHandle, dict[str, Any]]:
        """The handle of a submit answer, and the status it reports (IN_QUEUE when it has none)."""
        body = _json(response.content)
        if not isinstance(body, dict):
            raise InvalidAnswer(f"the queue submit answer (HTTP {response.status_code}) is not a JSON object")
        fields = ("request_id", "status_url", "response_url", "cancel_url")
        missing = [f for f in fields if not isinstance(body.get(f), str) or not body[f]]
        if missing:
            raise InvalidAnswer(f"the queue submit answer lacks {', '.join(missing)}")
        status = body.get("status") if body.get("status") in STATUSES else "IN_QUEUE"
        return QueueHandle(*(body[f] for f in fields)), {"status": status, "queue_position": body.get("queue_position")}

    async def _timed_out(self, request: PlannedRequest, state: CallState) -> Outcome:
        seconds = _follow_deadline(request)
        what = f"client_timeout of {seconds:g} s" if request.job.client_timeout else (
            f"the follow ceiling of {seconds:g} s (no client_timeout set)")
        handle = state.handle
        if handle is None:
            detail = f"{what} expired before the queue submit was answered"
        else:
            cancelled = False
            with anyio.move_on_after(CANCEL_GRACE, shield=True):
                cancelled = await self.cancel(handle)
            verb = "cancel requested" if cancelled else "the cancel was not accepted"
            detail = f"{what} expired for request {handle.request_id}; {verb}"
        state.stop_queue_clock()
        error = error_record("client_timeout", None, detail, True)
        return Outcome(
            False,
            None,
            error,
            handle.request_id if handle else None,
            max(state.attempts, 1),
            state.logs,
            self._redactor.scrub(state.metrics),
            state.queue_s,
            None,
            state.inputs,
            state.asked_seen(),
        )

    async def _follow(
        self, request: PlannedRequest, handle: QueueHandle, events: Events, state: CallState
    ) -> tuple[Outcome, Verdict | None]:
        """Wait for COMPLETED, fetch the result. Returns the Outcome and, for an error result, its
        verdict (whose `retry` means: submit again)."""
        try:
            if not await self._stream(request, handle, events, state):
                failed = await self._poll(request, handle, events, state)
                if failed is not None:
                    return self._answer_outcome(None, failed, state.attempts, state), None
        except InvalidAnswer as exc:
            invalid = Verdict(error_record("invalid_response", None, self._redactor.text(str(exc)), False), retry=False)
            return self._answer_outcome(None, invalid, state.attempts, state), None
        response, verdict = await self._get(request, handle.response_url, events, result=True)
        return self._answer_outcome(response, verdict, state.attempts, state), verdict

    async def _stream(self, request: PlannedRequest, handle: QueueHandle, events: Events, state: CallState) -> bool:
        """Follow the SSE status stream; True once COMPLETED was seen, False when the stream is
        unavailable or ended early (the caller falls back to polling).

        After COMPLETED the stream is read to its end, which the server sends at once (protocol
        §1.5), for at most STREAM_DRAIN_S: leaving it early would abandon the connection (aiohttp
        closes a half-read one, so the result GET would open a new one) and six half-run async
        generators (httpx's and httpx-sse's), each finalised through a thread-safe wake-up of the
        event loop: ~0.25 ms of CPU per job in a burst of completions."""
        params = {"logs": "1"} if request.job.with_logs else None
        completed = False
        try:
            async with self._sender.event_source(handle.status_url + "/stream", params) as source:
                content_type = source.response.headers.get("content-type", "")
                if source.response.status_code != 200 or not content_type.startswith("text/event-stream"):
                    return False
                with anyio.CancelScope() as drain:
                    async for event in source.aiter_sse():
                        if completed:
                            continue
                        data = _json(event.data.encode()) if event.data else None
                        if data is None:
                            continue  # keep-alive or an unreadable event: the next one repeats the state
                        if state.take(request, events, self._redactor, data):
                            completed = True
                            drain.deadline = anyio.current_time() + STREAM_DRAIN_S
        except (*SEND_ERRORS, httpx_sse.SSEError):
            return completed
        return completed

    async def _poll(
        self, request: PlannedRequest, handle: QueueHandle, events: Events, state: CallState
    ) -> Verdict | None:
        """Poll the status until COMPLETED (None) or a final failure (its verdict)."""
        params = {"logs": "1"} if request.job.with_logs else None
        interval = self._poll_interval
        while True:
            response, verdict = await self._get(request, handle.status_url, events, params=params)
            if verdict is not None:
                return verdict
            assert response is not None
            if state.take(request, events, self._redactor, _json(response.content)):
                return None
            await anyio.sleep(interval)
            interval = min(interval * 1.5, MAX_POLL_INTERVAL)

    async def _get(
        self,
        request: PlannedRequest,
        url: str,
        events: Events,
        *,
        params: dict[str, str] | None = None,
        result: bool = False,
    ) -> tuple[Answer | None, Verdict | None]:
        """An idempotent GET of a status or a result, retried (bounded by max_attempts) on transport
        errors, 408/409/429 and 5xx. A result GET replays the model's own answer, so there only an
        ingress 5xx (no x-fal-request-id) is retried; any other error is returned as the result."""
        policy = request.job.retries
        # A URL the server (or journal) gave; a result is bounded like any answer of the job.
        built = Call("GET", url, None, None, {}, True, None, params, max_bytes=request.job.max_answer_bytes)
        failures = 0
        while True:
            answer = await self._sender.exchange(built)
            if not isinstance(answer, TransportFailure):
                if answer.is_success:
                    return answer, None
                verdict = self._judge(answer, policy)
                if not get_retried(answer.status_code, answer.headers, result=result):
                    return answer, verdict  # the model's stored answer, or a final queue error (404)
                verdict = dataclasses.replace(verdict, retry=True)
                response: Answer | None = answer
            else:
                verdict = judge_transport(answer, phase=Phase.FOLLOW, policy=policy, start_timeout_sent=False)
                response = None
            failures += 1
            if not verdict.retry or failures >= policy.max_attempts:
                # The GET itself could not get through: a later reattach could still succeed.
                return response, dataclasses.replace(verdict, retry=False)
            delay = backoff_delay(failures, policy, self._rng, verdict.retry_after)
            events.retrying(
                request,
                failures,
                delay,
                f"GET {url.rsplit('/', 1)[-1]}: {verdict.reason}",
                rate_limited=verdict.rate_limited,
            )
            await anyio.sleep(delay)
