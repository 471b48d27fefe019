"""What every benchmark shares: the server in its own process, TLS material, child processes
measured with their own rusage, specs on disk, and reading records back.

The server is `batchrun serve` (the embedded fal-compatible server) started as a subprocess on a
free port, so client and server never share an interpreter or an event loop. Children are waited
with `os.wait4`, which gives each one's own peak RSS and CPU time (RUSAGE_CHILDREN would mix them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent


@dataclasses.dataclass(slots=True)
class Server:
    process: subprocess.Popen[str]
    run_url: str
    queue_url: str
    ca_file: Path | None  # the CA to trust when the server speaks https

    @property
    def origin(self) -> str:
        return self.run_url.rsplit("/run", 1)[0]

    @property
    def tls(self) -> bool:
        return self.run_url.startswith("https:")

    @property
    def hostport(self) -> str:
        return self.origin.split("://", 1)[1]

    def client_env(self) -> dict[str, str]:
        """Environment for a client child: trust the CA; fal-client's hosts (read at import)."""
        env = dict(os.environ)
        env.pop("FAL_KEY", None)
        if self.ca_file is not None:
            env["SSL_CERT_FILE"] = str(self.ca_file)
        env["FAL_RUN_HOST"] = self.hostport + "/run"
        env["FAL_QUEUE_RUN_HOST"] = self.hostport + "/queue"
        env["FAL_KEY"] = "bench-id:bench-secret"
        return env

    def _open(self, method: str, path: str) -> dict[str, Any]:
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        req = urllib.request.Request(self.origin + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return json.loads(r.read())

    def stats(self) -> dict[str, Any]:
        return self._open("GET", "/_emulator/stats")

    def reset(self) -> None:
        self._open("POST", "/_emulator/reset")


def tls_files(workdir: Path) -> tuple[Path, Path]:
    """(server cert+key PEM, CA PEM) for 127.0.0.1, made once per workdir with trustme."""
    cert, ca = workdir / "server.pem", workdir / "ca.pem"
    if not cert.exists():
        import trustme

        authority = trustme.CA()
        issued = authority.issue_cert("127.0.0.1", "localhost")
        issued.private_key_and_cert_chain_pem.write_to_path(str(cert))
        authority.cert_pem.write_to_path(str(ca))
    return cert, ca


@contextlib.contextmanager
def server(workdir: Path, *, runners: int, tls: bool) -> Iterator[Server]:
    """`batchrun serve` on a free port in its own process; stopped (SIGTERM, by pid) on exit."""
    cmd = [sys.executable, "-m", "batchrun", "serve", "--port", "0", "--runners", str(runners)]
    ca = None
    if tls:
        cert, ca = tls_files(workdir)
        cmd += ["--tls-cert", str(cert), "--tls-key", str(cert)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        urls: dict[str, str] = {}
        assert proc.stdout is not None
        while len(urls) < 2:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"batchrun serve exited early: {proc.stderr.read() if proc.stderr else ''}")
            key, _, value = line.strip().partition(": ")
            urls[key] = value
        yield Server(proc, urls["run_url"], urls["queue_url"], ca)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclasses.dataclass(slots=True)
class Child:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float  # user + system of that child alone
    peak_rss_mb: float


def run_child(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path = ROOT,
              timeout: float = 900) -> Child:
    """Run `cmd`, return its output, wall time, CPU time (wait4, this child only) and peak RSS.

    A Python child runs under bench/measured.py, which reports its own VmHWM: wait4's ru_maxrss
    would include this (parent) process's peak, which Linux carries over exec."""
    import tempfile

    cmd = list(cmd)
    hwm = None
    if cmd and cmd[0] == sys.executable:
        fd, hwm = tempfile.mkstemp(prefix="bench-hwm-")
        os.close(fd)
        cmd = [cmd[0], str(BENCH_DIR / "measured.py"), hwm, *cmd[1:]]
    try:
        child = _wait_child(cmd, env=env, cwd=cwd, timeout=timeout)
        if hwm is not None:
            text = Path(hwm).read_text().strip()
            if text:
                child.peak_rss_mb = int(text) / 1024
    finally:
        if hwm is not None:
            os.unlink(hwm)
    return child


def _wait_child(cmd: Sequence[str], *, env: Mapping[str, str] | None, cwd: Path, timeout: float) -> Child:
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=dict(env) if env else None, cwd=cwd)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return Child(proc.returncode, stdout, stderr, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def batchrun_cmd(spec: Path, output: Path, server: Server, concurrency: int) -> list[str]:
    return [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(output), "--run-url", server.run_url,
            "--queue-url", server.queue_url, "--concurrency", str(concurrency), "--no-progress"]


def write_spec(path: Path, *, endpoint: str, mode: str, repeat: int, arguments: Mapping[str, Any],
               concurrency: int) -> Path:
    """A one-job spec sending `repeat` requests (ids differ by the repeat index)."""
    spec = {
        "version": 1, "name": path.stem, "target": "fal", "concurrency": concurrency,
        "limits": {"max_requests": max(repeat, 1)},
        "jobs": [{"name": path.stem, "endpoint": endpoint, "mode": mode, "repeat": repeat,
                  "arguments": dict(arguments), "retries": {"max_attempts": 1}}],
    }
    path.write_text(json.dumps(spec, indent=1))  # JSON is YAML
    return path


def parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_records(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in f if line.strip()]


def records_span(records: Sequence[Mapping[str, Any]]) -> float:
    """First start to last finish, from the records' own timing (run phase only, no start-up)."""
    starts = [parse_time(r["timing"]["started_at"]) for r in records]
    ends = [parse_time(r["timing"]["finished_at"]) for r in records]
    return max(ends) - min(starts)


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    packages = ("batchrun", "httpx", "httpx-aiohttp", "aiohttp", "fal-client", "uvicorn", "uvloop", "httptools",
                "starlette", "anyio", "orjson")
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "load_avg": os.getloadavg(),
        "packages": {p: _version(p) for p in packages},
        "self_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
