"""What the one HTTP stack promises against a server that misbehaves on the wire (issue 14 cases
2, 3, 14, 15): answers are bounded, run timeouts are deadlines, credentials stay on the target's
hosts, and a certificate that does not verify is final. Every case runs `batchrun run` against the
embedded server over loopback sockets; the misbehaviour is one of local/fail's faults."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trustme
from fixtures_execute import records, run_cli, server_urls, stats, write_spec
from fixtures_server import ServerFactory

from batchrun.server import ServerThread

SECRET_KEY = "key-id-7c1d:secret-0b6e9f2a4d8c5e1b"
MIB = 1024 * 1024


def _one_job(tmp_path: Path, job: str, *, defaults: str = "") -> Path:
    return write_spec(tmp_path, f"""\
        version: 1
        name: wire
        {defaults}
        jobs:
          - {job}
    """)


def _only_record(out: Path) -> dict:
    (record,) = records(out)
    return record


def test_a_trickling_answer_is_cut_at_the_run_timeout_deadline(tmp_path: Path, loopback_server: ServerThread) -> None:
    # One byte every 0.2 s: an idle timer of 1 s never fires (the old behaviour held such a
    # request for the whole ~12 s body); the deadline ends it at 1 s.
    spec = _one_job(tmp_path, "{name: slow, endpoint: local/fail, mode: run, timeout: 1, "
                              "retries: {max_attempts: 1}, arguments: {trickle: 0.2}}")
    out = tmp_path / "out.jsonl"
    t0 = time.monotonic()
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 1
    elapsed = time.monotonic() - t0
    record = _only_record(out)
    assert record["error"]["type"] == "http_timeout"
    assert record["error"]["detail"].startswith("no complete answer within 1 s")
    assert elapsed < 4, elapsed


@pytest.mark.parametrize("mode", ["run", "subscribe"])
@pytest.mark.parametrize("fault", ["big", "gzip_bomb"])
def test_an_answer_over_max_answer_bytes_is_an_error_record_not_memory(
    tmp_path: Path, loopback_server: ServerThread, mode: str, fault: str,
) -> None:
    # 8 MiB against a 1 MiB bound: chunked without Content-Length, or gzip inflating past it
    # (only the decompressed size tells).
    spec = _one_job(tmp_path, f"{{name: huge, endpoint: local/fail, mode: {mode}, max_answer_bytes: {MIB}, "
                              f"arguments: {{{fault}: {8 * MIB}}}}}")
    out = tmp_path / "out.jsonl"
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 1
    record = _only_record(out)
    assert record["error"]["type"] == "answer_too_large"
    assert str(MIB) in record["error"]["detail"]
    assert record["error"]["retryable"] is False and record["attempts"] == 1
    assert record["result"] is None
    assert out.stat().st_size < 16 * 1024  # the answer is not copied into the output


def test_an_answer_within_max_answer_bytes_is_kept(tmp_path: Path, loopback_server: ServerThread) -> None:
    spec = _one_job(tmp_path, f"{{name: fits, endpoint: local/fail, mode: run, max_answer_bytes: {MIB}, "
                              f"arguments: {{gzip_bomb: {MIB // 2}}}}}")
    out = tmp_path / "out.jsonl"
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 0
    assert len(_only_record(out)["result"]["blob"]) == MIB // 2


def test_queue_urls_naming_another_host_never_get_the_key(
    tmp_path: Path, make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAL_KEY", SECRET_KEY)
    with make_server() as target, make_server() as elsewhere:
        spec = _one_job(tmp_path, "{name: lured, endpoint: local/fail, mode: subscribe, "
                                  f"arguments: {{handle_origin: '{elsewhere.origin}'}}}}")
        out = tmp_path / "out.jsonl"
        assert run_cli(str(spec), "-o", str(out), *server_urls(target)) == 1
        untouched = stats(elsewhere.origin)["requests"]
    record = _only_record(out)
    assert record["error"]["type"] == "refused_url" and record["error"]["retryable"] is False
    assert target.origin in record["error"]["detail"]  # it says which hosts are trusted
    assert untouched == dict.fromkeys(untouched, 0)  # not one request (so no key) went elsewhere
    assert SECRET_KEY not in out.read_text() and "secret-0b6e" not in out.read_text()


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(server PEM with key and chain, CA bundle PEM) of a throwaway private CA."""
    folder = tmp_path_factory.mktemp("ca")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    return folder / "server.pem", folder / "ca.pem"


@pytest.mark.parametrize("mode", ["run", "subscribe"])
def test_an_untrusted_certificate_is_final_and_a_ca_bundle_trusts_it(
    tmp_path: Path, private_ca: tuple[Path, Path], mode: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    server_pem, ca_pem = private_ca
    job = f"{{name: tls, endpoint: local/echo, mode: {mode}, arguments: {{n: 1}}}}"
    with ServerThread(ssl_certfile=str(server_pem), ssl_keyfile=str(server_pem)) as srv:
        urls = server_urls(srv)
        refused = tmp_path / "refused.jsonl"
        assert run_cli(str(_one_job(tmp_path, job)), "-o", str(refused), *urls) == 1
        record = _only_record(refused)
        assert record["error"]["type"] == "tls_error" and record["error"]["retryable"] is False
        assert record["attempts"] == 1  # not retried: a certificate does not start verifying
        assert "ca_bundle" in record["error"]["detail"] and "SSL_CERT_FILE" in record["error"]["detail"]

        by_flag = tmp_path / "flag.jsonl"
        assert run_cli(str(_one_job(tmp_path, job)), "-o", str(by_flag), "--ca-bundle", str(ca_pem), *urls) == 0
        assert _only_record(by_flag)["result"]["echo"] == {"n": 1}

        in_spec = tmp_path / "in-spec"
        in_spec.mkdir()
        (in_spec / "ca.pem").write_bytes(ca_pem.read_bytes())
        target = f"target: {{run_url: '{srv.run_url}', queue_url: '{srv.queue_url}', ca_bundle: ca.pem}}"
        spec = _one_job(in_spec, job, defaults=target)  # ca_bundle is relative to the spec's folder
        by_spec = tmp_path / "spec.jsonl"
        assert run_cli(str(spec), "-o", str(by_spec), "--no-progress") == 0
        assert _only_record(by_spec)["status"] == "ok"
