"""fal's Platform API for the server's own apps (docs/fal-protocol.md §9.7):

    GET /v1/models?endpoint_id=A&endpoint_id=B[&expand=openapi-3.0]   {"models": [...], "next_cursor", "has_more"}
    GET /v1/models/pricing?endpoint_id=A,B                             {"prices": [...], "next_cursor", "has_more"}
    GET /api/openapi/queue/openapi.json?endpoint_id=A                  the endpoint's OpenAPI document

`endpoint_id` takes repeated or comma-separated values (1-50), as fal's does; ids the server does
not know are left out of the answer (a pricing request naming none it knows is a 404).
"""

from __future__ import annotations

from starlette.requests import Request

from batchrun.server.catalog import Entry, catalog_entry, openapi_document
from batchrun.server.emulator import Emulator, WireResponse
from batchrun.server.wire import json_reply

MAX_IDS = 50


def _entries(request: Request) -> list[Entry] | WireResponse:
    em: Emulator = request.app.state.emulator
    ids = [part.strip() for value in request.query_params.getlist("endpoint_id") for part in value.split(",")]
    ids = list(dict.fromkeys(i.strip("/") for i in ids if i.strip("/")))
    if not ids or len(ids) > MAX_IDS:
        return WireResponse(json_reply({"detail": f"endpoint_id: give 1 to {MAX_IDS} endpoint ids"}, 422), [])
    found = [catalog_entry(i, em.user_functions) for i in ids]
    return [e for e in found if e is not None]


async def models_route(request: Request) -> WireResponse:
    em: Emulator = request.app.state.emulator
    em.stats.side["platform"] += 1
    entries = _entries(request)
    if isinstance(entries, WireResponse):
        return entries
    expand = {part for value in request.query_params.getlist("expand") for part in value.split(",")}
    queue_base = "/queue"  # relative to the server: a pinned copy does not change with the port
    models = []
    for entry in entries:
        model = {
            "endpoint_id": entry.endpoint_id,
            "metadata": {"display_name": entry.endpoint_id, "category": entry.category,
                         "description": entry.description, "status": "active"},
        }
        if "openapi-3.0" in expand:
            model["openapi"] = openapi_document(entry, queue_base)
        models.append(model)
    return WireResponse(json_reply({"models": models, "next_cursor": None, "has_more": False}), [])


async def pricing_route(request: Request) -> WireResponse:
    em: Emulator = request.app.state.emulator
    em.stats.side["platform"] += 1
    refused = em.auth_failure(request)  # fal's pricing needs a key (models does not)
    if refused is not None:
        return WireResponse(refused, [])
    entries = _entries(request)
    if isinstance(entries, WireResponse):
        return entries
    if not entries:
        return WireResponse(json_reply({"detail": "no pricing for the requested endpoints"}, 404), [])
    prices = [{"endpoint_id": e.endpoint_id, "unit_price": e.unit_price, "unit": e.unit, "currency": "USD"}
              for e in entries]
    return WireResponse(json_reply({"prices": prices, "next_cursor": None, "has_more": False}), [])


async def openapi_route(request: Request) -> WireResponse:
    em: Emulator = request.app.state.emulator
    em.stats.side["platform"] += 1
    entries = _entries(request)
    if isinstance(entries, WireResponse):
        return entries
    if len(entries) != 1:
        return WireResponse(json_reply({"detail": "give one endpoint_id the server knows"}, 404), [])
    return WireResponse(json_reply(openapi_document(entries[0], "/queue")), [])
