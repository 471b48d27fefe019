"""Covering-design sizes and times (batchrun.plan.covering), against the full product.

    python bench/design_sizes.py

Each row: the matrix (keys x values), T, the design's rows, the full product's size and the
seconds one design takes (the planner computes it once per process). Also how much of a pairwise
design survives a small edit (docs/spec.md, *What is stable*).
"""

from __future__ import annotations

import json
import math
import time

from batchrun.plan.covering import covering_rows
from batchrun.plan.design import design_rows

CASES = [([4] * 6, 2), ([4] * 6, 3), ([3] * 4, 2), ([2] * 10, 2), ([3] * 13, 2), ([5] * 8, 2), ([4] * 8, 3),
         ([2, 3, 4, 5, 6], 2), ([10] * 20, 2)]


def main() -> None:
    print(f"{'matrix':>14} {'T':>2} {'rows':>5} {'full':>22} {'seconds':>8}")
    for sizes, t in CASES:
        start = time.perf_counter()
        rows = covering_rows(sizes, t)
        took = time.perf_counter() - start
        shape = f"{len(sizes)}x{sizes[0]}" if len(set(sizes)) == 1 else "x".join(map(str, sizes))
        print(f"{shape:>14} {t:>2} {len(rows):>5} {math.prod(sizes):>22} {took:>8.3f}")
    base = {k: [1, 2, 3, 4] for k in "abcdef"}
    edits = {"add a value to the last key": {**base, "f": [1, 2, 3, 4, 5]},
             "add a value to the first key": {**base, "a": [0, 1, 2, 3, 4]},
             "add a key": {**base, "g": [1, 2]},
             "remove a value": {**base, "c": [1, 2, 3]}}

    def rows_of(matrix: dict[str, list[int]]) -> set[str]:
        return {json.dumps(r, sort_keys=True) for r in design_rows(matrix, 2, [], [])}

    before = rows_of(base)
    for name, matrix in edits.items():
        after = rows_of(matrix)
        print(f"6x4 pairwise, {name}: {len(before & after)} of {len(before)} combinations kept, {len(after)} rows")


if __name__ == "__main__":
    main()
