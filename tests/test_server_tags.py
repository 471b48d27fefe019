"""X-Fal-Tags (protocol §4.1): cost-attribution tags on runs and submits, counted in the stats;
invalid tags are dropped and never fail the request."""

from __future__ import annotations

import httpx
import pytest

from batchrun.server import create_app
from batchrun.server.stats import parse_tags

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("raw", "tags"),
    [("team=ml", {"team": "ml"}),
     (" team = ml , project=sunset ", {"team": "ml", "project": "sunset"}),
     ("url=https://x/?a=b", {"url": "https://x/?a=b"}),  # split on the first "="
     ("team=ml,team=vision", {"team": "vision"}),  # the last duplicate wins
     ("fal.billing=x,noequals,=novalue,nokey=,,ok=1", {"ok": "1"}),
     ("", {})],
)  # fmt: skip
def test_parse_tags(raw: str, tags: dict[str, str]) -> None:
    assert parse_tags(raw) == tags


async def test_tags_are_counted_on_runs_and_submits_and_bad_ones_never_fail() -> None:
    app = create_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        run = await client.post("/run/local/echo", json={}, headers={"X-Fal-Tags": "team=ml, fal.x=1"})
        submit = await client.post("/queue/local/echo", json={}, headers={"X-Fal-Tags": "team=ml,run=nightly"})
        bad = await client.post("/run/local/echo", json={}, headers={"X-Fal-Tags": "=,,garbage"})
        assert (run.status_code, submit.status_code, bad.status_code) == (200, 200, 200)
        assert (await client.get("/_emulator/stats")).json()["tags"] == {"team=ml": 2, "run=nightly": 1}
        await client.post("/_emulator/reset")
        assert app.state.stats()["tags"] == {}
