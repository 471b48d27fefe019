"""Matrix expansion with GitHub Actions semantics, lazily.

1. The cartesian product of the matrix lists, in the order written (the last key varies fastest).
2. `exclude`: drop every combination that matches an entry on all of the entry's keys (partial match).
3. `include`, each entry in order: merge it into every remaining combination whose *original* matrix
   values it does not contradict; keys it adds may overwrite keys added by earlier entries, never
   original values. An entry that merged into no combination is appended as a new combination.
   A matrix without keys yields exactly the include entries.

The product is never materialised: one pass finds which include entries merge anywhere, the
second yields. Both are cheap next to rendering requests.

`keep` (a job's constraints, batchrun.plan.design) drops combinations like exclude does. Covering
designs give their own combinations to `merge_include`, which applies rule 3 to them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any


def _matches(combo: Mapping[str, Any], entry: Mapping[str, Any], keys: Sequence[str] | None = None) -> bool:
    names = entry.keys() if keys is None else keys
    return all(k in combo and combo[k] == entry[k] for k in names)


def _original_keys(entry: Mapping[str, Any], matrix_keys: set[str]) -> list[str]:
    return [k for k in entry if k in matrix_keys]


def _product(matrix: Mapping[str, Sequence[Any]]) -> Iterator[dict[str, Any]]:
    keys = list(matrix)
    # map over the product: one C-level loop per combination (zip's lengths match by construction).
    return map(dict, map(zip, itertools.repeat(keys), itertools.product(*(matrix[k] for k in keys))))


Keep = Callable[[Mapping[str, Any]], bool] | None


def _surviving(matrix: Mapping[str, Sequence[Any]], exclude: Sequence[Mapping[str, Any]],
               keep: Keep = None) -> Iterator[dict[str, Any]]:
    if not exclude and keep is None:
        yield from _product(matrix)
        return
    for combo in _product(matrix):
        if not any(_matches(combo, entry) for entry in exclude) and (keep is None or keep(combo)):
            yield combo


def expand(
    matrix: Mapping[str, Sequence[Any]],
    include: Sequence[Mapping[str, Any]] = (),
    exclude: Sequence[Mapping[str, Any]] = (),
    keep: Keep = None,
) -> Iterator[dict[str, Any]]:
    """Yield every combination, each a fresh dict (original keys first, then added keys)."""
    if not matrix:
        for entry in include:
            yield dict(entry)
        if not include:
            yield {}
        return
    yield from merge_include(lambda: _surviving(matrix, exclude, keep), set(matrix), include)


def merge_include(combos: Callable[[], Iterable[dict[str, Any]]], matrix_keys: set[str],
                  include: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rule 3 over `combos()` (fresh dicts on each call; called twice when there are include entries)."""
    originals = [_original_keys(entry, matrix_keys) for entry in include]
    merged_somewhere = _merge_flags(combos, include, originals)
    for combo in combos():
        for entry, keys in zip(include, originals, strict=True):
            if _matches(combo, entry, keys):
                combo.update((k, v) for k, v in entry.items() if k not in matrix_keys)
        yield combo
    for entry, merged in zip(include, merged_somewhere, strict=True):
        if not merged:
            yield dict(entry)


def _merge_flags(
    combos: Callable[[], Iterable[dict[str, Any]]],
    include: Sequence[Mapping[str, Any]],
    originals: list[list[str]],
) -> list[bool]:
    flags = [False] * len(include)
    if not include:
        return flags
    pending = set(range(len(include)))
    for combo in combos():
        for i in list(pending):
            if _matches(combo, include[i], originals[i]):
                flags[i] = True
                pending.discard(i)
        if not pending:
            break
    return flags


def count(
    matrix: Mapping[str, Sequence[Any]],
    include: Sequence[Mapping[str, Any]] = (),
    exclude: Sequence[Mapping[str, Any]] = (),
    keep: Keep = None,
) -> int:
    """The number of combinations `expand` yields, without building merged dicts."""
    if not matrix:
        return max(len(include), 1)
    if exclude or keep is not None:
        survivors = sum(1 for _ in _surviving(matrix, exclude, keep))
    else:
        survivors = 1
        for values in matrix.values():
            survivors *= len(values)
    return count_include(lambda: _surviving(matrix, exclude, keep), set(matrix), include, survivors)


def count_include(combos: Callable[[], Iterable[dict[str, Any]]], matrix_keys: set[str],
                  include: Sequence[Mapping[str, Any]], survivors: int) -> int:
    """`survivors` (how many `combos()` yields) plus the include entries appended as new combinations."""
    originals = [_original_keys(entry, matrix_keys) for entry in include]
    return survivors + sum(1 for f in _merge_flags(combos, include, originals) if not f)
