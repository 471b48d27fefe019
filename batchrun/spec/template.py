"""`${{ ... }}` templates: parsing, compiling once per job, rendering per request, env at send time.

Expressions: `${{ matrix.NAME }}`, `${{ row.FIELD }}`, `${{ env.NAME }}`, `${{ repeat }}`.
A string that is exactly one expression takes the value itself (an int stays an int); otherwise the
value is interpolated (strings as-is, numbers with str(), booleans/null/lists/objects as JSON).
`$${{` is the escape for a literal `${{`.

Planned arguments are still *template text*: matrix/row/repeat are substituted, but `${{ env.X }}`
stays as written and any literal `${{` stays escaped as `$${{` (also inside substituted values, so
a dataset row can never smuggle in an env reference). `resolve_env` turns that text into the values
sent over the wire, at send time, so secrets never appear in plans or ids.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from batchrun.errors import BatchrunError

NAMESPACES = ("matrix", "row", "env", "repeat")
_TOKEN = re.compile(r"\$\$\{\{|\$\{\{(.*?)\}\}", re.S)
# `${{ row }}` alone is the whole row (whole-argument rows: `arguments: "${{ row }}"`).
_EXPR = re.compile(r"^(?:(matrix|row|env)\.([A-Za-z_][A-Za-z0-9_-]*)|(repeat)|(row))$")


class TemplateError(BatchrunError):
    """A malformed expression or an env template that cannot be resolved."""


@dataclasses.dataclass(frozen=True, slots=True)
class Ref:
    namespace: str  # matrix | row | env | repeat
    name: str  # "" for repeat, and for the whole row (`${{ row }}`)

    def text(self) -> str:
        if not self.name:
            return f"${{{{ {self.namespace} }}}}"
        return f"${{{{ {self.namespace}.{self.name} }}}}"


Part = str | Ref


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> tuple[Part, ...]:
    """Split a string into literal text (escapes undone) and references. Raises TemplateError."""
    parts: list[Part] = []
    literal: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        literal.append(text[pos : m.start()])
        pos = m.end()
        if m.group(0) == "$${{":
            literal.append("${{")
            continue
        expr = m.group(1).strip()
        em = _EXPR.match(expr)
        if em is None:
            raise TemplateError(_bad_expression(expr))
        if literal:
            parts.append("".join(literal))
            literal = []
        if em.group(3) or em.group(4):
            parts.append(Ref("repeat" if em.group(3) else "row", ""))
        else:
            parts.append(Ref(em.group(1), em.group(2)))
    tail = text[pos:]
    if "${{" in tail.replace("$${{", ""):
        raise TemplateError("unterminated '${{' (no closing '}}'); write '$${{' for a literal '${{'")
    literal.append(tail)
    joined = "".join(literal)
    if joined:
        parts.append(joined)
    return tuple(p for p in parts if p != "")


def _bad_expression(expr: str) -> str:
    head = expr.split(".", 1)[0]
    if head and head not in NAMESPACES and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*\..*", expr):
        return f"unknown template namespace '{head}' in '${{{{ {expr} }}}}'; use matrix., row., env. or repeat"
    return (
        f"invalid template expression '${{{{ {expr} }}}}'; expected matrix.NAME, row.FIELD, env.NAME or repeat"
    )


def escape(text: str) -> str:
    return text.replace("${{", "$${{")


def _escape_deep(value: Any) -> Any:
    if isinstance(value, str):
        return escape(value) if "${{" in value else value
    if isinstance(value, dict):
        return {k: _escape_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_deep(v) for v in value]
    return value


def interpolate(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


# ---- compiled templates: built once per job, rendered per request ------------------------------

@dataclasses.dataclass(slots=True)  # not frozen: one per planned request, and frozen init is ~3x slower
class Context:
    matrix: Mapping[str, Any]
    row: Mapping[str, Any] | None
    repeat: int


def _getter(ref: Ref) -> Any:
    """The value of one reference in a context, resolved to a function once, at compile time
    (rendering runs once per request)."""
    name = ref.name
    if ref.namespace == "matrix":
        return lambda ctx: ctx.matrix.get(name)
    if ref.namespace == "row":
        if not name:
            return lambda ctx: ctx.row
        return lambda ctx: None if ctx.row is None else ctx.row.get(name)
    return lambda ctx: ctx.repeat


def _escaped_value(value: Any) -> Any:
    """`_escape_deep` with the common scalars first."""
    kind = value.__class__
    if kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is str:
        return value.replace("${{", "$${{") if "${{" in value else value
    return _escape_deep(value)


def _interpolated(value: Any) -> str:
    """`interpolate`, escaped, with the common scalars first."""
    kind = value.__class__
    if kind is str:
        text: str = value
    elif kind is int or kind is float:
        return str(value)  # digits only: nothing to escape
    else:
        text = interpolate(value)
    return text.replace("${{", "$${{") if "${{" in text else text


class Compiled:
    """A value with its templates pre-parsed. `render(ctx)` builds fresh containers each call."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def render(self, ctx: Context) -> Any:
        return self._fn(ctx)


def compile_value(
    value: Any, *, file_base: str | None = None
) -> tuple[Compiled, list[tuple[tuple[str | int, ...], Ref]], list[tuple[tuple[str | int, ...], str]]]:
    """Compile `value`. Returns (compiled, references with relative paths, errors with relative paths).

    `{"$file": path}` objects get their (possibly templated) path made absolute against `file_base`.
    """
    refs: list[tuple[tuple[str | int, ...], Ref]] = []
    errors: list[tuple[tuple[str | int, ...], str]] = []
    fn = _compile(value, (), refs, errors, file_base)
    return Compiled(fn), refs, errors


def _const(value: Any) -> Any:
    def const(ctx: Context) -> Any:
        return value

    const.const = value  # type: ignore[attr-defined]  # marks it constant for the dict fill below
    return const


def _compile(value: Any, path: tuple[str | int, ...], refs: list[Any], errors: list[Any], base: str | None) -> Any:
    if isinstance(value, str):
        return _compile_str(value, path, refs, errors)
    if isinstance(value, dict):
        if "$file" in value and base is not None:
            inner = _compile(value["$file"], (*path, "$file"), refs, errors, base)

            def file_fn(ctx: Context) -> Any:
                target = inner(ctx)
                if isinstance(target, str):
                    target = os.path.join(base, target)
                return {"$file": os.path.normpath(target) if isinstance(target, str) else target}

            return file_fn
        items = [(k, _compile(v, (*path, k), refs, errors, base)) for k, v in value.items()]
        # Scalar constants go into a template dict copied per render (copying keeps key order);
        # only the other values are computed. Constants are immutable scalars (see _compile).
        shape = {k: getattr(f, "const", None) for k, f in items}
        live = [(k, f) for k, f in items if not hasattr(f, "const")]
        if len(live) == len(items):
            return lambda ctx: {k: f(ctx) for k, f in items}

        def fill(ctx: Context) -> dict[str, Any]:
            out = shape.copy()
            for k, f in live:
                out[k] = f(ctx)
            return out

        return fill
    if isinstance(value, list):
        fns = [_compile(v, (*path, i), refs, errors, base) for i, v in enumerate(value)]
        return lambda ctx: [f(ctx) for f in fns]
    return _const(value)


def _compile_str(text: str, path: tuple[str | int, ...], refs: list[Any], errors: list[Any]) -> Any:
    if "${{" not in text:
        return _const(text)
    try:
        parts = parse(text)
    except TemplateError as exc:
        errors.append((path, str(exc)))
        return _const(text)
    for part in parts:
        if isinstance(part, Ref):
            refs.append((path, part))
    live = [p for p in parts if isinstance(p, Ref) and p.namespace != "env"]
    if not live:
        return _const(text)  # only env references and escapes: already plan text
    if len(parts) == 1:
        ref = parts[0]
        assert isinstance(ref, Ref)
        get = _getter(ref)
        return lambda ctx: _escaped_value(get(ctx))

    # Literals are escaped and env references re-rendered once, here, not per request.
    pieces: list[str | Ref] = [
        p if isinstance(p, Ref) and p.namespace != "env" else (escape(p) if isinstance(p, str) else p.text())
        for p in parts
    ]

    # (literal, None) or ("", getter): no isinstance and no namespace dispatch per request.
    steps = [(p, None) if isinstance(p, str) else ("", _getter(p)) for p in pieces]

    def interp(ctx: Context) -> str:
        return "".join([text if get is None else _interpolated(get(ctx)) for text, get in steps])

    return interp


# ---- send time: env -------------------------------------------------------------------------


def resolve_env(value: Any, environ: Mapping[str, str], used: set[str] | None = None) -> Any:
    """Turn plan text into wire values: resolve `${{ env.X }}` and undo `$${{` escapes, recursively.
    `used`, when given, collects the names of the variables resolved (their values are secrets to
    redact): the client learns them in the same walk instead of a second one per request.

    Raises TemplateError naming the variable when it is unset.
    """
    if isinstance(value, str):
        if "${{" not in value:
            return value
        parts = parse(value)
        if len(parts) == 1 and isinstance(parts[0], Ref):
            return _env_value(parts[0], environ, used)
        return "".join(p if isinstance(p, str) else _env_value(p, environ, used) for p in parts)
    if isinstance(value, dict):
        return {k: resolve_env(v, environ, used) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, environ, used) for v in value]
    return value


def _env_value(ref: Ref, environ: Mapping[str, str], used: set[str] | None) -> str:
    if ref.namespace != "env":
        raise TemplateError(f"{ref.text()} was not resolved by the planner")
    try:
        text = environ[ref.name]
    except KeyError:
        raise TemplateError(f"environment variable {ref.name} is not set (the spec uses {ref.text()})") from None
    if used is not None:
        used.add(ref.name)
    return text


def unescape(value: Any) -> Any:
    """Rendered plan text -> final values for a place that never resolves env (expectations):
    `$${{` escapes are undone, recursively; an `${{ env.X }}` stays as its own text (never a
    value, so no secret). Malformed template text is kept as written (validation reports it)."""
    if isinstance(value, str):
        if "${{" not in value:
            return value
        try:
            parts = parse(value)
        except TemplateError:
            return value
        return "".join(p if isinstance(p, str) else p.text() for p in parts)
    if isinstance(value, dict):
        return {k: unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape(v) for v in value]
    return value


def strings(value: Any) -> Iterator[str]:
    """Every string value in `value`, at any depth (not keys: templates never apply to keys)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def mentions_template(value: Any) -> bool:
    """Whether any string in `value` holds `${{` (a reference or an escape): such a value must be
    rendered per request; any other is final as written."""
    return any("${{" in text for text in strings(value))


def is_template(value: Any) -> bool:
    """Whether `value` is a string with a matrix/row/repeat reference (its value is known only
    per request). A malformed template is not one (validation reports it on its own)."""
    if not isinstance(value, str) or "${{" not in value:
        return False
    try:
        return any(isinstance(p, Ref) and p.namespace != "env" for p in parse(value))
    except TemplateError:
        return False


def each_parsed(value: Any, visit: Callable[[tuple[Part, ...]], None], skip_files: bool = False) -> None:
    """Call `visit` with the parts of every string value in `value` that holds a template, at any
    depth (values, not keys). Malformed templates are skipped: validation reports them on its own.
    `skip_files`: leave out `{$file: ...}` objects (their path is normalised, not copied).
    A callback, not a generator: the client calls env_names per request."""
    if isinstance(value, str):
        if "${{" in value:
            try:
                parts = parse(value)
            except TemplateError:
                return
            visit(parts)
    elif isinstance(value, dict):
        if skip_files and "$file" in value:
            return
        for v in value.values():
            each_parsed(v, visit, skip_files)
    elif isinstance(value, list):
        for v in value:
            each_parsed(v, visit, skip_files)


def ref_names(value: Any, namespace: str) -> set[str]:
    """The names of `namespace` (env, matrix, row) that templates anywhere in `value` reference."""
    names: set[str] = set()

    def visit(parts: tuple[Part, ...]) -> None:
        for part in parts:
            if isinstance(part, Ref) and part.namespace == namespace:
                names.add(part.name)

    each_parsed(value, visit)
    return names


def env_names(value: Any) -> set[str]:
    """The environment variables `value` references (so their values can be redacted)."""
    return ref_names(value, "env")


def whole_refs(value: Any, namespace: str) -> set[str]:
    """The names that some value inside `value` is exactly one template of (`"${{ row.p }}"` for
    namespace row), outside `$file` objects. Such a value renders as the named value itself."""
    out: set[str] = set()

    def visit(parts: tuple[Part, ...]) -> None:
        if len(parts) == 1 and isinstance(parts[0], Ref) and parts[0].namespace == namespace:
            out.add(parts[0].name)

    each_parsed(value, visit, True)
    return out
