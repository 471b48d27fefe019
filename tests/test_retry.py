"""The retry policy: which failures are retried, what they record, and the backoff schedule."""

from __future__ import annotations

import email.utils
import random

import pytest

from batchrun.client.retry import (
    MAX_RETRY_AFTER,
    Phase,
    TransportFailure,
    backoff_delay,
    get_retried,
    judge_response,
    judge_transport,
    parse_retry_after,
    shorten,
)
from batchrun.spec.model import RetryPolicy

DEFAULT = RetryPolicy()
SERVER_ERRORS = RetryPolicy(server_errors=True)
RID = {"x-fal-request-id": "764cabcf-b745-4b3e-ae38-1200304cf45b"}


@pytest.mark.parametrize(
    ("status", "headers", "body", "policy", "type_", "retry", "retryable"),
    [
        pytest.param(408, {}, None, DEFAULT, "http_error", True, True, id="408"),
        pytest.param(409, {}, None, DEFAULT, "http_error", True, True, id="409"),
        pytest.param(429, {}, None, DEFAULT, "http_error", True, True, id="429"),
        pytest.param(
            429, {"x-fal-error-type": "concurrent_requests_limit"}, None, DEFAULT,
            "concurrent_requests_limit", True, True, id="429-fal-type-from-header",
        ),
        pytest.param(502, {}, None, DEFAULT, "http_error", True, True, id="ingress-502"),
        pytest.param(503, {}, None, DEFAULT, "http_error", True, True, id="ingress-503"),
        pytest.param(504, {}, None, DEFAULT, "http_error", True, True, id="ingress-504"),
        pytest.param(
            504, {"x-fal-request-timeout-type": "user", "x-fal-error-type": "request_timeout"}, None,
            SERVER_ERRORS, "request_timeout", False, True, id="start-timeout-504-never-retried",
        ),
        pytest.param(
            503, RID, {"detail": "no runner", "error_type": "runner_scheduling_failure"}, DEFAULT,
            "runner_scheduling_failure", False, True, id="platform-503-default-not-retried",
        ),
        pytest.param(
            503, RID, {"detail": "no runner", "error_type": "runner_scheduling_failure"}, SERVER_ERRORS,
            "runner_scheduling_failure", True, True, id="platform-503-retried-on-opt-in",
        ),
        pytest.param(500, {}, {"detail": "boom"}, DEFAULT, "http_error", False, True, id="500-without-id"),
        pytest.param(500, RID, {"detail": "boom"}, SERVER_ERRORS, "http_error", True, True, id="500-opt-in"),
        pytest.param(422, RID, {"detail": [{"loc": ["body"]}]}, SERVER_ERRORS, "validation_error", False, False, id="422"),
        pytest.param(400, RID, {"detail": "bad", "error_type": "bad_request"}, DEFAULT, "bad_request", False, False, id="400"),
        pytest.param(401, {}, {"detail": "No key"}, DEFAULT, "http_error", False, False, id="401"),
        pytest.param(404, {}, None, DEFAULT, "http_error", False, False, id="404"),
        pytest.param(
            499, RID, {"detail": "cancelled", "error_type": "client_cancelled"}, SERVER_ERRORS,
            "client_cancelled", False, False, id="499-cancelled",
        ),
        pytest.param(
            503, {**RID, "x-fal-needs-retry": "0"}, None, SERVER_ERRORS, "http_error", False, False,
            id="needs-retry-0-wins",
        ),
        pytest.param(
            422, {"X-Fal-Retryable": "true"}, {"detail": []}, DEFAULT, "validation_error", False, True,
            id="retryable-header-marks-record-only",
        ),
    ],
)
def test_judge_response_classes(status, headers, body, policy, type_, retry, retryable) -> None:
    """Each status class maps to fal-client's retry decision and a typed, retryable-flagged record."""
    verdict = judge_response(status, headers, body, "", policy=policy)
    assert verdict.error["type"] == type_
    assert verdict.error["status_code"] == status
    assert verdict.retry is retry
    assert verdict.error["retryable"] is retryable
    assert verdict.rate_limited is (status == 429)


def test_body_error_type_beats_header() -> None:
    """The body's error_type is fal's own word; the header is the fallback."""
    verdict = judge_response(
        503, {"X-Fal-Error-Type": "other"}, {"error_type": "runner_disconnected", "detail": "d"}, "", policy=DEFAULT
    )
    assert verdict.error == {"type": "runner_disconnected", "status_code": 503, "detail": "d", "retryable": True}
    assert verdict.reason == "runner_disconnected (HTTP 503)"


def test_validation_detail_list_kept() -> None:
    """A 422 keeps the model's detail list, with long echoed inputs cut."""
    detail = [{"loc": ["body", "image_url"], "msg": "too large", "type": "image_too_large", "input": "x" * 5000}]
    verdict = judge_response(422, {}, {"detail": detail}, "", policy=DEFAULT)
    kept = verdict.error["detail"]
    assert kept[0]["loc"] == ["body", "image_url"]
    assert kept[0]["type"] == "image_too_large"
    assert len(kept[0]["input"]) == 500
    assert kept[0]["input"].endswith("…")


def test_html_body_detail_is_short() -> None:
    """An nginx HTML page becomes a one-line, truncated detail."""
    html = "<html>\n<head><title>502 Bad Gateway</title></head>\n" + "<p>pad</p>\n" * 200 + "<hr><center>nginx</center>"
    verdict = judge_response(502, {}, None, html, policy=DEFAULT)
    assert verdict.error["detail"].startswith("HTTP 502: <html> <head><title>502 Bad Gateway</title></head>")
    assert len(verdict.error["detail"]) == 500
    assert "\n" not in verdict.error["detail"]
    assert judge_response(502, {}, None, "", policy=DEFAULT).error["detail"] == "HTTP 502 with an empty body"


def test_retry_after_only_on_retried_answers() -> None:
    """Retry-After is read when the answer will be retried, and capped."""
    assert judge_response(429, {"retry-after": "2"}, None, "", policy=DEFAULT).retry_after == 2.0
    assert judge_response(429, {"retry-after": "99999"}, None, "", policy=DEFAULT).retry_after == MAX_RETRY_AFTER
    assert judge_response(400, {"retry-after": "2"}, None, "", policy=DEFAULT).retry_after is None


def test_parse_retry_after_forms() -> None:
    """Delta seconds, HTTP dates (relative to now) and junk."""
    assert parse_retry_after(None) is None
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert parse_retry_after(date, now=1_000_000.0) == 30.0
    assert parse_retry_after(date, now=2_000_000.0) == 0.0


NOT_SENT = TransportFailure(sent=False, timeout=False, message="connection refused")
CONNECT_TIMEOUT = TransportFailure(sent=False, timeout=True, message="connect timed out")
LOST = TransportFailure(sent=True, timeout=False, message="server disconnected")
READ_TIMEOUT = TransportFailure(sent=True, timeout=True, message="read timed out")


@pytest.mark.parametrize(
    ("failure", "phase", "policy", "start_timeout", "type_", "retry"),
    [
        pytest.param(NOT_SENT, Phase.SUBMIT, DEFAULT, True, "connection_error", True, id="connect-error-submit"),
        pytest.param(CONNECT_TIMEOUT, Phase.RUN, DEFAULT, True, "http_timeout", True, id="connect-timeout-with-header"),
        pytest.param(LOST, Phase.SUBMIT, DEFAULT, False, "outcome_unknown", False, id="lost-submit"),
        pytest.param(READ_TIMEOUT, Phase.SUBMIT, DEFAULT, False, "outcome_unknown", False, id="timed-out-submit"),
        pytest.param(
            LOST, Phase.SUBMIT, RetryPolicy(unknown_outcome=True), False, "connection_error", True,
            id="lost-submit-opt-in",
        ),
        pytest.param(LOST, Phase.RUN, DEFAULT, False, "connection_error", True, id="lost-run"),
        pytest.param(READ_TIMEOUT, Phase.RUN, DEFAULT, False, "http_timeout", True, id="run-timeout"),
        pytest.param(READ_TIMEOUT, Phase.RUN, DEFAULT, True, "http_timeout", False, id="run-timeout-with-header"),
        pytest.param(READ_TIMEOUT, Phase.FOLLOW, DEFAULT, False, "http_timeout", True, id="poll-timeout"),
        pytest.param(
            TransportFailure(sent=False, timeout=False, message="bad scheme", fatal=True), Phase.RUN, DEFAULT, False,
            "connection_error", False, id="fatal",
        ),
    ],
)
def test_judge_transport(failure, phase, policy, start_timeout, type_, retry) -> None:
    """Lost answers are retried except a sent queue submit, which is an unknown outcome."""
    verdict = judge_transport(failure, phase=phase, policy=policy, start_timeout_sent=start_timeout)
    assert verdict.error["type"] == type_
    assert verdict.error["status_code"] is None
    assert verdict.retry is retry
    assert verdict.error["retryable"] is (not failure.fatal)


def test_outcome_unknown_detail_names_cause() -> None:
    """The outcome_unknown detail says what happened."""
    verdict = judge_transport(LOST, phase=Phase.SUBMIT, policy=DEFAULT, start_timeout_sent=False)
    assert verdict.error["detail"] == (
        "the queue submit was sent but its answer was lost (server disconnected); the request may be running"
    )


def test_backoff_schedule_nominal_and_jitter() -> None:
    """Delay n = min(initial * 2**(n-1), max) * U(0.5, 1.5), clamped to max."""
    policy = RetryPolicy(initial_delay=0.1, max_delay=10.0)
    rng = random.Random(7)
    expected_rng = random.Random(7)
    for n in range(1, 12):
        nominal = min(0.1 * 2 ** (n - 1), 10.0)
        assert backoff_delay(n, policy, rng) == pytest.approx(min(nominal * expected_rng.uniform(0.5, 1.5), 10.0))
    for n in range(1, 200):
        delay = backoff_delay(n, policy, rng)
        assert 0.0 <= delay <= 10.0
    assert backoff_delay(1, RetryPolicy(initial_delay=0), rng) == 0.0
    assert backoff_delay(3, policy, rng, retry_after=4.5) == 4.5


def test_shorten_leaves_small_values() -> None:
    """shorten only touches long strings."""
    value = {"a": [1, "ok", {"b": None}]}
    assert shorten(value) == value
    assert shorten("abcdef", limit=4) == "abc…"


@pytest.mark.parametrize(
    ("status", "headers", "result", "retried"),
    [
        (429, {}, True, True),
        (408, {}, False, True),
        (503, {}, True, True),  # ingress: the load balancer answered, the stored result is intact
        (503, {"X-Fal-Request-Id": "r"}, True, False),  # the model's own stored 503 is the result
        (503, {"x-fal-request-id": "r"}, False, True),  # a status GET retries any 5xx
        (500, {}, True, False),
        (404, {}, False, False),
    ],
)
def test_follow_gets_are_retried_on_transient_answers_only(status, headers, result, retried) -> None:
    """Status/result GETs are idempotent: retried on 408/409/429 and ingress 5xx; a status GET on any 5xx."""
    assert get_retried(status, headers, result=result) is retried
