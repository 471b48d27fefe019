"""Keep secrets out of everything batchrun writes.

A `Redactor` is told the secret *values* of a run (the API key and its parts, every environment
value interpolated into headers or arguments) and replaces them with "[REDACTED]" wherever they
appear: in strings, inside JSON-able objects (keys and values), and in header maps, where
Authorization-like names are redacted whatever their value. A server may echo a key back in an
error body, so results, logs and error details all pass through it before they are recorded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["REDACTED", "Redactor", "is_sensitive_header"]

REDACTED = "[REDACTED]"

# Values shorter than this are only redacted where a whole string equals them: scrubbing every
# "1" or "abc" out of model results would destroy them, and such values are no real secret anyway.
MIN_SUBSTRING_LENGTH = 4

_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-fal-key"}
)
_SENSITIVE_WORDS = ("token", "secret", "password", "api-key", "apikey", "auth")


def is_sensitive_header(name: str) -> bool:
    """Header names whose values are credentials whatever they contain."""
    lowered = name.lower()
    return lowered in _SENSITIVE_HEADERS or any(word in lowered for word in _SENSITIVE_WORDS)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._exact: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._substrings: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Register one more secret value (idempotent; empty values are ignored)."""
        if not secret or secret in self._exact:
            return
        self._exact.add(secret)
        if len(secret) < MIN_SUBSTRING_LENGTH:
            return
        # The JSON-escaped form too, for secrets echoed inside raw JSON text.
        forms = {secret, json.dumps(secret)[1:-1]}
        if ":" in secret:
            # FAL_KEY is "key_id:key_secret": either half alone still identifies the account.
            forms.update(part for part in secret.split(":") if len(part) >= MIN_SUBSTRING_LENGTH)
        self._substrings.update(forms)
        # Longest first, so a secret containing another is replaced whole.
        ordered = sorted(self._substrings, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def __bool__(self) -> bool:
        return bool(self._exact)

    def text(self, value: str) -> str:
        if value in self._exact:
            return REDACTED
        if self._pattern is None or self._pattern.search(value) is None:
            return value  # the same object: `_scrub` relies on identity to skip copies
        return self._pattern.sub(REDACTED, value)

    def scrub(self, value: Any) -> Any:
        """A copy of a JSON-able value with every secret replaced. Unchanged sub-objects are
        returned as they are (no copy), so scrubbing a large clean result costs one walk."""
        if not self._exact:
            return value
        return self._scrub(value)

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
