"""t-way covering designs: few rows such that every feasible combination of values of any t keys
appears in at least one row, with rules that every row must follow.

Works on indices: key k has values 0..sizes[k]-1; a row is a tuple of value indices. A rule is
(key indices, predicate over their value indices); a row, or a partial row, is valid when every
rule whose keys it has assigned holds. A t-tuple is *feasible* when some valid full row contains
it; only feasible tuples must be covered (the others cannot be).

The algorithm is a deterministic greedy in the family of AETG (Cohen et al., 1997), one row at a
time, with every random choice replaced by a fixed rule:

1. Seed the row with the smallest uncovered tuple (tuples compare as ((key, value), ...)).
2. Fill the other keys one at a time: of every (key, value) not yet assigned, take the one that
   covers the most uncovered tuples together with the keys assigned so far; ties go to the one
   that occurs in the most uncovered tuples overall, then to the lowest key, then value index.
   With rules, only values that leave the partial row completable to a valid full row are
   candidates (a depth-first search), so the row is valid and holds the (feasible) seed: every
   row covers at least one new tuple, and the loop ends exactly when every feasible tuple is
   covered.
3. Drop rows that became redundant (every tuple they cover is covered by another kept row),
   from the last row back.

Nothing depends on hash() or on set/dict iteration order: the set of uncovered tuples is only
asked for membership and its min(); choices compare tuples of ints and follow index order. So a
design is the same in every process and Python version. Sizes without rules: 6 keys of 4 values
give 24 rows pairwise (the best known is 19, the full product 4096) and 64 rows 3-way (the
least possible, 4**3); 20 keys of 10 values give 204 rows pairwise, in 2-4 s (bench/design_sizes.py)
(tests/test_design.py pins the bounds).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

__all__ = ["Rule", "covering_rows", "tuple_count"]

Rule = tuple[tuple[int, ...], Callable[[tuple[int, ...]], bool]]
Tuple = tuple[tuple[int, int], ...]  # ((key, value), ...), keys ascending


def tuple_count(sizes: Sequence[int], t: int) -> int:
    """How many t-tuples a design over `sizes` has to consider (before rules)."""
    total = 0
    for keys in itertools.combinations(range(len(sizes)), t):
        n = 1
        for k in keys:
            n *= sizes[k]
        total += n
    return total


class _Rules:
    def __init__(self, sizes: Sequence[int], rules: Sequence[Rule]) -> None:
        self.sizes = sizes
        self.rules = list(rules)
        self.by_key: list[list[Rule]] = [[] for _ in sizes]
        for rule in self.rules:
            for k in dict.fromkeys(rule[0]):
                self.by_key[k].append(rule)
        # Only keys that some rule names can make a partial row impossible to complete: the search
        # assigns those alone, and remembers its answers (rows share most partial assignments).
        self.ruled = [k for k in range(len(sizes)) if self.by_key[k]]
        self._known: dict[tuple[tuple[int, int], ...], bool] = {}

    def ok_with(self, assigned: dict[int, int], k: int) -> bool:
        """The rules involving key k that `assigned` (which assigns k) can decide all hold."""
        for keys, holds in self.by_key[k]:
            if all(j in assigned for j in keys) and not holds(tuple(assigned[j] for j in keys)):
                return False
        return True

    def consistent(self, assigned: dict[int, int]) -> bool:
        return all(self.ok_with(assigned, k) for k in assigned)

    def completable(self, assigned: dict[int, int]) -> bool:
        """Whether the partial row extends to a valid full row (depth-first over the ruled keys)."""
        if not self.rules:
            return True
        key = tuple((k, assigned[k]) for k in self.ruled if k in assigned)
        known = self._known.get(key)
        if known is None:
            partial = dict(key)
            free = [k for k in self.ruled if k not in partial]
            known = self._known[key] = self._extend(partial, free, 0)
        return known

    def _extend(self, assigned: dict[int, int], free: list[int], i: int) -> bool:
        if i == len(free):
            return True
        k = free[i]
        for v in range(self.sizes[k]):
            assigned[k] = v
            if self.ok_with(assigned, k) and self._extend(assigned, free, i + 1):
                del assigned[k]
                return True
        del assigned[k]
        return False


def covering_rows(sizes: Sequence[int], t: int, rules: Sequence[Rule] = ()) -> list[tuple[int, ...]]:
    """The rows of a t-way covering design (see the module docstring); [] when no valid row exists."""
    n = len(sizes)
    if n == 0:
        return [()]
    t = max(1, min(t, n))
    checker = _Rules(sizes, rules)
    uncovered: set[Tuple] = set()
    weight: dict[tuple[int, int], int] = {}
    for keys in itertools.combinations(range(n), t):
        for values in itertools.product(*(range(sizes[k]) for k in keys)):
            assigned = dict(zip(keys, values, strict=True))
            if checker.rules and not (checker.consistent(assigned) and checker.completable(assigned)):
                continue
            tup = tuple(zip(keys, values, strict=True))
            uncovered.add(tup)
            for kv in tup:
                weight[kv] = weight.get(kv, 0) + 1
    rows: list[tuple[int, ...]] = []
    key_sets = list(itertools.combinations(range(n), t))
    while uncovered:
        row = _build_row(min(uncovered), sizes, t, checker, uncovered, weight)
        for keys in key_sets:
            tup = tuple((k, row[k]) for k in keys)
            if tup in uncovered:
                uncovered.remove(tup)
                for kv in tup:
                    weight[kv] -= 1
        rows.append(row)
    return _drop_redundant(rows, key_sets)


def _build_row(seed: Tuple, sizes: Sequence[int], t: int, checker: _Rules, uncovered: set[Tuple],
               weight: dict[tuple[int, int], int]) -> tuple[int, ...]:
    assigned = dict(seed)
    free = [k for k in range(len(sizes)) if k not in assigned]
    # gain[(k, v)]: the uncovered tuples that (k, v) would complete with the keys assigned so far,
    # kept up to date as keys are assigned (only the tuples with the newly assigned key are new).
    gain: dict[tuple[int, int], int] = {}
    for k in free:
        for v in range(sizes[k]):
            gain[k, v] = sum(
                1 for rest in itertools.combinations(seed, t - 1) if _insert(rest, (k, v)) in uncovered
            )
    while free:
        best: tuple[tuple[int, int, int, int], int, int] | None = None
        for k in free:
            for v in range(sizes[k]):
                if checker.rules:
                    assigned[k] = v
                    ok = checker.ok_with(assigned, k) and checker.completable(assigned)
                    del assigned[k]
                    if not ok:
                        continue
                score = (gain[k, v], weight.get((k, v), 0), -k, -v)  # ties: the lowest key, then value
                if best is None or score > best[0]:
                    best = (score, k, v)
        # The partial row is completable (it holds a feasible seed), so some candidate is valid.
        assert best is not None
        _, k, v = best
        before = tuple(sorted(assigned.items()))
        assigned[k] = v
        free.remove(k)
        for k2 in free if t >= 2 else ():  # t = 1: a value covers only its own 1-tuple
            for v2 in range(sizes[k2]):
                for rest in itertools.combinations(before, t - 2):
                    if _insert(_insert(rest, (k, v)), (k2, v2)) in uncovered:
                        gain[k2, v2] += 1
    return tuple(assigned[k] for k in range(len(sizes)))


def _insert(tup: Tuple, kv: tuple[int, int]) -> Tuple:
    """`tup` with `kv` added, keys kept ascending."""
    for i, (j, _) in enumerate(tup):
        if j > kv[0]:
            return (*tup[:i], kv, *tup[i:])
    return (*tup, kv)


def _drop_redundant(rows: list[tuple[int, ...]], key_sets: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    covers: dict[Tuple, int] = {}
    for row in rows:
        for keys in key_sets:
            tup = tuple((k, row[k]) for k in keys)
            covers[tup] = covers.get(tup, 0) + 1
    kept = [True] * len(rows)
    for i in range(len(rows) - 1, -1, -1):
        tuples = [tuple((k, rows[i][k]) for k in keys) for keys in key_sets]
        if all(covers[tup] > 1 for tup in tuples):
            kept[i] = False
            for tup in tuples:
                covers[tup] -= 1
    return [row for row, keep in zip(rows, kept, strict=True) if keep]
