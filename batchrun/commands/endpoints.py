"""batchrun endpoints pull|check: pin endpoints' OpenAPI documents and prices as reviewable files,
and report drift between the pinned files and the live endpoints.

    batchrun endpoints pull ENDPOINT|SPEC... [--target fal|local] [--run-url U --queue-url U] [--api-url U] [--dir D]
    batchrun endpoints check [ENDPOINT|SPEC...] [same options]

A SPEC argument (a .yaml/.yml file) stands for its jobs' endpoints, its target and its folder: the
files go to `endpoints/` beside it, where `validate`, `plan --count` and the budget read them. With
endpoint ids only, the folder is `./endpoints` (or --dir). `check` without arguments checks every
file in the folder. Exit codes: 0 pinned / no drift; 1 drift, or an endpoint the API does not know;
2 usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchrun.errors import Problem, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    pull = sub.add_parser("pull", help="fetch and pin OpenAPI documents and prices",
                          description="fetch each endpoint's OpenAPI document and price and pin them as files")
    check = sub.add_parser("check", help="compare pinned files with the live endpoints (exit 1 on drift)",
                           description="report drift between pinned endpoint files and the live endpoints")
    for cmd, need in ((pull, "+"), (check, "*")):
        cmd.add_argument("names", nargs=need, metavar="ENDPOINT|SPEC",
                         help="endpoint ids (owner/alias[/path]) or spec files (their jobs' endpoints)")
        cmd.add_argument("--target", choices=["fal", "local"], default=None,
                         help="where to ask: fal's Platform API, or the embedded server's own apps "
                              "(default: the spec's target, else fal)")
        cmd.add_argument("--run-url", default=None, help="with --queue-url: a fal-compatible server (its /v1 API)")
        cmd.add_argument("--queue-url", default=None, help="see --run-url")
        cmd.add_argument("--api-url", default=None,
                         help="the Platform API base URL (default https://api.fal.ai/v1; for a server "
                              "given by --queue-url, its origin + /v1)")
        cmd.add_argument("--dir", default=None, help="folder of the pinned files (default: the spec's "
                                                     "pinned_dir, endpoints/ beside it, else ./endpoints)")
        cmd.add_argument("--app", action="append", default=[], metavar="OWNER/ALIAS=MODULE:FUNCTION",
                         help="with --target local: also describe this Python function (as `batchrun serve --app`)")


def run(args: argparse.Namespace) -> int:
    import anyio

    from batchrun.spec import endpoints as pins

    if (args.run_url is None) != (args.queue_url is None):
        raise UsageError("--run-url and --queue-url go together")
    if args.target == "local" and args.run_url is not None:
        raise UsageError("--run-url/--queue-url cannot be combined with --target local (it starts its own server)")
    ids, pins_dir, spec_target = _names(args.names)
    directory = Path(args.dir) if args.dir else pins_dir or Path.cwd() / pins.DEFAULT_DIR
    if args.action == "check" and not ids:
        ids = _pinned_ids(directory)
        if not ids:
            raise UsageError(f"nothing pinned in {directory}; run `batchrun endpoints pull` first")
    target = args.target or (None if args.run_url else spec_target) or ("custom" if args.run_url else "fal")
    if args.app and target != "local":
        raise UsageError("--app needs --target local")
    return anyio.run(_main, args, ids, directory, target)


def _names(names: list[str]) -> tuple[list[str], Path | None, str | None]:
    ids: list[str] = []
    pins_dir: Path | None = None
    target: str | None = None
    for name in names:
        if name.endswith((".yaml", ".yml")):
            spec_ids, spec_target, spec_pins = _spec_endpoints(Path(name))
            ids.extend(spec_ids)
            pins_dir = pins_dir or spec_pins
            target = target or spec_target
        else:
            endpoint = name.strip("/")
            if endpoint.count("/") < 1 or not all(endpoint.split("/")):
                raise UsageError(f"{name!r} is neither an endpoint id (owner/alias[/path]) nor a spec file")
            ids.append(endpoint)
    return list(dict.fromkeys(ids)), pins_dir, target


def _spec_endpoints(path: Path) -> tuple[list[str], str | None, Path]:
    """A spec's endpoints and target kind, from its YAML alone: a spec that does not validate yet
    (an argument wrong against a stale pin, a budget waiting for the pinned prices) can still be
    pulled for."""
    from batchrun.errors import SpecError
    from batchrun.spec import yamlsource
    from batchrun.spec.checks import merge_jobs

    text, problems = yamlsource.read_text(path, str(path))
    located = None
    if text is not None:
        located, problems = yamlsource.parse(text, str(path))
    if located is None or not isinstance(located.data, dict):
        problems = problems or [Problem(str(path), 1, 1, "$", "a spec must be a mapping with version, name and jobs")]
        raise SpecError(problems)
    from batchrun.spec.endpoints import pinned_dir

    ids = [e.strip("/") for j in merge_jobs(located.data) if isinstance(e := j.options.get("endpoint"), str)]
    target = located.data.get("target", "fal")
    return ids, target if target in ("fal", "local") else "custom", pinned_dir(path, located.data.get("pinned_dir"))


def _pinned_ids(directory: Path) -> list[str]:
    import json

    ids = []
    for path in sorted(directory.rglob("*.json")) if directory.is_dir() else []:
        try:
            endpoint_id = json.loads(path.read_text(encoding="utf-8")).get("endpoint_id")
        except (OSError, ValueError, AttributeError):
            raise UsageError(f"{path}: not a pinned endpoint file (re-pin it with `batchrun endpoints pull`)") from None
        if isinstance(endpoint_id, str):
            ids.append(endpoint_id)
    return ids


async def _main(args: argparse.Namespace, ids: list[str], directory: Path, target: str) -> int:
    import os

    from batchrun import __version__
    from batchrun.client.platform import FAL_API_URL, describe_endpoints
    from batchrun.client.target import NO_KEY_MESSAGE, fal_key

    agent = f"batchrun/{__version__}"
    if target == "local":
        from batchrun.server import serve_local
        from batchrun.server.apps import load_app_option

        apps: dict[str, Callable[..., Any]] = {}
        for option in args.app:
            try:
                endpoint, func = load_app_option(option)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            apps[endpoint] = func
        async with serve_local(runners=1, apps=apps) as server:
            described = await describe_endpoints(args.api_url or server.origin + "/v1", ids, auth=None,
                                                 user_agent=agent)
        return _finish(args.action, described, directory, "local")
    key = fal_key(os.environ)
    if target == "fal" and args.run_url is None:
        api = args.api_url or FAL_API_URL
        if key is None:
            raise UsageError(NO_KEY_MESSAGE.replace("target 'fal'", "the Platform API (pricing)"))
        source = "fal" if api == FAL_API_URL else api
    else:
        api = args.api_url or _origin_of(args.queue_url) + "/v1"  # a fal-compatible server: one origin
        source = api
    described = await describe_endpoints(api, ids, auth=None if key is None else f"Key {key}", user_agent=agent)
    return _finish(args.action, described, directory, source)


def _origin_of(url: str | None) -> str:
    from urllib.parse import urlsplit

    if not url:
        raise UsageError("--api-url is needed for this target")
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _finish(action: str, described: dict[str, Any], directory: Path, source: str) -> int:
    from batchrun.spec import endpoints as pins
    from batchrun.spec.endpoint_drift import drift

    code = 0
    for endpoint_id, live in described.items():
        path = pins.pin_path(directory, endpoint_id)
        if live.openapi is None:
            print(f"{endpoint_id}: not found: the Platform API has no OpenAPI document for it", file=sys.stderr)
            code = 1
            continue
        if action == "pull":
            text = pins.dump_pinned(endpoint_id, source, live.openapi, live.price)
            old = path.read_text(encoding="utf-8") if path.is_file() else None
            if old == text:
                print(f"{endpoint_id}: unchanged ({path})")
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)  # whole or not at all: a pinned file is never half written
            print(f"{endpoint_id}: {'re-pinned' if old is not None else 'pinned'} -> {path} ({_price(live.price)})")
            continue
        pinned, problems = pins.read_pinned(directory, [endpoint_id])
        if problems or endpoint_id not in pinned:
            for problem in problems:
                print(problem, file=sys.stderr)
            if not problems:
                print(f"{endpoint_id}: not pinned in {directory}", file=sys.stderr)
            code = 1
            continue
        pin = pinned[endpoint_id]
        changes = drift(endpoint_id, pin.openapi, pin.price, live.openapi, live.price)
        if not changes:
            print(f"{endpoint_id}: no drift ({path})")
            continue
        code = 1
        print(f"{endpoint_id}: drift against {path} ({len(changes)} change{'s' if len(changes) != 1 else ''}):")
        for change in changes:
            print(f"  {change}")
    return code


def _price(price: dict[str, Any] | None) -> str:
    if not price or price.get("unit_price") is None:
        return "no price"
    return f"${price['unit_price']:g} per {price.get('unit') or 'unit'} {price.get('currency') or ''}".rstrip()
