"""Live progress on stderr; the only module that imports tqdm.

On a terminal: a tqdm bar (done/total, rate, ETA) with a postfix of ok, errors, retrying, queued,
running and the effective concurrency (it shrinks on 429, see batchrun.run.limits). Not a terminal
(CI logs, files): one plain line every ~10 s or every 10% of the plan. `enabled=False`
(`--no-progress`) shows nothing. Messages printed during the run go through `message()` so they
do not tear the bar.
"""

from __future__ import annotations

import sys
import time
from typing import Never, TextIO

from tqdm import tqdm

__all__ = ["Progress"]

_PLAIN_EVERY_S = 10.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Counters of a run and their display. `state` holds only requests being worked on."""

    def __init__(self, total: int, *, skipped: int = 0, concurrency: int = 1, enabled: bool = True,
                 stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.total = total
        self.skipped = skipped
        self.done = skipped
        self.ok = 0
        self.errors = 0
        self.concurrency = concurrency
        self.effective = concurrency
        self.state: dict[str, str] = {}  # id -> sending | queued | running | retrying
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty() if tty is None else tty
        self._started = time.monotonic()
        self._last_plain = self._started
        self._last_decile = self._decile()
        self._bar: tqdm[Never] | None = None
        if enabled and self.tty:
            self._bar = tqdm(total=total, initial=skipped, file=self.stream, unit="req",
                             dynamic_ncols=True, smoothing=0.05, leave=True)

    # -- request states, fed by the client's events ------------------------------------------------
    def set_state(self, request_id: str, state: str) -> None:
        self.state[request_id] = state

    def clear(self, request_id: str) -> None:
        self.state.pop(request_id, None)

    def counts(self) -> dict[str, int]:
        out = {"sending": 0, "queued": 0, "running": 0, "retrying": 0}
        for s in self.state.values():
            out[s] = out.get(s, 0) + 1
        return out

    # -- completions, fed by the writer ------------------------------------------------------------
    def advance(self, ok: bool) -> None:
        self.done += 1
        if ok:
            self.ok += 1
        else:
            self.errors += 1
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(1)
        elif self.enabled:
            decile = self._decile()
            # Every 10% of the plan, but not more than once a second (small plans would spam).
            if decile != self._last_decile and time.monotonic() - self._last_plain >= 1.0:
                self._last_decile = decile
                self._plain()

    def tick(self) -> None:
        """Called about twice a second: refresh the bar, or print a plain line every ~10 s."""
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=True)
        elif self.enabled and time.monotonic() - self._last_plain >= _PLAIN_EVERY_S:
            self._plain()

    def message(self, text: str) -> None:
        """Print a line on stderr without breaking the bar (shown even with progress disabled)."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.close()
            self._bar = None
        elif self.enabled and self.done != self.skipped:
            self._plain()

    # -- formatting --------------------------------------------------------------------------------
    def _decile(self) -> int:
        return (self.done * 10) // self.total if self.total else 10

    def _postfix(self) -> str:
        c = self.counts()
        parts = [f"ok={self.ok}", f"err={self.errors}"]
        if c["retrying"]:
            parts.append(f"retrying={c['retrying']}")
        if c["queued"]:
            parts.append(f"queued={c['queued']}")
        parts.append(f"running={c['running'] + c['sending']}")
        parts.append(f"conc={self.effective}/{self.concurrency}")
        return " ".join(parts)

    def line(self) -> str:
        """The plain progress line (also what non-terminal runs print)."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = (self.done - self.skipped) / elapsed
        pct = f" ({100 * self.done // self.total}%)" if self.total else ""
        remaining = self.total - self.done
        eta = f" eta {_duration(remaining / rate)}" if rate > 0 and remaining > 0 else ""
        c = self.counts()
        return (
            f"batchrun: {self.done}/{self.total}{pct} ok={self.ok} errors={self.errors} "
            f"retrying={c['retrying']} queued={c['queued']} running={c['running'] + c['sending']} "
            f"concurrency={self.effective}/{self.concurrency} rate={rate:.1f}/s{eta}"
        )

    def _plain(self) -> None:
        self._last_plain = time.monotonic()
        print(self.line(), file=self.stream, flush=True)
