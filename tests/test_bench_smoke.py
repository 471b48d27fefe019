"""The benchmark harness runs end to end in a tiny configuration (a few dozen requests each) and
produces well-formed rows. No timing is asserted: speed is measured by `python bench/run_all.py`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts every benchmark client as its own process

ROOT = Path(__file__).resolve().parent.parent


def test_run_all_tiny_produces_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--tiny", "--json", str(out)],
                          capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())

    https = result["run_mode"]["https"]["rows"]
    http = result["run_mode"]["http"]["rows"]
    assert sorted(https) == ["aiohttp", "batchrun", "fal-client", "httpx", "httpx-aiohttp"]
    assert sorted(http) == ["aiohttp", "batchrun", "httpx", "httpx-aiohttp"]  # fal-client speaks https only
    for row in [*https.values(), *http.values()]:
        assert row["n"] == 50 and row["ok"] == 50
        assert row["rps"] > 0 and row["cpu_ms_per_req"] > 0 and row["peak_rss_mb"] > 0
    assert set(result["run_mode"]["https"]["ratios"]) == {
        "batchrun/fal-client", "batchrun/httpx", "batchrun/httpx-aiohttp", "batchrun/aiohttp"}

    sub = result["subscribe"]
    assert sub["ideal_s"] == 0.3  # 20 jobs at 50 concurrent: one wave of 0.3 s
    mine, theirs = sub["rows"]["batchrun"], sub["rows"]["fal-client"]
    assert mine["ok"] == theirs["ok"] == 20
    # With the status stream batchrun makes exactly submit + stream + result per job.
    assert mine["ops"] == {"submit": 20, "status": 0, "stream": 20, "result": 20}
    assert mine["http_per_job"] == 3.0
    assert theirs["ops"]["submit"] == 20 and theirs["ops"]["result"] == 20 and theirs["ops"]["stream"] == 0
    assert mine["makespan_s"] >= 0.3 and theirs["makespan_s"] >= 0.3

    assert result["memory"]["run"]["requests"] == 50 and result["memory"]["run"]["peak_rss_mb"] > 0
    assert result["resume"]["lines"] == 100 and result["resume"]["run"]["peak_rss_mb"] > 0

    names = [t["target"] for t in result["targets"]]
    assert names[:4] == ["run mode: batchrun / fal-client req/s", "run mode: batchrun / bare aiohttp req/s",
                         "subscribe: makespan / ideal", "subscribe: HTTP requests per job (stream)"]
    assert all(isinstance(t["met"], bool) for t in result["targets"])
    assert "| target | value | limit | met |" in proc.stdout
