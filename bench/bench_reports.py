"""Time and peak RSS of `batchrun report`, `batchrun diff` and `batchrun merge` on big outputs.

    python bench/bench_reports.py [--records 100000] [--src DIR] [--save DIR] [--workdir DIR]

(`report --html` is left out: its contact sheet of every image is a page as big as the output.)

Generates two realistic outputs (text-to-image records: arguments, matrix, a result with images,
logs, metrics, expectations, downloaded artifacts; base has ~2% of its ids written twice, as a
resumed run leaves them; new changes statuses, results, images, latencies and expectations of a
few percent of the ids, drops some and adds some). A sample of the records is validated against
schemas/record.schema.json. Then each command runs in its own process under bench/measured.py
(peak RSS = the child's own VmHWM) and its wall time is taken.

--src DIR puts another batchrun source tree first on PYTHONPATH (e.g. `git archive` of an older
commit), to measure before/after on the same files; --save DIR keeps every command's stdout there,
to compare outputs byte for byte between the two.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
STYLES = ("photo", "watercolor", "anime", "pixel art", "oil painting", "line drawing", "3d render", "sketch")
SUBJECTS = ("a lighthouse at dusk", "a fox in the snow", "a busy market in Marrakesh", "an astronaut cat",
            "a bowl of ramen, studio lighting", "a foggy forest trail", "a red bicycle against a blue wall")


def _stamp(second: float) -> str:
    whole = int(second)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_735_732_800 + whole)) + f".{int((second - whole) * 1e6):06d}Z"
    )


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_record(
    i: int,
    rng: random.Random,
    *,
    side: str,
    variant: int = 0,
    status: str = "ok",
    latency: float | None = None,
    finished: float | None = None,
) -> dict[str, Any]:
    """One record of a txt2img / upscale sweep; `variant` changes the image content (and its hash)."""
    job = "txt2img" if i % 5 else "upscale"
    style, subject, seed = STYLES[i % len(STYLES)], SUBJECTS[i % len(SUBJECTS)], i // 40
    rid = _sha(f"id-{i}")[:16]
    # Each request has its own typical latency; a re-run jitters around it (+-10%).
    typical = random.Random(i).uniform(0.8, 4.0)
    latency = latency if latency is not None else round(typical * rng.uniform(0.9, 1.1), 4)
    queue = round(rng.uniform(0.0, 0.6), 4)
    finished = finished if finished is not None else i * 0.02 + latency
    width = 1024 if job == "txt2img" else 2048
    url = f"https://v3.fal.media/files/{side}/{_sha(f'{side}{i}{variant}')[:20]}.png"
    ok = status == "ok"
    record: dict[str, Any] = {
        "id": rid,
        "index": i,
        "job": job,
        "endpoint": "fal-ai/flux/dev" if job == "txt2img" else "fal-ai/esrgan",
        "path": "",
        "mode": "subscribe",
        "arguments": {
            "prompt": f"{subject}, {style}",
            "image_size": "square_hd",
            "seed": seed,
            "num_inference_steps": 28,
            "guidance_scale": 3.5,
            "enable_safety_checker": True,
        },
        "matrix": {"style": style, "seed": seed},
        "row": None,
        "repeat": 0,
        "status": status,
        "result": {
            "images": [{"url": url, "width": width, "height": width, "content_type": "image/png"}],
            "seed": seed * 7919 + variant,
            "prompt": f"{subject}, {style}",
            "timings": {"inference": round(latency * 0.8, 4)},
            "has_nsfw_concepts": [False],
        }
        if ok
        else None,
        "error": None
        if ok
        else {
            "type": "internal_server_error",
            "status_code": 500,
            "detail": f"runner {i % 7} crashed: CUDA out of memory",
            "retryable": False,
        },
        "request_id": f"{_sha(f'req{side}{i}{variant}')[:8]}-{_sha(str(i))[:4]}-4000-8000-{_sha(side + str(i))[:12]}",
        "attempts": 1 + (i % 17 == 0),
        "logs": [
            {
                "message": f"step {s}/28",
                "level": "INFO",
                "source": "user",
                "timestamp": _stamp(finished - latency + s * 0.1),
            }
            for s in range(0, 28, 7)
        ],
        "metrics": {"inference_time": round(latency * 0.8, 4)},
        "timing": {
            "started_at": _stamp(finished - latency - queue),
            "finished_at": _stamp(finished),
            "latency_s": latency,
            "queue_s": queue,
        },
        "served_from": "us-east-1",
        "cost_usd": 0.025 if ok and job == "txt2img" else (0.0125 if ok else None),
    }
    if ok:
        record["expectations"] = [
            {
                "passed": True,
                "message": f"images[0].width: {width} == {width}",
                "check": {"path": "images[0].width", "equals": width},
            },
            {
                "passed": latency <= 3.5,
                "message": f"latency_s: expected <= 3.5, got {latency}",
                "check": {"latency_s": {"max": 3.5}},
            },
        ]
        record["artifacts"] = [
            {
                "url": url,
                "path": f"files/{rid}/0.png",
                "sha256": _sha(f"pixels{i}{variant}"),
                "bytes": 1_400_000 + i % 9000,
                "content_type": "image/png",
            }
        ]
    return record


def base_records(n: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    """n ids; 1% failed; every 50th first failed and was retried by a resume (an older error line,
    then ok)."""
    rng = random.Random(seed)
    for i in range(n):
        if i % 50 == 7:
            yield make_record(i, rng, side="base", status="error", finished=i * 0.02)
        status = "error" if i % 100 == 61 else "ok"
        yield make_record(i, rng, side="base", status=status, finished=n * 0.02 + i * 0.02 if i % 50 == 7 else None)


def new_records(n: int, seed: int = 2) -> Iterator[dict[str, Any]]:
    """The same plan re-run: ~1% newly failing, 0.5% newly passing (the other half still fail), ~1% results
    changed, ~0.5% images changed, ~1% slower, 0.2% missing, 0.2% added (indices beyond n); every URL and request id
    differs."""
    rng = random.Random(seed)
    for i in range(n + n // 500):
        if i < n and i % 500 == 3:
            continue  # missing
        kind = i % 100
        if kind == 11 or (kind == 61 and i % 200 == 61):
            yield make_record(i, rng, side="new", status="error")
        elif kind == 23:
            record = make_record(i, rng, side="new")
            if record["result"] is not None:
                record["result"]["seed"] += 1
                record["result"]["images"][0]["width"] = 768
            yield record
        elif kind in (31, 81):
            yield make_record(i, rng, side="new", variant=kind % 2 + 1)
        elif kind == 47:
            yield make_record(i, rng, side="new", latency=9.5)
        else:
            yield make_record(i, rng, side="new")


def write_jsonl(path: Path, records: Iterator[dict[str, Any]], validator: jsonschema.Draft202012Validator) -> int:
    count = 0
    with path.open("w") as out:
        for record in records:
            if count % 97 == 0 or count < 200:  # a sample: validating 200k records takes longer than the bench
                validator.validate(record)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def measure(label: str, args: list[str], workdir: Path, src: Path | None, save: Path | None) -> dict[str, Any]:
    """Run `python -m batchrun ARGS` in a child under bench/measured.py; wall time and VmHWM."""
    hwm = workdir / f"{label}.hwm"
    hwm.unlink(missing_ok=True)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    stdout_path = (save / f"{label}.out") if save is not None else workdir / f"{label}.out"
    started = time.perf_counter()
    with stdout_path.open("wb") as stdout:
        child = subprocess.run(
            [sys.executable, str(BENCH_DIR / "measured.py"), str(hwm), "-m", "batchrun", *args],
            cwd=workdir,
            env=env,
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=1800,
        )
    wall = time.perf_counter() - started
    if child.returncode not in (0, 1):
        raise RuntimeError(f"{label}: exit {child.returncode}: {child.stderr.decode()[-2000:]}")
    return {
        "command": label,
        "exit": child.returncode,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(int(hwm.read_text()) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--src", type=Path, help="a batchrun source tree to put first on PYTHONPATH")
    parser.add_argument("--save", type=Path, help="keep each command's stdout in this directory")
    parser.add_argument("--workdir", type=Path, help="reuse these generated files (made when absent)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        base, new = workdir / "base.jsonl", workdir / "new.jsonl"
        if not (base.exists() and new.exists()):
            schema = json.loads((ROOT / "schemas" / "record.schema.json").read_text())
            validator = jsonschema.Draft202012Validator(schema)
            lines = write_jsonl(base, base_records(args.records), validator)
            write_jsonl(new, new_records(args.records), validator)
            print(
                f"generated {lines} + {sum(1 for _ in new.open())} lines "
                f"({base.stat().st_size / 2**20:.0f} + {new.stat().st_size / 2**20:.0f} MB) in {workdir}",
                file=sys.stderr,
            )
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
        src = args.src.resolve() if args.src is not None else None
        save = args.save.resolve() if args.save is not None else None
        runs = [
            ("report", ["report", str(base)]),
            ("report-json", ["report", str(base), "--format", "json"]),
            ("diff", ["diff", str(base), str(new)]),
            ("diff-json", ["diff", str(base), str(new), "--format", "json"]),
            ("diff-html", ["diff", str(base), str(new), "--html", str(workdir / "diff.html")]),
            ("merge", ["merge", str(base), str(new), "-o", str(workdir / "merged.jsonl")]),
        ]
        rows = [measure(label, command, workdir, src, save) for label, command in runs]
    print(f"{'command':<12} {'exit':>4} {'wall s':>8} {'peak RSS MB':>12}")
    for row in rows:
        print(f"{row['command']:<12} {row['exit']:>4} {row['wall_s']:>8.2f} {row['peak_rss_mb']:>12.1f}")
    print(json.dumps({"records": args.records, "rows": rows}))


if __name__ == "__main__":
    main()
