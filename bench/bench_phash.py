"""Cost of one image's perceptual hash (decode + pHash), as a run with `download: true` pays it.

    python bench/bench_phash.py [--repeat 50]

Pictures are the local server's PNGs (`batchrun.server.image.render_png`) at common sizes; each is
hashed `--repeat` times after one warm-up, and the median per image is printed, plus the one-time
cost of importing Pillow and imagehash (numpy, scipy) in a fresh process. Needs the images extra.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from batchrun.server.image import prompt_digest, render_png
from batchrun.toolkit.phash import PerceptualHasher

SIZES = ((512, 512), (1024, 768), (1024, 1024), (2048, 2048))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import PIL.Image, imagehash, scipy.fftpack"], check=True)
    cold = time.perf_counter() - started
    baseline = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = time.perf_counter() - baseline
    print(f"imports (once per run): {cold - bare:.3f} s")
    hasher = PerceptualHasher()
    if not hasher.available:
        raise SystemExit(hasher.message)
    for width, height in SIZES:
        data = render_png(prompt_digest("a lighthouse at dusk"), 7, 0, width, height)
        hasher.phash(data)
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            hasher.phash(data)
            times.append(time.perf_counter() - t)
        print(f"{width}x{height} PNG ({len(data) / 1e6:.2f} MB): {statistics.median(times) * 1e3:.1f} ms per image")


if __name__ == "__main__":
    main()
