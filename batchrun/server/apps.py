"""The apps the server can run: built-ins (local/echo, local/sleep, local/image, local/fail) and
users' own Python functions registered with `--app owner/alias=module:function`.

Internally every app is a `Handler`: an async callable taking a `Call` and returning a `Reply`.
A user's function is simpler (arguments dict in, JSON-able dict out, optional `log` callback) and
is adapted by `wrap_user_function`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import importlib
import inspect
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from batchrun.server.wire import (
    Reply,
    dumps,
    json_reply,
    model_error,
    model_error_item,
    platform_error,
)

MAX_LOG_LINES = 1000  # per request, so a chatty app cannot grow memory without bound


@dataclasses.dataclass(slots=True)
class Call:
    """One attempt at running an app."""

    arguments: dict[str, Any]
    path: str  # sub-path after owner/alias, "" or "/sub/path"
    origin: str  # scheme://host[:port] of the server as the caller reached it
    request_id: str
    state: Any  # the Emulator (fault counters, request headers, image cache)
    queued: bool = False  # True on the queue, False for a direct run
    logs: list[dict[str, Any]] | None = None  # None: nobody records logs (direct run)
    on_log: Callable[[], None] | None = None
    # X-Fal-Object-Lifecycle-Preference's expiration (seconds) for the media this call makes; None: kept
    media_lifetime: int | None = None

    def log(self, message: str, level: str = "INFO") -> None:
        if self.logs is None or len(self.logs) >= MAX_LOG_LINES:
            return
        stamp = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        self.logs.append({"message": str(message), "level": level, "source": "USER", "timestamp": stamp})
        if self.on_log is not None:
            self.on_log()


Handler = Callable[[Call], Awaitable[Reply]]


def _number(call: Call, name: str, default: float, *, ge: float = 0.0) -> float | Reply:
    value = call.arguments.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return model_error(
            [model_error_item(["body", name], "Input should be a valid number", "float_type", input_=value)]
        )
    if value < ge:
        return model_error(
            [
                model_error_item(
                    ["body", name],
                    f"Input should be greater than or equal to {ge:g}",
                    "greater_than_equal",
                    ctx={"ge": ge},
                    input_=value,
                )
            ]
        )
    return float(value)


async def echo(call: Call) -> Reply:
    """`{"echo": <arguments>, "path": "<sub-path>"}`, after an optional `delay` in seconds."""
    if "delay" in call.arguments:
        delay = _number(call, "delay", 0.0)
        if isinstance(delay, Reply):
            return delay
        await asyncio.sleep(delay)
    return Reply(200, dumps({"echo": call.arguments, "path": call.path}))


async def sleep(call: Call) -> Reply:
    """Sleep `seconds`, logging about every 0.1 s; result `{"slept": seconds}`."""
    seconds = _number(call, "seconds", 1.0)
    if isinstance(seconds, Reply):
        return seconds
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    call.log(f"sleeping {seconds:g} s")
    said = ""
    while (left := end - loop.time()) > 0:
        await asyncio.sleep(min(0.1, left))
        line = f"slept {seconds - max(0.0, end - loop.time()):.1f} of {seconds:g} s"
        if line != said:  # a timer waking a hair early leaves a sliver: its line would repeat the last
            call.log(line)
            said = line
    return json_reply({"slept": call.arguments.get("seconds", 1.0)})


def builtin_apps() -> dict[str, Handler]:
    from batchrun.server.faults import fail
    from batchrun.server.image import image

    return {"local/echo": echo, "local/sleep": sleep, "local/image": image, "local/fail": fail}


def fallback_map(fallbacks: Mapping[str, str], served: Iterable[str]) -> dict[str, str]:
    """Model fallbacks (endpoint -> its "equivalent alternative", batchrun.server.queue) with their
    '/' trimmed; ValueError unless both of each pair are `served` here."""
    names = set(served)
    out: dict[str, str] = {}
    for primary, alternative in fallbacks.items():
        primary, alternative = primary.strip("/"), alternative.strip("/")
        for name in (primary, alternative):
            if name not in names:
                raise ValueError(f"no app {name} here (served: {', '.join(sorted(names))})")
        out[primary] = alternative
    return out


def wrap_user_function(func: Callable[..., Any], name: str) -> Handler:
    """Adapt `func(arguments[, log=..., path=...]) -> dict` (sync or async) to a Handler.

    Sync functions run in a worker thread so a slow one does not stall the server. An exception
    becomes a 500 `{"detail": "<Type>: <message>"}` (no traceback), a non-dict result a 500 too.
    """
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    wants_log = "log" in params
    wants_path = "path" in params
    is_async = inspect.iscoroutinefunction(func)

    async def handler(call: Call) -> Reply:
        kwargs: dict[str, Any] = {}
        if wants_log:
            if is_async:
                kwargs["log"] = call.log
            else:
                loop = asyncio.get_running_loop()
                kwargs["log"] = lambda message: loop.call_soon_threadsafe(call.log, message)
        if wants_path:
            kwargs["path"] = call.path
        try:
            if is_async:
                result = await func(dict(call.arguments), **kwargs)
            else:
                result = await asyncio.to_thread(func, dict(call.arguments), **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the user's code failed: report it like fal reports an app crash
            return Reply(
                500,
                dumps({"detail": f"{type(exc).__name__}: {exc}"}),
                error_type="internal_error",
                error=f"{name} raised {type(exc).__name__}: {exc}",
            )
        if not isinstance(result, dict):
            return platform_error("internal_error", f"{name} returned {type(result).__name__}, expected a dict")
        try:
            return Reply(200, dumps(result))
        except TypeError as exc:
            return platform_error("internal_error", f"{name} returned a result that is not JSON: {exc}")

    return handler


def load_app_option(option: str) -> tuple[str, Callable[..., Any]]:
    """Parse `owner/alias=module:function` and import the function; ValueError says what is wrong."""
    endpoint, sep, target = option.partition("=")
    endpoint = endpoint.strip().strip("/")
    if not sep or endpoint.count("/") != 1 or not all(endpoint.split("/")):
        raise ValueError(f"--app {option!r}: expected owner/alias=module:function")
    module_name, sep, attr = target.strip().partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--app {option!r}: expected owner/alias=module:function")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the current directory are importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--app {option!r}: cannot import module {module_name!r}: {exc}") from None
    func: object = module
    for part in attr.split("."):
        func = getattr(func, part, None)
        if func is None:
            raise ValueError(f"--app {option!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(func):
        raise ValueError(f"--app {option!r}: {attr!r} is not callable")
    return endpoint, func
