"""Record times: isoformat's per-second shortcut writes exactly what datetime writes."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.output.records import _iso_datetime, isoformat

_TIMES = st.floats(min_value=-1e10, max_value=3e10, allow_nan=False, allow_infinity=False)


@settings(max_examples=2000, deadline=None)
@given(times=st.lists(_TIMES, min_size=1, max_size=5))
def test_isoformat_is_datetimes_text(times: list[float]) -> None:
    """Any timestamps, in any order (the per-second cache is shared), give datetime's text."""
    for ts in times:
        assert isoformat(ts) == _iso_datetime(ts)


def test_isoformat_at_rounding_edges() -> None:
    """Microseconds round half to even and may carry into the next second, as datetime does."""
    second = 1_796_000_000.0
    for ts in (second, second - 1e-7, second + 0.9999996, second + 0.0004995, second + 0.0005,
               math.nextafter(second, 0), math.nextafter(second + 1, 0), 0.0, -0.0000004, -1.5):
        assert isoformat(ts) == _iso_datetime(ts), ts
