"""Field-level comparison of two records' results for `batchrun diff`, and the fingerprint that
lets diff skip it.

Volatile fields are ignored: any string that is an http(s) URL, keys named `url`, `request_id`,
`timings` or `timing`. When both records downloaded their artifacts (sha256 known), a media URL is
compared by content hash instead, so a re-uploaded identical image is no change and a changed image
behind the same URL is one.

Images whose bytes differ are then compared by look when both artifacts carry a perceptual hash
(`phash`, see `batchrun.toolkit.phash`): at most `threshold` differing bits of 64
(`PHASH_THRESHOLD` by default, `diff --phash-threshold`) is "visually the same" (a re-encode, a
resize), more is "visually changed". Either way it is a `Change`; `looks_same` tells them apart.

`fingerprint` digests a result as `compare_results` sees it (volatile fields out, URLs as their
content hash, `--ignore` subtrees blanked), so diff keeps 16 bytes per id instead of the result and
compares field by field only the ids whose digests differ. It is sound one way only, which is all
diff needs: equal digests mean `compare_results` finds no change; different digests may still
compare equal (1 vs 1.0, a URL whose hash only one side knows).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from typing import Any

import orjson

from batchrun.spec.resultpath import (
    Part,
    format_path,
    json_equal,
    matches_prefix,
    show_value,
)

VOLATILE_KEYS = frozenset({"url", "request_id", "timings", "timing"})
# Measured with the local server's pictures: a JPEG re-encode down to quality 40, a half-size copy or
# a brightness shift of a few levels is 0-4 bits away; another seed's picture 30-44 bits.
PHASH_THRESHOLD = 6
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One changed field. `base`/`new` are the JSON values (`ABSENT` on the side that lacks the
    field); for media compared by content they are the sha256 hashes and `media` is true, and
    `distance` is the bits their perceptual hashes differ by (None: a side has no hash)."""

    path: str
    base: Any
    new: Any
    media: bool = False
    distance: int | None = None
    looks_same: bool = False  # media whose bytes differ but whose look does not (distance <= threshold)

    def __str__(self) -> str:
        text = f"{self.path}: {self._shown(self.base)} -> {self._shown(self.new)}"
        return f"{text} ({self.visual_note})" if self.distance is not None else text

    @property
    def visual(self) -> str | None:
        """`same`, `changed`, or None when the look is unknown (no perceptual hash on a side)."""
        if self.distance is None:
            return None
        return "same" if self.looks_same else "changed"

    @property
    def visual_note(self) -> str:
        """`visually the same, pHash distance 2/64`; "" when unknown."""
        if self.distance is None:
            return ""
        return f"visually {'the same' if self.looks_same else 'changed'}, pHash distance {self.distance}/64"

    def _shown(self, value: Any) -> str:
        if value is ABSENT:
            return "(absent)"
        return f"sha256 {value[:12]}" if self.media else show_value(value, limit=60)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.media:
            out.update(base_sha256=self.base, new_sha256=self.new)
            if self.distance is not None:
                out.update(phash_distance=self.distance, visual=self.visual)
        else:
            out.update({side: value for side, value in (("base", self.base), ("new", self.new)) if value is not ABSENT})
        return out


def compare_results(
    base: dict[str, Any], new: dict[str, Any], *, ignore: Sequence[tuple[Part, ...]] = (),
    phash_threshold: int = PHASH_THRESHOLD,
) -> list[Change]:
    """Field-level changes between two records' results, volatile fields and `ignore` left out;
    media within `phash_threshold` bits of each other are changes with `looks_same`."""
    walker = _Walker(artifact_hashes(base), artifact_hashes(new), ignore,
                     phashes=(artifact_phashes(base), artifact_phashes(new)), threshold=phash_threshold)
    walker.walk(base.get("result"), new.get("result"), ())
    return walker.changes


def phash_distance(a: str, b: str) -> int:
    """Bits in which two 16-hex-digit perceptual hashes differ (0-64)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def artifact_phashes(record: dict[str, Any]) -> dict[str, str]:
    """URL -> perceptual hash of the record's downloaded images that have one."""
    out = {}
    for artifact in record.get("artifacts") or []:
        if isinstance(artifact, dict) and isinstance(artifact.get("url"), str) and _is_phash(artifact.get("phash")):
            out[artifact["url"]] = artifact["phash"]
    return out


def _is_phash(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 16:
        return False
    try:
        int(value, 16)
    except ValueError:
        return False
    return True


def artifact_hashes(record: dict[str, Any]) -> dict[str, str]:
    """URL -> sha256 of the record's downloaded artifacts (failed downloads have no hash)."""
    out = {}
    for artifact in record.get("artifacts") or []:
        if (
            isinstance(artifact, dict)
            and isinstance(artifact.get("sha256"), str)
            and isinstance(artifact.get("url"), str)
        ):
            out[artifact["url"]] = artifact["sha256"]
    return out


def _ignored(ignore: Sequence[tuple[Part, ...]], parts: tuple[Part, ...]) -> bool:
    """True when an --ignore pattern names `parts` or one of its ancestors."""
    return any(matches_prefix(pattern, parts) for pattern in ignore)


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


class _Walker:
    def __init__(self, base_hashes: dict[str, str], new_hashes: dict[str, str], ignore: Sequence[tuple[Part, ...]],
                 *, phashes: tuple[dict[str, str], dict[str, str]] = ({}, {}), threshold: int = PHASH_THRESHOLD):
        self.base_hashes = base_hashes
        self.new_hashes = new_hashes
        self.ignore = ignore
        self.changes: list[Change] = []
        self.phashes = phashes
        self.threshold = threshold

    def walk(self, a: Any, b: Any, parts: tuple[Part, ...]) -> None:
        if _ignored(self.ignore, parts):
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in [*a, *(k for k in b if k not in a)]:
                if key in VOLATILE_KEYS:
                    # A `url` key is compared as media, unless --ignore names it (or the walk
                    # would have stopped above it).
                    if key == "url" and key in a and key in b and not _ignored(self.ignore, (*parts, key)):
                        self._media(a[key], b[key], (*parts, key))
                    continue
                self.walk(a.get(key, ABSENT), b.get(key, ABSENT), (*parts, key))
        elif isinstance(a, list) and isinstance(b, list):
            for i in range(max(len(a), len(b))):
                self.walk(a[i] if i < len(a) else ABSENT, b[i] if i < len(b) else ABSENT, (*parts, i))
        elif _is_url(a) and _is_url(b):
            self._media(a, b, parts)
        elif a is ABSENT or b is ABSENT or not json_equal(a, b):
            self.changes.append(Change(format_path(parts), a, b))

    def _media(self, a: Any, b: Any, parts: tuple[Part, ...]) -> None:
        """URLs are volatile; their content hashes, when both sides have them, are not."""
        old = self.base_hashes.get(a) if isinstance(a, str) else None
        new = self.new_hashes.get(b) if isinstance(b, str) else None
        if old is not None and new is not None and old != new:
            base_look = self.phashes[0].get(a) if isinstance(a, str) else None
            new_look = self.phashes[1].get(b) if isinstance(b, str) else None
            distance = phash_distance(base_look, new_look) if base_look and new_look else None
            self.changes.append(Change(format_path(parts), old, new, media=True, distance=distance,
                                       looks_same=distance is not None and distance <= self.threshold))


class _Unsure(Exception):
    """A value the digest cannot stand for (NaN is never equal to itself)."""


# Stand-ins for what the walker does not compare as it is. Every one starts with NUL, and a result
# string that starts with NUL gets a second one, so no result string can pass for a stand-in.
_IGNORED = "\x00ignored"
_MEDIA = "\x00media:"


def fingerprint(record: dict[str, Any], *, ignore: Sequence[tuple[Part, ...]] = ()) -> bytes | None:
    """A 16-byte digest of the record's result as `compare_results` sees it; None when it cannot
    vouch for equality (a non-finite number, an integer JSON cannot carry): compare those."""
    canon = _Canon(artifact_hashes(record), ignore)
    try:
        text = orjson.dumps(canon.value(record.get("result"), ()), option=orjson.OPT_SORT_KEYS)
    except (_Unsure, orjson.JSONEncodeError):
        return None
    return hashlib.blake2b(text, digest_size=16).digest()


class _Canon:
    """The result rebuilt with `_Walker`'s rules: what the walker skips is dropped or blanked, a URL
    becomes its content hash (or "unknown": two unknowns never differ in the walker either)."""

    def __init__(self, hashes: dict[str, str], ignore: Sequence[tuple[Part, ...]]):
        self.hashes = hashes
        self.ignore = ignore

    def value(self, value: Any, parts: tuple[Part, ...]) -> Any:
        if self.ignore and _ignored(self.ignore, parts):
            return _IGNORED
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key == "url":  # compared as media, as the walker does (unless --ignore names it)
                    if self.ignore and _ignored(self.ignore, (*parts, key)):
                        out[key] = _IGNORED
                    else:
                        out[key] = self.media(item) if isinstance(item, str) else _MEDIA
                elif key not in VOLATILE_KEYS:
                    out[key] = self.value(item, (*parts, key) if self.ignore else parts)
            return out
        if isinstance(value, list):
            return [self.value(item, (*parts, i) if self.ignore else parts) for i, item in enumerate(value)]
        if isinstance(value, str):
            if _is_url(value):
                return self.media(value)
            return "\x00" + value if value.startswith("\x00") else value
        if isinstance(value, float) and not math.isfinite(value):
            raise _Unsure
        return value

    def media(self, url: str) -> str:
        return _MEDIA + self.hashes.get(url, "")
