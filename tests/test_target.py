"""Target resolution: hosts and keys from the environment, as fal-client reads them."""

from __future__ import annotations

from typing import Any

import pytest

from batchrun.client.target import NO_KEY_MESSAGE, resolve_target
from batchrun.errors import UsageError
from batchrun.spec.model import Target


def test_fal_defaults_with_key() -> None:
    """fal: https://fal.run and https://queue.fal.run, `Authorization: Key <FAL_KEY>`."""
    endpoints = resolve_target(Target(kind="fal"), {"FAL_KEY": "abc:def"})
    assert endpoints.run_url == "https://fal.run"
    assert endpoints.queue_url == "https://queue.fal.run"
    assert endpoints.auth == "Key abc:def"
    assert endpoints.secrets == ("abc:def", "abc", "def")
    assert "abc" not in repr(endpoints)


def test_fal_key_id_and_secret() -> None:
    """FAL_KEY_ID + FAL_KEY_SECRET are joined with ':' when FAL_KEY is unset."""
    env = {"FAL_KEY_ID": "id1", "FAL_KEY_SECRET": "sec1"}
    assert resolve_target(Target(), env).auth == "Key id1:sec1"
    assert resolve_target(Target(), {**env, "FAL_KEY": "main"}).auth == "Key main"


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="nothing"),
        pytest.param({"FAL_KEY": "  "}, id="blank-key"),
        pytest.param({"FAL_KEY_ID": "only-id"}, id="id-without-secret"),
    ],
)
def test_fal_without_key_aborts(env) -> None:
    """A fal target without a key fails before any request with a clear message."""
    with pytest.raises(UsageError) as info:
        resolve_target(Target(kind="fal"), env)
    assert str(info.value) == NO_KEY_MESSAGE


def test_fal_hosts_from_environment() -> None:
    """FAL_RUN_HOST / FAL_QUEUE_RUN_HOST become https://{host}; the queue defaults to queue.<run host>."""
    env = {"FAL_KEY": "k", "FAL_RUN_HOST": "localhost:8443"}
    endpoints = resolve_target(Target(), env)
    assert (endpoints.run_url, endpoints.queue_url) == ("https://localhost:8443", "https://queue.localhost:8443")
    endpoints = resolve_target(Target(), {**env, "FAL_QUEUE_RUN_HOST": "127.0.0.1:9000"})
    assert endpoints.queue_url == "https://127.0.0.1:9000"


def test_local_never_sends_the_key() -> None:
    """A local target gets the server's URLs and no Authorization even when FAL_KEY is set."""
    endpoints = resolve_target(
        Target(kind="local"), {"FAL_KEY": "real-key"}, run_url="http://127.0.0.1:5000/run/", queue_url="http://127.0.0.1:5000/queue"
    )
    assert endpoints.run_url == "http://127.0.0.1:5000/run"
    assert endpoints.queue_url == "http://127.0.0.1:5000/queue"
    assert endpoints.auth is None
    assert endpoints.secrets == ()


def test_custom_uses_key_when_present() -> None:
    """A custom target uses its own URLs and the key only when one is set."""
    target = Target(kind="custom", run_url="http://127.0.0.1:1/r", queue_url="http://127.0.0.1:1/q")
    assert resolve_target(target, {}).auth is None
    assert resolve_target(target, {"FAL_KEY": "k1"}).auth == "Key k1"
    overridden = resolve_target(target, {}, run_url="http://127.0.0.1:2")
    assert (overridden.run_url, overridden.queue_url) == ("http://127.0.0.1:2", "http://127.0.0.1:1/q")


@pytest.mark.parametrize(
    ("target", "kwargs", "message"),
    [
        pytest.param(
            Target(kind="local"), {}, "target 'local' needs both a run URL and a queue URL "
            "(target.run_url/target.queue_url in the spec, or --run-url/--queue-url)", id="local-without-urls",
        ),
        pytest.param(
            Target(kind="custom", run_url="ftp://x", queue_url="http://x"), {},
            "the run URL must be an http(s) URL with a host, got 'ftp://x'", id="bad-scheme",
        ),
        pytest.param(
            Target(kind="custom", run_url="http://x", queue_url="http://x?a=1"), {},
            "the queue URL must not have a query or fragment, got 'http://x?a=1'", id="query",
        ),
        pytest.param(
            Target(kind="custom", run_url="http://x", queue_url="http://x"),
            {"run_url": "https://user:s3cret-pw@proxy.example/run?x=1"},
            "the run URL must not contain credentials (user:password@host); send them with a `headers:` entry instead",
            id="credentials-not-echoed",
        ),
    ],
)
def test_bad_urls(target, kwargs, message) -> None:
    """Missing or malformed URLs are usage errors naming the URL."""
    with pytest.raises(UsageError) as info:
        resolve_target(target, {}, **kwargs)
    assert str(info.value) == message


def test_a_local_target_refuses_endpoints_the_embedded_server_does_not_serve(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: `target: local` with fal-ai/flux/schnell validated, then every request was a
    404 record. It is a located spec error now; local apps (sub-paths too) stay valid."""
    from batchrun.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\nname: t\ntarget: local\njobs:\n"
                    "  - {name: a, endpoint: fal-ai/flux/schnell, arguments: {prompt: hi}}\n"
                    "  - {name: b, endpoint: local/image/extra, arguments: {prompt: hi}}\n")
    assert main(["validate", str(spec)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{spec}:5:25: $.jobs[0].endpoint: target: local is the embedded server, which serves local/echo, "
        "local/fail, local/image, local/sleep; job 'a' calls fal-ai/flux/schnell: use one of those, or target: fal "
        "(with FAL_KEY) for fal's endpoints"]
    assert main(["run", str(spec), "-o", str(tmp_path / "out.jsonl")]) == 2
    assert not (tmp_path / "out.jsonl").exists()


def test_the_local_apps_the_spec_knows_are_the_servers() -> None:
    from batchrun.server.apps import builtin_apps
    from batchrun.spec.model import LOCAL_APPS

    assert LOCAL_APPS == tuple(sorted(builtin_apps()))
