"""Resolve a spec's Target into base URLs and credentials, before any request is sent.

fal: https://{FAL_RUN_HOST} and https://{FAL_QUEUE_RUN_HOST} (defaults fal.run and queue.<run host>),
exactly as fal-client builds them; the key from FAL_KEY, else FAL_KEY_ID + FAL_KEY_SECRET joined
with ":", sent as `Authorization: Key <key>`. A fal target without a key stops the run here.
local: the embedded server's URLs (known once it is started), never a key: the real FAL_KEY must
not be handed to a local process. custom: the spec's URLs, with the key when one is set (a custom
target is normally a proxy in front of fal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from urllib.parse import urlsplit

from batchrun.errors import UsageError
from batchrun.spec.model import Target

__all__ = ["Endpoints", "fal_hosts", "fal_key", "resolve_target"]

NO_KEY_MESSAGE = (
    "target 'fal' needs an API key: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET), "
    "or use --target local to run against the embedded server"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoints:
    run_url: str  # base of direct calls, no trailing slash
    queue_url: str  # base of queue submits, no trailing slash
    auth: str | None  # the Authorization header value, or None
    secrets: tuple[str, ...]  # values a Redactor must know

    def __repr__(self) -> str:  # never print the key, even in a traceback or a debugger
        auth = None if self.auth is None else "[REDACTED]"
        return f"Endpoints(run_url={self.run_url!r}, queue_url={self.queue_url!r}, auth={auth!r})"


def fal_key(environ: Mapping[str, str]) -> str | None:
    """fal-client's precedence: FAL_KEY, then FAL_KEY_ID:FAL_KEY_SECRET (both needed)."""
    key = environ.get("FAL_KEY", "").strip()
    if key:
        return key
    key_id = environ.get("FAL_KEY_ID", "").strip()
    key_secret = environ.get("FAL_KEY_SECRET", "").strip()
    if key_id and key_secret:
        return f"{key_id}:{key_secret}"
    return None


def fal_hosts(environ: Mapping[str, str]) -> tuple[str, str]:
    """(run host, queue host) as fal-client reads them: FAL_RUN_HOST (default fal.run) and
    FAL_QUEUE_RUN_HOST (default queue.<run host>)."""
    run_host = environ.get("FAL_RUN_HOST", "").strip() or "fal.run"
    return run_host, environ.get("FAL_QUEUE_RUN_HOST", "").strip() or f"queue.{run_host}"


def resolve_target(
    target: Target,
    environ: Mapping[str, str],
    *,
    run_url: str | None = None,
    queue_url: str | None = None,
) -> Endpoints:
    """`run_url`/`queue_url` override the target's (the --run-url/--queue-url flags, or the URLs
    of a started embedded server for kind local)."""
    key = fal_key(environ)
    run: str | None
    queue: str | None
    if target.kind == "fal":
        run_host, queue_host = fal_hosts(environ)
        run = run_url or target.run_url or f"https://{run_host}"
        queue = queue_url or target.queue_url or f"https://{queue_host}"
        if key is None:
            raise UsageError(NO_KEY_MESSAGE)  # a usage problem: exit 2
    else:
        run = run_url or target.run_url
        queue = queue_url or target.queue_url
        if not run or not queue:
            raise UsageError(
                f"target '{target.kind}' needs both a run URL and a queue URL "
                "(target.run_url/target.queue_url in the spec, or --run-url/--queue-url)"
            )
        if target.kind == "local":
            key = None
    auth = None if key is None else f"Key {key}"
    secrets = () if key is None else (key, *(p for p in key.split(":") if p))
    return Endpoints(_base_url(run, "run"), _base_url(queue, "queue"), auth, secrets)


def _base_url(url: str, which: str) -> str:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # Checked first, and the URL is not echoed: it holds a password. The key travels in the
        # Authorization header, so URL credentials would clash with it (aiohttp refuses both).
        raise UsageError(
            f"the {which} URL must not contain credentials (user:password@host); "
            "send them with a `headers:` entry instead"
        )
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise UsageError(f"the {which} URL must be an http(s) URL with a host, got {url!r}")
    if parts.query or parts.fragment:
        raise UsageError(f"the {which} URL must not have a query or fragment, got {url!r}")
    return url.rstrip("/")
