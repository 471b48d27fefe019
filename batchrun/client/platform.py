"""fal's Platform API, read-only: each endpoint's OpenAPI document and unit price, for
`batchrun endpoints pull/check` (docs/fal-protocol.md §9.7). Through the one Sender, like every
other request batchrun sends.

    GET {api}/models?endpoint_id=A,B&expand=openapi-3.0  -> {"models": [{endpoint_id, openapi, ...}]}
    GET {api}/models/pricing?endpoint_id=A,B             -> {"prices": [{endpoint_id, unit_price, unit, currency}]}

Both take 1-50 ids a request; `has_more`/`next_cursor` pages are followed.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx

from batchrun.client.retry import TransportFailure
from batchrun.client.transport import Call, Sender, origin
from batchrun.errors import BatchrunError

__all__ = ["FAL_API_URL", "Described", "PlatformError", "describe_endpoints"]

FAL_API_URL = "https://api.fal.ai/v1"
_BATCH = 50  # the Platform API's limit of endpoint ids per request


class PlatformError(BatchrunError):
    """The Platform API could not be asked or answered nonsense (exit 1: try again later)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Described:
    endpoint_id: str
    openapi: dict[str, Any] | None  # None: the API does not know the endpoint
    price: dict[str, Any] | None  # {"unit_price", "unit", "currency"}; None: no price given


async def describe_endpoints(api_url: str, endpoint_ids: list[str], *, auth: str | None,
                             transport: httpx.AsyncBaseTransport | None = None,
                             user_agent: str = "batchrun") -> dict[str, Described]:
    """The document and price of each endpoint id, asked in batches of 50."""
    api = api_url.rstrip("/")
    headers = {"User-Agent": user_agent, "Accept": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    docs: dict[str, dict[str, Any]] = {}
    prices: dict[str, dict[str, Any]] = {}
    async with Sender(headers=headers, max_connections=4, transport=transport, origins=[origin(api)]) as sender:
        for start in range(0, len(endpoint_ids), _BATCH):
            batch = endpoint_ids[start : start + _BATCH]
            for model in await _pages(sender, f"{api}/models", {"endpoint_id": ",".join(batch),
                                                               "expand": "openapi-3.0"}, "models", 200):
                if isinstance(model, dict) and isinstance(model.get("openapi"), dict):
                    docs[str(model.get("endpoint_id"))] = model["openapi"]
            # 404: none of them is priced (fal answers so for unknown ids); not an error of the pull
            for price in await _pages(sender, f"{api}/models/pricing", {"endpoint_id": ",".join(batch)},
                                      "prices", 404):
                if isinstance(price, dict) and isinstance(price.get("endpoint_id"), str):
                    prices[price["endpoint_id"]] = {k: price.get(k) for k in ("unit_price", "unit", "currency")}
    return {e: Described(e, docs.get(e), prices.get(e)) for e in endpoint_ids}


async def _pages(sender: Sender, url: str, params: dict[str, str], key: str, empty_status: int) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(100):  # a bound on pages, against an API that never stops saying has_more
        query = {**params, "cursor": cursor} if cursor else params
        answer = await sender.exchange(Call("GET", url, None, None, {}, True, None, query))
        if isinstance(answer, TransportFailure):
            raise PlatformError(f"cannot reach the Platform API at {url}: {answer.message}")
        if answer.status_code == empty_status and empty_status != 200:
            return items
        if answer.status_code in (401, 403):
            raise PlatformError(f"the Platform API refused the key ({answer.status_code}) at {url}: "
                                "set FAL_KEY (pricing needs one)")
        if not answer.is_success:
            raise PlatformError(f"the Platform API answered {answer.status_code} at {url}: {answer.text[:200]}")
        try:
            data = json.loads(answer.content)
        except ValueError:
            raise PlatformError(f"the Platform API answered something that is not JSON at {url}") from None
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise PlatformError(f"the Platform API's answer at {url} has no `{key}` list")
        items.extend(data[key])
        cursor = data.get("next_cursor") if data.get("has_more") else None
        if not isinstance(cursor, str) or not cursor:
            return items
    return items
