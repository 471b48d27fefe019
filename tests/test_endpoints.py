"""Pinned endpoint schemas and prices, end to end against the embedded server: the server's
Platform API for its own apps (and `--app` functions), `batchrun endpoints pull/check`, `validate`
checking arguments against the pinned input schema, and `plan --count` pricing from the pin."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchrun.cli import main
from batchrun.server import create_app

# ---- the server's Platform API ------------------------------------------------------------------


async def _get(app: Any, path: str, params: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        return await client.get(path, params=params, headers=headers)


@pytest.mark.anyio
async def test_models_serves_each_apps_openapi_document_and_pricing_its_unit_price() -> None:
    app = create_app()
    answer = await _get(app, "/v1/models", {"endpoint_id": ["local/image", "local/nope"], "expand": "openapi-3.0"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["has_more"] is False and body["next_cursor"] is None
    assert [m["endpoint_id"] for m in body["models"]] == ["local/image"]  # unknown ids are left out
    doc = body["models"][0]["openapi"]
    request_body = doc["paths"]["/local/image"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert request_body == {"$ref": "#/components/schemas/LocalImageInput"}
    schema = doc["components"]["schemas"]["LocalImageInput"]
    assert schema["required"] == ["prompt"]
    assert schema["properties"]["num_images"] == {"type": "integer", "minimum": 1, "maximum": 4, "default": 1}
    # without expand: metadata only
    plain = (await _get(app, "/v1/models", {"endpoint_id": "local/image"})).json()["models"][0]
    assert "openapi" not in plain and plain["metadata"]["status"] == "active"
    prices = (await _get(app, "/v1/models/pricing", {"endpoint_id": "local/image,local/echo"})).json()["prices"]
    assert prices == [
        {"endpoint_id": "local/image", "unit_price": 0.003, "unit": "image", "currency": "USD"},
        {"endpoint_id": "local/echo", "unit_price": 0.0001, "unit": "request", "currency": "USD"},
    ]
    assert (await _get(app, "/v1/models/pricing", {"endpoint_id": "x/y"})).status_code == 404
    assert (await _get(app, "/v1/models", {})).status_code == 422
    single = await _get(app, "/api/openapi/queue/openapi.json", {"endpoint_id": "local/image"})
    assert single.json() == doc


@pytest.mark.anyio
async def test_the_documented_bounds_are_the_ones_the_app_enforces() -> None:
    app = create_app()
    doc = (await _get(app, "/api/openapi/queue/openapi.json", {"endpoint_id": "local/image"})).json()
    maximum = doc["components"]["schemas"]["LocalImageInput"]["properties"]["num_images"]["maximum"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        ok = await client.post("/run/local/image", json={"prompt": "p", "num_images": maximum})
        over = await client.post("/run/local/image", json={"prompt": "p", "num_images": maximum + 1})
    assert ok.status_code == 200 and over.status_code == 422


@pytest.mark.anyio
async def test_pricing_needs_a_key_when_the_server_wants_one() -> None:
    app = create_app(require_key=True)
    assert (await _get(app, "/v1/models/pricing", {"endpoint_id": "local/image"})).status_code == 401
    keyed = await _get(app, "/v1/models/pricing", {"endpoint_id": "local/image"}, {"Authorization": "Key k"})
    assert keyed.status_code == 200
    assert (await _get(app, "/v1/models", {"endpoint_id": "local/image"})).status_code == 200  # models: no key


APP_MODULE = '''
from typing import Literal, NotRequired, TypedDict


class Inputs(TypedDict):
    prompt: str
    steps: NotRequired[int]
    style: NotRequired[Literal["photo", "sketch"]]


class Outputs(TypedDict):
    text: str


def hinted(arguments: Inputs) -> Outputs:
    """Echo the prompt."""
    return {"text": arguments["prompt"]}


def declared(arguments):
    return {"ok": True}


declared.input_schema = {"type": "object", "required": ["x"],
                         "properties": {"x": {"type": "number", "minimum": 0, "maximum": MAXIMUM}}}
declared.price = {"unit_price": PRICE, "unit": "request"}
'''


def _app_module(directory: Path, name: str, maximum: int = 10, price: float = 0.5) -> None:
    text = APP_MODULE.replace("MAXIMUM", str(maximum)).replace("PRICE", str(price))
    (directory / f"{name}.py").write_text(text, encoding="utf-8")


@pytest.mark.anyio
async def test_user_functions_are_described_from_type_hints_or_a_declared_schema(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _app_module(tmp_path, "apps_hinted")
    monkeypatch.syspath_prepend(str(tmp_path))
    import apps_hinted  # type: ignore[import-not-found]

    app = create_app(apps={"me/hinted": apps_hinted.hinted, "me/declared": apps_hinted.declared})
    body = (await _get(app, "/v1/models", {"endpoint_id": "me/hinted,me/declared", "expand": "openapi-3.0"})).json()
    docs = {m["endpoint_id"]: m["openapi"]["components"]["schemas"] for m in body["models"]}
    hinted = docs["me/hinted"]["MeHintedInput"]
    assert hinted["required"] == ["prompt"]
    assert hinted["properties"] == {"prompt": {"type": "string"}, "steps": {"type": "integer"},
                                    "style": {"enum": ["photo", "sketch"]}}
    assert docs["me/hinted"]["MeHintedOutput"]["properties"] == {"text": {"type": "string"}}
    assert docs["me/declared"]["MeDeclaredInput"]["properties"]["x"]["maximum"] == 10
    prices = (await _get(app, "/v1/models/pricing", {"endpoint_id": "me/hinted,me/declared"})).json()["prices"]
    assert [(p["endpoint_id"], p["unit_price"]) for p in prices] == [("me/hinted", 0.0), ("me/declared", 0.5)]


# ---- pull and check -----------------------------------------------------------------------------


def write(directory: Path, text: str, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


IMAGE_SPEC = """
    version: 1
    name: t
    target: local
    jobs:
      - name: img
        endpoint: local/image
        arguments: {prompt: a cat, num_images: 2}
      - name: echo
        endpoint: local/echo
        mode: run
        arguments: {x: 1}
    """


def test_pull_pins_documents_and_prices_beside_the_spec_and_check_finds_no_drift(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, IMAGE_SPEC)
    assert main(["endpoints", "pull", str(spec)]) == 0
    out = capsys.readouterr().out
    assert f"local/image: pinned -> {tmp_path / 'endpoints/local/image.json'} ($0.003 per image USD)" in out
    pinned = json.loads((tmp_path / "endpoints/local/image.json").read_text())
    assert pinned["endpoint_id"] == "local/image" and pinned["source"] == "local"
    assert pinned["price"] == {"unit_price": 0.003, "unit": "image", "currency": "USD"}
    assert pinned["openapi"]["components"]["schemas"]["LocalImageInput"]["required"] == ["prompt"]
    text = (tmp_path / "endpoints/local/image.json").read_text()
    assert main(["endpoints", "pull", str(spec)]) == 0  # a re-pull of the same thing changes no byte
    assert "local/image: unchanged" in capsys.readouterr().out
    assert (tmp_path / "endpoints/local/image.json").read_text() == text
    assert main(["endpoints", "check", str(spec)]) == 0
    assert capsys.readouterr().out.count("no drift") == 2


def test_check_reports_each_drift_with_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, IMAGE_SPEC)
    assert main(["endpoints", "pull", str(spec)]) == 0
    path = tmp_path / "endpoints/local/image.json"
    pinned = json.loads(path.read_text())
    props = pinned["openapi"]["components"]["schemas"]["LocalImageInput"]["properties"]
    props["num_images"]["maximum"] = 8
    del props["seed"]
    props["style"] = {"type": "string"}
    pinned["price"]["unit_price"] = 0.002
    path.write_text(json.dumps(pinned))
    capsys.readouterr()
    assert main(["endpoints", "check", "--dir", str(tmp_path / "endpoints"), "--target", "local"]) == 1
    out = capsys.readouterr().out
    assert "local/image: drift against" in out
    assert "  input: added field 'seed'" in out  # live has it, the pin lost it
    assert "  input: removed field 'style'" in out
    assert "  input: 'num_images' maximum 8 -> 4" in out
    assert "  price: unit_price 0.002 -> 0.003" in out
    assert "local/echo: no drift" in out


def test_check_sees_a_user_function_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    _app_module(tmp_path, "apps_v1", maximum=10, price=0.5)
    _app_module(tmp_path, "apps_v2", maximum=20, price=0.75)
    assert main(["endpoints", "pull", "me/declared", "--target", "local", "--app", "me/declared=apps_v1:declared"]) == 0
    assert (tmp_path / "endpoints/me/declared.json").is_file()
    capsys.readouterr()
    assert main(["endpoints", "check", "--target", "local", "--app", "me/declared=apps_v1:declared"]) == 0
    assert main(["endpoints", "check", "--target", "local", "--app", "me/declared=apps_v2:declared"]) == 1
    out = capsys.readouterr().out
    assert "  input: 'x' maximum 10 -> 20" in out and "  price: unit_price 0.5 -> 0.75" in out


def test_pull_of_an_unknown_endpoint_fails_and_usage_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["endpoints", "pull", "local/nope", "--target", "local"]) == 1
    assert "local/nope: not found" in capsys.readouterr().err
    assert not (tmp_path / "endpoints").exists()
    assert main(["endpoints", "pull", "nonsense", "--target", "local"]) == 2
    assert main(["endpoints", "check", "--target", "local"]) == 2  # nothing pinned
    monkeypatch.delenv("FAL_KEY", raising=False)
    monkeypatch.delenv("FAL_KEY_ID", raising=False)
    assert main(["endpoints", "pull", "fal-ai/flux/dev"]) == 2  # fal's pricing needs a key
    assert "FAL_KEY" in capsys.readouterr().err


def test_pull_through_run_and_queue_urls_asks_that_servers_api(loopback_server: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["endpoints", "pull", "local/sleep", "--run-url", loopback_server.run_url,
                 "--queue-url", loopback_server.queue_url]) == 0
    pinned = json.loads((tmp_path / "endpoints/local/sleep.json").read_text())
    assert pinned["source"] == loopback_server.origin + "/v1"
    assert pinned["price"]["unit"] == "request"


# ---- validate against the pin -------------------------------------------------------------------


def _pinned_spec(tmp_path: Path, text: str) -> Path:
    spec = write(tmp_path, text)
    assert main(["endpoints", "pull", "local/image", "--target", "local", "--dir", str(tmp_path / "endpoints")]) == 0
    return spec


def test_a_typo_a_wrong_type_and_an_out_of_range_value_are_three_located_errors_and_nothing_is_sent(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _pinned_spec(tmp_path, """
        version: 1
        name: t
        target: local
        jobs:
          - name: img
            endpoint: local/image
            arguments:
              prompt: a cat
              num_image: 2
              seed: "7"
              num_images: 9
        """)
    capsys.readouterr()
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{spec}:9:7: $.jobs[0].arguments.num_image: unknown argument 'num_image'; did you mean 'num_images'? "
        "(local/image's pinned schema)",
        f"{spec}:10:13: $.jobs[0].arguments.seed: 'seed' must be an integer, got string \"7\" (local/image's pinned schema)",
        f"{spec}:11:19: $.jobs[0].arguments.num_images: 'num_images' must be <= 4, got 9 (local/image's pinned schema)",
    ]
    out = tmp_path / "out.jsonl"
    assert main(["run", str(spec), "--output", str(out)]) == 2
    assert not out.exists()  # refused before anything was sent


def test_templated_values_are_checked_over_matrix_values_dataset_columns_and_strings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rows.csv").write_text("prompt,n\na,1\nb,2\n", encoding="utf-8")
    spec = _pinned_spec(tmp_path, """
        version: 1
        name: t
        target: local
        jobs:
          - name: sweep
            endpoint: local/image
            arguments: {prompt: "p ${{ matrix.n }}", num_images: "${{ matrix.n }}"}
            matrix:
              n: [1, 2, 5]
          - name: csv
            endpoint: local/image
            dataset: rows.csv
            arguments: {prompt: "${{ row.prompt }}", num_images: "${{ row.n }}"}
          - name: typed
            endpoint: local/image
            dataset: {path: rows.csv, types: {n: int}}
            arguments: {prompt: "${{ row.prompt }}", num_images: "${{ row.n }}"}
          - name: inline
            endpoint: local/image
            dataset: [{s: 1}, {s: 1.5}]
            arguments: {prompt: x, seed: "${{ row.s }}"}
          - name: text
            endpoint: local/image
            arguments: {prompt: x, num_images: "${{ repeat }} images", image_size: "square"}
          - name: missing
            endpoint: local/image
            arguments: {seed: 1}
        """)
    capsys.readouterr()
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{spec}:9:17: $.jobs[0].matrix.n[2]: 'num_images' must be <= 4, got 5 (matrix.n value 2, used at "
        "arguments.num_images) (local/image's pinned schema)",
        f"{spec}:13:58: $.jobs[1].arguments.num_images: 'num_images' must be an integer, but dataset column 'n' is "
        "a string; give the dataset `types: {n: int}` (or float, bool) (local/image's pinned schema)",
        f"{spec}:20:27: $.jobs[3].dataset[1].s: 'seed' must be an integer, got number 1.5 (dataset row 1, field 's') "
        "(local/image's pinned schema)",
        f"{spec}:24:40: $.jobs[4].arguments.num_images: 'num_images' must be an integer, got string \"${{{{ repeat }}}} "
        "images\" (an interpolated string) (local/image's pinned schema)",
        f"{spec}:27:5: $.jobs[5].arguments: missing required argument 'prompt' (local/image's pinned schema)",
    ]


def test_unpinned_endpoints_are_unchanged_and_validate_names_the_jobs_it_did_not_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _pinned_spec(tmp_path, """
        version: 1
        name: t
        target: local
        jobs:
          - name: img
            endpoint: local/image
            arguments: {prompt: a cat}
          - name: other
            endpoint: local/echo
            arguments: {anything: [1, 2]}
        """)
    capsys.readouterr()
    assert main(["validate", str(spec)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{spec}: ok (2 requests in 2 jobs: img 1, other 1)",
        f"{spec}: arguments checked against pinned schemas for img; not checked (endpoint not pinned): other",
    ]


def test_a_broken_pinned_file_is_a_located_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, IMAGE_SPEC)
    (tmp_path / "endpoints/local").mkdir(parents=True)
    (tmp_path / "endpoints/local/image.json").write_text('{"endpoint_id": "local/image",\n  "openapi": [}')
    assert main(["validate", str(spec)]) == 2
    assert capsys.readouterr().err.startswith(f"{tmp_path / 'endpoints/local/image.json'}:2:15: $: pinned endpoint "
                                              "file is not JSON")


# ---- prices -------------------------------------------------------------------------------------


def test_plan_count_and_budget_use_the_pinned_price_when_the_spec_has_none(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, """
        version: 1
        name: t
        target: local
        budget: {max_usd: 1}
        jobs:
          - name: img
            endpoint: local/image
            arguments: {prompt: a cat, num_images: "${{ matrix.n }}"}
            matrix: {n: [1, 2, 4]}
          - name: one
            endpoint: local/image
            arguments: {prompt: a dog}
        """)
    assert main(["validate", str(spec)]) == 2  # a budget without prices: refused
    assert "has none in pricing" in capsys.readouterr().err
    assert main(["endpoints", "pull", str(spec)]) == 0
    capsys.readouterr()
    assert main(["plan", str(spec), "--count"]) == 0
    out = capsys.readouterr().out
    assert "img    local/image         3    $0.0210" in out  # (1 + 2 + 4) images x $0.003
    assert "one    local/image         1    $0.0030" in out  # num_images left out: the schema's default, 1
    # the spec's own price wins over the pin
    text = spec.read_text().replace("budget: {max_usd: 1}", "budget: {max_usd: 1}\npricing:\n  local/image: {per_request: 1}")
    spec.write_text(text)
    assert main(["plan", str(spec), "--count"]) == 0
    assert "img    local/image         3    $3.0000" in capsys.readouterr().out


def test_the_python_api_sees_the_pinned_schema_checks_too(tmp_path: Path) -> None:
    import batchrun.api as br

    spec = _pinned_spec(tmp_path, """
        version: 1
        name: t
        target: local
        jobs:
          - name: img
            endpoint: local/image
            arguments: {prompt: a cat, num_images: 9}
        """)
    problems = br.validate(spec)
    assert [str(p) for p in problems] == [
        f"{spec}:7:44: $.jobs[0].arguments.num_images: 'num_images' must be <= 4, got 9 (local/image's pinned schema)",
    ]
    with pytest.raises(br.SpecError) as raised:
        br.load(spec)
    assert [str(p) for p in raised.value.problems] == [str(p) for p in problems]
    # A spec given as a dict with base_dir reads the same pins.
    data = {"version": 1, "name": "t", "target": "local",
            "jobs": [{"name": "img", "endpoint": "local/image", "arguments": {"prompt": "a cat", "num_image": 2}}]}
    assert any("unknown argument 'num_image'" in str(p) for p in br.validate(data, base_dir=tmp_path))


# ---- expect: [{schema: pinned}] ------------------------------------------------------------------


def _labeller(arguments: dict[str, Any]) -> dict[str, Any]:
    """Answers its declared shape, except when asked for a score it reports as text."""
    if arguments.get("as_text"):
        return {"label": "cat", "score": "high"}
    return {"label": "cat", "score": 0.9, "note": None}


_labeller.output_schema = {  # type: ignore[attr-defined]
    "type": "object", "required": ["label", "score"],
    "properties": {"label": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1},
                   "note": {"type": "string", "nullable": True}},
}


def test_expect_schema_pinned_checks_results_against_the_pinned_output_schema(
        tmp_path: Path, make_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, """
        version: 1
        name: pinned-out
        jobs:
          - name: label
            endpoint: me/labeller
            mode: run
            arguments: {as_text: "${{ matrix.as_text }}"}
            matrix: {as_text: [false, true]}
            expect:
              - {schema: pinned}
        """)
    with make_server(apps={"me/labeller": _labeller}) as srv:
        urls = ["--run-url", srv.run_url, "--queue-url", srv.queue_url]
        assert main(["endpoints", "pull", "me/labeller", *urls, "--dir", str(tmp_path / "endpoints")]) == 0
        out = tmp_path / "out.jsonl"
        assert main(["run", str(spec), "--output", str(out), *urls, "--no-progress"]) == 1  # a check failed
    records = {r["matrix"]["as_text"]: r for r in map(json.loads, out.read_text().splitlines())}
    # the pinned document is OpenAPI 3.0: `nullable` admits the null note
    assert records[False]["expectations"] == [{"passed": True, "message": "schema (pinned): valid",
                                               "check": {"schema": "pinned"}}]
    assert records[True]["expectations"] == [{"passed": False, "check": {"schema": "pinned"},
                                              "message": "schema (pinned): $.score: 'high' is not of type 'number'"}]
    capsys.readouterr()
    assert main(["check", str(spec), str(out)]) == 1  # re-checking reads the pinned schema again
    assert "schema (pinned): $.score: 'high' is not of type 'number'" in capsys.readouterr().out


def test_expect_schema_pinned_without_a_pinned_file_is_a_located_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, """
        version: 1
        name: unpinned
        target: local
        jobs:
          - name: a
            endpoint: local/echo
            expect:
              - {schema: pinned}
              - {schema: pinnned}
        """)
    assert main(["validate", str(spec)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{spec}:8:18: $.jobs[0].expect[0].schema: no pinned endpoint file for local/echo (job 'a'): pin it with "
        "`batchrun endpoints pull local/echo`",
        f"{spec}:9:18: $.jobs[0].expect[1].schema: schema must be a JSON Schema object or `pinned` (the endpoint's "
        "pinned output schema), got \"pinnned\"",
    ]


def test_openapi_schemas_become_json_schema() -> None:
    from batchrun.spec.endpoints import as_json_schema

    doc = {"components": {"schemas": {
        "Node": {"type": "object", "properties": {"child": {"$ref": "#/components/schemas/Node"},
                                                  "n": {"type": "integer", "minimum": 0, "exclusiveMinimum": True}}},
        "Maybe": {"nullable": True, "enum": ["a", "b", None]},
    }}}  # fmt: skip
    schema = as_json_schema(doc, {"type": "object", "properties": {
        "root": {"$ref": "#/components/schemas/Node"}, "maybe": {"$ref": "#/components/schemas/Maybe"},
        "tags": {"type": "array", "nullable": True, "items": {"type": "string"}}}})  # fmt: skip
    assert schema["$defs"]["components.schemas.Node"] == {"type": "object", "properties": {
        "child": {"$ref": "#/$defs/components.schemas.Node"}, "n": {"type": "integer", "exclusiveMinimum": 0}}}
    assert schema["$defs"]["components.schemas.Maybe"] == {"anyOf": [{"enum": ["a", "b", None]}, {"type": "null"}]}
    assert schema["properties"]["tags"] == {"type": ["array", "null"], "items": {"type": "string"}}
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"root": {"child": {"n": 1}}, "maybe": None, "tags": None})
    assert not validator.is_valid({"root": {"child": {"n": 0}}})  # exclusive: 0 is out


def test_specs_in_several_folders_share_one_pinned_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nightly").mkdir()
    spec = write(tmp_path / "nightly", """
        version: 1
        name: shared
        target: local
        pinned_dir: ../pins
        jobs:
          - {name: img, endpoint: local/image, arguments: {prompt: a cat, num_image: 2}}
        """)
    assert main(["endpoints", "pull", str(spec)]) == 0  # into the spec's pinned_dir
    assert (tmp_path / "pins/local/image.json").is_file() and not (tmp_path / "nightly/endpoints").exists()
    capsys.readouterr()
    assert main(["validate", str(spec)]) == 2  # ...and validate reads it there
    assert "unknown argument 'num_image'; did you mean 'num_images'?" in capsys.readouterr().err
    assert main(["endpoints", "check", str(spec)]) == 0
