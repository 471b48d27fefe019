"""`batchrun view`'s app without a browser: the state follows appended lines (a partial last line
waits, a replaced file starts over), newest record per id, base-vs-new verdicts by look, files
served only when a record names them under the output's folder, other Hosts refused, and the
command's own listening and errors. tests/test_browser.py watches the page in Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures_execute import run_cli, server_urls, write_spec
from fixtures_looks import SPEC as LOOKS_SPEC
from fixtures_looks import deployment

from batchrun.cli import main
from batchrun.report.live import create_view_app
from batchrun.server import ServerThread

pytestmark = pytest.mark.anyio


def record(rid: str, index: int, *, ok: bool = True, finished: str = "2026-01-01T00:00:01Z", **extra: Any) -> str:
    return json.dumps({
        "id": rid, "index": index, "job": "j", "endpoint": "local/echo", "path": "", "mode": "run",
        "arguments": {"n": index}, "matrix": {"n": index}, "row": None, "repeat": 0,
        "status": "ok" if ok else "error", "result": {"n": index} if ok else None,
        "error": None if ok else {"type": "boom", "status_code": 500, "detail": "broke", "retryable": False},
        "timing": {"started_at": "2026-01-01T00:00:00Z", "finished_at": finished, "latency_s": 0.5 + index},
        **extra,
    }) + "\n"


async def state(client: httpx.AsyncClient, since: int = 0) -> dict[str, Any]:
    response = await client.get("/api/state", params={"since": since})
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def test_state_follows_appended_lines(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    async with client_for(create_view_app(out)) as client:
        assert (await state(client))["items"] == []  # no file yet: a run has not started
        out.write_text(record("a", 0) + record("b", 1, ok=False) + record("c", 2)[:30])  # c half written
        first = await state(client)
        assert [i["id"] for i in first["items"]] == ["a", "b"] and first["running"] is False
        b = first["items"][1]
        assert (b["ok"], b["error_type"], b["error"]) == (False, "boom", "boom: broke")
        with out.open("a") as handle:
            handle.write(record("c", 2)[30:] + record("a", 0, finished="2026-01-01T00:00:09Z", result={"n": 9}))
        second = await state(client, first["seq"])
        assert [i["id"] for i in second["items"]] == ["c", "a"]  # only what changed since
        assert second["items"][1]["text"] == '{"n": 9}' and not second["reset"]
        with out.open("a") as handle:  # an older record of a: the newer one stays
            handle.write(record("a", 0, finished="2026-01-01T00:00:05Z"))
        assert (await state(client, second["seq"]))["items"] == []
        out.write_text(record("z", 0))  # replaced (a --fresh run)
        third = await state(client, second["seq"])
        assert third["reset"] and [i["id"] for i in third["items"]] == ["z"]
        page = await client.get("/")
        assert page.status_code == 200 and "batchrun view: out.jsonl" in page.text
        nonce = page.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}">' in page.text and "default-src 'none'" in page.headers["content-security-policy"]
        assert (await client.get("/api/state", params={"since": "x"})).status_code == 400


async def test_files_only_those_records_name_and_no_other_host(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    (root / "out" / "files").mkdir(parents=True)
    (root / "out" / "files" / "a.png").write_bytes(b"\x89PNG fake")
    (root / "secret.txt").write_text("not for the page")
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"\x89PNG outside")
    artifacts = [{"url": "https://cdn.example/a.png", "path": "out/files/a.png", "sha256": "1" * 64,
                  "bytes": 9, "content_type": "image/png"},
                 {"url": "https://cdn.example/b.png", "path": str(outside), "sha256": "2" * 64,
                  "bytes": 9, "content_type": "image/png"}]
    result = {"images": [{"url": "https://cdn.example/a.png"}, {"url": "https://cdn.example/b.png"},
                         {"url": "javascript:alert(1)", "content_type": "image/png"}]}
    out = root / "out.jsonl"
    out.write_text(record("a", 0, result=result, artifacts=artifacts))
    async with client_for(create_view_app(out)) as client:
        [item] = (await state(client))["items"]
        assert [i["src"] for i in item["images"]] == ["files/new/0"]  # outside and javascript: dropped
        served = await client.get("/files/new/0")
        assert served.status_code == 200 and served.content == b"\x89PNG fake"
        for path in ("/files/new/1", "/files/base/0", "/files/new/-1", "/secret.txt", "/files/new/../../secret.txt",
                     "/out.jsonl"):
            assert (await client.get(path)).status_code == 404, path
        evil = await client.get("/api/state", headers={"host": "evil.example"})
        assert evil.status_code == 400


@pytest.fixture(scope="module")
def looks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("view-looks")
    spec = write_spec(root, LOOKS_SPEC)
    outs = []
    for name, new in (("base", False), ("new", True)):
        out = root / name / "out.jsonl"
        with ServerThread(apps={"me/draw": deployment(new=new)}) as srv:
            run_cli(str(spec), "-o", str(out), *server_urls(srv))
        outs.append(out)
    return outs[0], outs[1]


async def test_base_beside_new_with_the_verdict_by_look(looks: tuple[Path, Path]) -> None:
    base, new = looks
    async with client_for(create_view_app(new, base)) as client:
        data = await state(client)
        verdicts = {i["label"]: (i["visual"], i["distance"], len(i["base"]["images"]), len(i["images"]))
                    for i in data["items"]}
        assert verdicts["prompt=kept"] == ("identical", 0, 1, 1)
        assert verdicts["prompt=reencoded"] == ("same", 0, 1, 1)
        visual, distance, *_ = verdicts["prompt=redrawn"]
        assert visual == "changed" and distance > 16
        redrawn = next(i for i in data["items"] if i["label"] == "prompt=redrawn")
        assert redrawn["failed_checks"] == ["seed: expected 5, got 6"]
        src = redrawn["base"]["images"][0]["src"]
        assert src.startswith("files/base/") and (await client.get("/" + src)).content.startswith(b"\x89PNG")


def test_view_command_listens_on_loopback_and_refuses_bad_input(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(record("a", 0))
    cmd = [sys.executable, "-m", "batchrun", "view", str(out), "--port", "0"]
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert line.startswith(f"viewing {out} at http://127.0.0.1:") and line.rstrip().endswith("(Ctrl-C to stop)")
            url = line.split(" at ")[1].split(" ")[0]
            data = httpx.get(url + "api/state", timeout=10).json()
            assert [i["id"] for i in data["items"]] == ["a"]
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
    assert main(["view", str(out), str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such output file (BASE must exist)" in capsys.readouterr().err
    assert main(["view", str(tmp_path), "--port", "0"]) == 2
    assert main(["view", str(out), "--port", "70000"]) == 2
