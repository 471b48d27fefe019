"""`<output>.manifest.json`: what produced an output, written when a run starts, completed when it ends.

It names the spec (path, sha256 of the validated spec and of the file), the git commit of the
spec's repository (and whether the work tree had uncommitted changes), batchrun, Python and the
platform, the target URLs, the plan (count, digest of its ids), and, once the run ends, the counts
by status, cost, breached gates, the exit code and whether it was interrupted.

It describes the *output*, which a resume continues, not only the last run (version 2):
`started_at` is when the output's first run started; `counts` are the plan's requests by their
newest record in the output (`ok`, `error`, `not_run`, `expectation_failures`), earlier runs'
records included; `cost_usd` sums every run's. `runs` lists each run on this output, oldest first
(`started_at`, `finished_at`, `resumed`, `spec_sha256`, `planned`, `selection` (`--only`/`--limit`
as given, or null: then `planned` and the top `plan.count` are that part's), its own `counts`: `ok`, `error`,
`skipped`, `skipped_errors`, `expectation_failures`; `cost_usd`, `stopped_by`, `exit_code`,
`interrupted`); `gates`, `stopped_by`, `exit_code` and `interrupted` at the top are the newest
run's. A version 1 manifest met by a resume becomes the first entry of `runs`.

No secrets: the spec is only hashed (and its `${{ env.X }}` templates are unresolved anyway), URLs
lose any user:password part, and every string passes through the run's redactor. Each write
replaces the file atomically (temp file + rename), so a reader never sees half a manifest; a write
that fails (full disk) is a warning, never the run's failure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchrun import signals
from batchrun.output.records import isoformat
from batchrun.spec.model import Spec

__all__ = ["GIT_TIMEOUT_S", "Manifest", "git_state", "manifest_path", "spec_digest"]

GIT_TIMEOUT_S = 5.0
MANIFEST_VERSION = 2
MAX_RUNS = 1000  # runs kept in the history (the oldest are dropped): a manifest stays small


def manifest_path(output: Path) -> Path:
    return output.with_name(output.name + ".manifest.json")


def _now() -> str:
    return isoformat(time.time())


def spec_digest(spec: Spec) -> str:
    """sha256 of the validated spec as canonical JSON (sorted keys); where the file lives is left
    out, so moving a spec does not change its digest."""
    data = dataclasses.asdict(spec)
    data.pop("source", None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _git(folder: Path, *args: str) -> str | None:
    # Stop signals wait until git is done and its Popen is gone (subprocess.run frees it before
    # returning): a Ctrl-C delivered while a Popen's finalizer runs is swallowed there ("Exception
    # ignored in Popen.__del__") and the run went on as if never interrupted. GIT_TIMEOUT_S bounds
    # the wait.
    try:
        with signals.held():
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                                  timeout=GIT_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None  # no git, or it hung: the manifest just has no commit
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(folder: Path) -> dict[str, Any] | None:
    """{commit, dirty} of the repository holding `folder`, or None when it is not in one."""
    commit = _git(folder, "rev-parse", "HEAD")
    if not commit:
        return None
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _platform() -> str:
    """platform.platform() without its processor field: that one runs `uname -p` in a subprocess
    (another Popen a Ctrl-C can land in) and repeats the machine on Linux anyway."""
    uname = os.uname()
    libc = "".join(platform.libc_ver())
    return "-".join(part for part in (uname.sysname, uname.release, uname.machine) if part) + (
        f"-with-{libc}" if libc else "")


def _public_url(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class Manifest:
    """The manifest of one run on one output. `start()` then `finish(...)`."""

    def __init__(self, output: Path, spec: Spec, *, target: dict[str, str | None], shard: tuple[int, int] | None,
                 planned: int, resumed: bool, scrub: Callable[[Any], Any], selection: str | None = None) -> None:
        self.path = manifest_path(output)
        self._scrub = scrub
        now = _now()
        digest = spec_digest(spec)  # dataclasses.asdict copies the whole spec: once
        previous = _read(self.path) if resumed else None
        earlier = _earlier_runs(previous) if previous is not None else []
        self._run: dict[str, Any] = {
            "started_at": now, "finished_at": None, "resumed": resumed, "spec_sha256": digest,
            "planned": planned, "selection": selection, "counts": None, "cost_usd": None, "stopped_by": None,
            "exit_code": None, "interrupted": False,
        }
        runs = [*earlier, self._run][-MAX_RUNS:]
        self.data: dict[str, Any] = {
            "manifest_version": MANIFEST_VERSION,
            "spec": {"path": str(spec.source.resolve()), "name": spec.name, "sha256": digest,
                     "file_sha256": _file_digest(spec.source)},
            "git": git_state(spec.source.resolve().parent),
            "batchrun_version": _version(),
            "python_version": platform.python_version(),
            "platform": _platform(),
            "target": {k: _public_url(v) if k != "kind" else v for k, v in target.items()},
            "output": str(output),
            "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
            "plan": {"count": planned, "ids_sha256": None, "ids_file": None, "selection": selection},
            "resumed": resumed,
            "started_at": next((r["started_at"] for r in runs if isinstance(r.get("started_at"), str)), now),
            "finished_at": None,
            "counts": previous.get("counts") if previous is not None else None,  # until this run ends
            "cost_usd": None,
            "gates": [],
            "stopped_by": None,
            "exit_code": None,
            "interrupted": False,
            "runs": runs,
        }

    def start(self) -> None:
        self._write()

    def plan(self, count: int, ids_sha256: str, ids_file: Path) -> None:
        self.data["plan"] = {"count": count, "ids_sha256": ids_sha256, "ids_file": ids_file.name, "selection": None}

    def finish(self, *, counts: dict[str, int], cost_usd: float | None, gates: list[str], stopped_by: str | None,
               exit_code: int | None, interrupted: bool, output_counts: dict[str, int] | None = None) -> None:
        """`counts`: this run's; `output_counts`: the output's for the plan (None: the run raised)."""
        now = _now()
        self._run.update(finished_at=now, counts=counts, cost_usd=cost_usd, stopped_by=stopped_by,
                         exit_code=exit_code, interrupted=interrupted)
        costs = [r["cost_usd"] for r in self.data["runs"] if isinstance(r.get("cost_usd"), (int, float))]
        self.data.update(finished_at=now, counts=output_counts, cost_usd=round(sum(costs), 6) if costs else None,
                         gates=gates, stopped_by=stopped_by, exit_code=exit_code, interrupted=interrupted)
        self._write()

    def _write(self) -> None:
        text = json.dumps(self._scrub(self.data), indent=2, ensure_ascii=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            # The manifest describes the output; failing to write it must not lose or mask the run.
            print(f"batchrun: warning: cannot write the manifest {self.path}: {exc.strerror or exc}", file=sys.stderr)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # none, or unreadable: the history starts again (the output itself is intact)
    return data if isinstance(data, dict) else None


def _earlier_runs(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs an existing manifest lists; a version 1 manifest (one run, no list) is its own entry."""
    runs = data.get("runs")
    if isinstance(runs, list):
        return [r for r in runs if isinstance(r, dict)]
    raw_spec = data.get("spec")
    spec = raw_spec if isinstance(raw_spec, dict) else {}
    return [{
        "started_at": data.get("started_at"), "finished_at": data.get("finished_at"), "resumed": data.get("resumed"),
        "spec_sha256": spec.get("sha256"), "planned": (data.get("plan") or {}).get("count"),
        "counts": data.get("counts"), "cost_usd": data.get("cost_usd"), "stopped_by": data.get("stopped_by"),
        "exit_code": data.get("exit_code"), "interrupted": data.get("interrupted"),
    }]


def _version() -> str:
    from batchrun import __version__

    return str(__version__)
