"""Keep secrets out of everything batchrun writes.

A `Redactor` is told the secret *values* of a run (the API key and its parts, every environment
value interpolated into headers or arguments) and replaces them with "[REDACTED]" wherever they
appear: in strings, inside JSON-able objects (keys and values), and in header maps, where
Authorization-like names are redacted whatever their value. A server may echo a key back in an
error body, so results, logs and error details all pass through it before they are recorded.

A server (or our own cutting of a long detail to length) may also echo only *part* of a secret:
its first 20 characters, its tail. Half a key is still worth hiding, so any run of at least
`MIN_FRAGMENT` characters of a secret is redacted too, however long: the pattern finds each
`MIN_FRAGMENT`-character piece of a secret, and the match is then grown over as much of the
secret as the text goes on matching.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

__all__ = ["MIN_FRAGMENT", "REDACTED", "Redactor", "is_sensitive_header"]

REDACTED = "[REDACTED]"

# Values shorter than this are only redacted where a whole string equals them: scrubbing every
# "1" or "abc" out of model results would destroy them, and such values are no real secret anyway.
MIN_SUBSTRING_LENGTH = 4
# The shortest piece of a longer secret that is redacted on its own. 8 characters of a random key
# narrow a brute force by 2^32 or more (worth hiding); shorter runs of hex or base64 occur in
# ordinary results (hashes, seeds, ids) by chance, and scrubbing those would damage them.
MIN_FRAGMENT = 8

_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-fal-key"}
)
_SENSITIVE_WORDS = ("token", "secret", "password", "api-key", "apikey", "auth")


def is_sensitive_header(name: str) -> bool:
    """Header names whose values are credentials whatever they contain."""
    lowered = name.lower()
    return lowered in _SENSITIVE_HEADERS or any(word in lowered for word in _SENSITIVE_WORDS)


# What JSON text escapes. A secret holding one of these, or any non-ASCII character (its
# ASCII-escaped form is one of the forms searched for), may appear in orjson's output otherwise than
# it does in the string, so `Redactor.scrub` then walks values instead of searching their text.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def _mixed(piece: str) -> bool:
    return any(c.isdigit() for c in piece) and any(c.isalpha() for c in piece)


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex matching any of `words`, as a trie (`ab(?:c|d)`): the regex engine tests one
    character class per position instead of every alternative, which keeps scanning a large
    result fast with hundreds of fragments."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # the end of a word

    def emit(node: dict[str, Any]) -> str:
        ends = "" in node
        branches = [re.escape(char) + emit(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:
            body = f"(?:{body})?"
        return body

    return emit(trie)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._exact: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._forms: set[str] = set()  # every text form of every secret, long enough to search for
        self._text_search = True  # no secret holds a character JSON escapes (see scrub)
        self._quoted_short: tuple[str, ...] = ()  # '"s"' for each secret redacted only when whole
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Register one more secret value (idempotent; empty values are ignored)."""
        if not secret or secret in self._exact:
            return
        self._exact.add(secret)
        if not secret.isascii() or _JSON_ESCAPED.search(secret):
            self._text_search = False
        if len(secret) < MIN_SUBSTRING_LENGTH:
            self._quoted_short += (f'"{secret}"',)
            return
        # The JSON-escaped form too, for secrets echoed inside raw JSON text (and ASCII-escaped).
        self._forms.update({secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]})
        if ":" in secret:
            # FAL_KEY is "key_id:key_secret": either half alone still identifies the account, even
            # one shorter than a fragment.
            self._forms.update(part for part in secret.split(":") if len(part) >= MIN_SUBSTRING_LENGTH)
        pieces: set[str] = set()
        for form in self._forms:
            if len(form) <= MIN_FRAGMENT:
                pieces.add(form)  # a short secret: whole only
            else:
                # Only pieces that look like a token's (letters and digits mixed): a secret that holds
                # plain words (an env value that is a path) must not scrub "requests" from messages.
                # A found piece is grown over its neighbours whatever they hold.
                pieces.add(form)  # whole, always: a secret of plain words has no token-like piece
                pieces.update(piece for i in range(len(form) - MIN_FRAGMENT + 1)
                              if _mixed(piece := form[i : i + MIN_FRAGMENT]))
        self._pattern = re.compile(_trie_pattern(pieces))

    def __bool__(self) -> bool:
        return bool(self._exact)

    def text(self, value: str) -> str:
        if value in self._exact:
            return REDACTED
        if self._pattern is None:
            return value
        match = self._pattern.search(value)
        if match is None:
            return value  # the same object: `_scrub` relies on identity to skip copies
        out: list[str] = []
        done = 0
        while match is not None:
            start, end = self._grow(value, match.start(), match.end())
            out.append(value[done:start])
            out.append(REDACTED)
            done = end
            match = self._pattern.search(value, end)
        out.append(value[done:])
        return "".join(out)

    def _grow(self, value: str, start: int, end: int) -> tuple[int, int]:
        """The longest run around `value[start:end]` (a piece of a secret) that is still part of
        one secret form: a secret echoed whole, or a prefix or suffix cut at any length."""
        forms = [form for form in self._forms if value[start:end] in form]
        while end < len(value) and any(value[start : end + 1] in form for form in forms):
            end += 1
        while start > 0 and any(value[start - 1 : end] in form for form in forms):
            start -= 1
        # Spaces at the edges are text's, not the secret's ("Key <key>" is one: its space stays).
        while start < end and value[start].isspace():
            start += 1
        while end > start and value[end - 1].isspace():
            end -= 1
        return start, end

    def scrub(self, value: Any) -> Any:
        """A copy of a JSON-able value with every secret replaced. Unchanged sub-objects are
        returned as they are (no copy), so scrubbing a large clean result costs one walk."""
        if not value or not self._exact:  # None, "", {}, [], 0: nothing to hide (no secret is empty)
            return value
        if self._text_search and isinstance(value, (dict, list)) and self._clean_text(value):
            return value
        return self._scrub(value)

    def _clean_text(self, value: dict[Any, Any] | list[Any]) -> bool:
        """True when no string inside `value` can hold a secret, judged from its JSON text in one
        search instead of a walk over every string (an image model's result of four files: 12 -> 2
        us, and each result is scrubbed twice, in the client and in its record).

        Sound because every secret is ASCII without a character JSON escapes: its only forms are
        itself and its parts, and a string holding one holds it verbatim in the text too; a string
        equal to a short secret is in it quoted. A match anywhere (a key, a number, across two
        strings) only means the walk decides. Values orjson cannot write (a non-str key, a huge
        int, a lone surrogate) are walked."""
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            return False
        if self._pattern is not None and self._pattern.search(text):
            return False
        return not any(quoted in text for quoted in self._quoted_short)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            changed = False
            out: dict[Any, Any] = {}
            for key, item in value.items():
                new_key = self.text(key) if isinstance(key, str) else key
                new_item = self._scrub(item)
                changed = changed or new_key is not key or new_item is not item
                out[new_key] = new_item
            return out if changed else value
        if isinstance(value, (list, tuple)):
            items = [self._scrub(item) for item in value]
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            return items if isinstance(value, list) else tuple(items)
        return value

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """A header map fit for a record or a log: credential names fully redacted, secret values
        scrubbed from the others."""
        return {
            name: REDACTED if is_sensitive_header(name) else self.text(value)
            for name, value in headers.items()
        }
