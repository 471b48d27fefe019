"""Safe YAML loading that remembers where every key and value was written.

The spec's errors must point at the offending key or value itself, so instead of `yaml.safe_load`
we compose the node graph and build plain Python data from it ourselves, recording 1-based
(line, col) positions per JSON path. The `!file path` tag becomes `{"$file": path}`.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import yaml

from batchrun.errors import Problem
from batchrun.spec.jsonvalues import bad_number, bad_text

PathKey = tuple[str | int, ...]

# Guards against hostile input: an alias bomb expands exponentially, deep nesting overflows.
MAX_NODES = 500_000
MAX_DEPTH = 200

class _Loader(yaml.SafeLoader):
    """SafeLoader plus `!file`; the pure-Python loader keeps marks on every node."""


FILE_KEY = "$file"  # the key of a `{$file: path}` input object (`!file path` in YAML); one name for every stage


def _construct_file(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, "!file takes a path string, e.g. `!file images/cat.png`", node.start_mark
        )
    return {FILE_KEY: loader.construct_scalar(node)}


_Loader.add_constructor("!file", _construct_file)


@dataclasses.dataclass(frozen=True, slots=True)
class Pos:
    line: int  # 1-based
    col: int  # 1-based


@dataclasses.dataclass(slots=True)
class Located:
    """Parsed data plus the positions of its keys and values, addressed by JSON path tuples."""

    file: str
    data: Any
    values: dict[PathKey, Pos] = dataclasses.field(default_factory=dict)
    keys: dict[PathKey, Pos] = dataclasses.field(default_factory=dict)

    def value_pos(self, path: PathKey) -> Pos:
        """Where the value at `path` starts; the nearest located ancestor when unknown."""
        for i in range(len(path), -1, -1):
            pos = self.values.get(path[:i])
            if pos is not None:
                return pos
        return Pos(1, 1)

    def key_pos(self, path: PathKey) -> Pos:
        """Where the key naming `path` is written (falls back to its value, then ancestors)."""
        pos = self.keys.get(path)
        return pos if pos is not None else self.value_pos(path)

    def problem(self, path: PathKey, message: str, *, at_key: bool = False, severity: str = "error") -> Problem:
        pos = self.key_pos(path) if at_key else self.value_pos(path)
        return Problem(self.file, pos.line, pos.col, json_path(path), message, severity)


def json_path(path: PathKey) -> str:
    """`("jobs", 0, "matrix")` -> `$.jobs[0].matrix`; odd keys are quoted: `$['a b']`."""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier() or (part and all(c.isalnum() or c in "_-" for c in part)):
            out.append(f".{part}")
        else:
            out.append("[" + repr(part) + "]")
    return "".join(out)


def _pos(mark: Any) -> Pos:
    return Pos(mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self, loader: _Loader, located: Located) -> None:
        self.loader = loader
        self.located = located
        self.problems: list[Problem] = []
        self.count = 0

    def build(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig("the document expands to more than 500,000 values (an alias bomb?)")
        if depth > MAX_DEPTH:
            raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels is not supported", node)
        self.located.values[path] = _pos(node.start_mark)
        if isinstance(node, yaml.MappingNode) and node.tag == "tag:yaml.org,2002:map":
            self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    p = _pos(key_node.start_mark)
                    self.problems.append(
                        Problem(self.located.file, p.line, p.col, json_path(path), "mapping keys must be plain strings")
                    )
                    continue
                key = str(key_node.value)
                child = (*path, key)
                if (why := bad_text(key)) is not None:
                    p = _pos(key_node.start_mark)
                    self.problems.append(Problem(self.located.file, p.line, p.col, json_path(path), f"a key: {why}"))
                    key = _printable(key)  # kept printable for later messages
                    child = (*path, key)
                if key in out:
                    p = _pos(key_node.start_mark)
                    self.problems.append(
                        Problem(self.located.file, p.line, p.col, json_path(child), f"duplicate key '{key}'")
                    )
                self.located.keys[child] = _pos(key_node.start_mark)
                out[key] = self.build(value_node, child, depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode) and node.tag == "tag:yaml.org,2002:seq":
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark or node.start_mark
            p = _pos(mark)
            self.problems.append(Problem(self.located.file, p.line, p.col, json_path(path), _yaml_message(exc)))
            return None
        except ValueError:  # int() of more digits than Python converts (sys.get_int_max_str_digits)
            self._problem(node, path, f"an integer of {len(str(node.value))} digits is more than batchrun reads "
                                      f"({sys.get_int_max_str_digits()} at most); write it as a string")
            return None
        value = _plain(value)
        # Only what UTF-8 JSON can carry (see batchrun.spec.jsonvalues): refused here, where it is
        # written, instead of failing every request at send time or crashing an id computation.
        text = value["$file"] if isinstance(value, dict) and isinstance(value.get("$file"), str) else value
        why = bad_text(text) if isinstance(text, str) else bad_number(value) if isinstance(value, float) else None
        if why is not None:
            self._problem(node, path, why)
            # Kept, made printable, so the later stages neither repeat the error nor trip on it.
            return _printable(value) if isinstance(value, (str, dict)) else value
        return value

    def _problem(self, node: yaml.Node, path: PathKey, message: str) -> None:
        p = _pos(node.start_mark)
        self.problems.append(Problem(self.located.file, p.line, p.col, json_path(path), message))


def _printable(value: Any) -> Any:
    """`value` with lone surrogates written as `\\udxxx` text (valid Unicode)."""
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    return value.encode("utf-8", "backslashreplace").decode() if isinstance(value, str) else value


class _TooBig(Exception):
    def __init__(self, message: str, node: yaml.Node | None = None) -> None:
        super().__init__(message)
        self.node = node


def _plain(value: Any) -> Any:
    """Dates and binary from YAML's resolver become strings: specs are JSON-shaped data."""
    if value is None or isinstance(value, (bool, int, float, str, list, dict)):
        return value
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    text = "; ".join(parts) if parts else str(exc).splitlines()[0]
    return f"YAML: {text}"


def parse(text: str, file: str) -> tuple[Located | None, list[Problem]]:
    """Parse one YAML document. Returns (located data, problems); data is None on syntax errors."""
    located = Located(file, None)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        line, col = _offset_to_pos(text, exc.position)
        return None, [Problem(file, line, col, "$", f"YAML: unacceptable character #x{exc.character:04x}")]
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            p = _pos(mark) if mark is not None else Pos(1, 1)
            return None, [Problem(file, p.line, p.col, "$", _yaml_message(exc))]
        except yaml.YAMLError as exc:
            return None, [Problem(file, 1, 1, "$", f"YAML: {exc}")]
        except RecursionError:
            return None, [Problem(file, 1, 1, "$", f"nesting deeper than {MAX_DEPTH} levels is not supported")]
        if node is None:
            located.data = None
            return located, []
        builder = _Builder(loader, located)
        try:
            located.data = builder.build(node, (), 0)
        except _TooBig as exc:
            p = _pos(exc.node.start_mark) if exc.node is not None else Pos(1, 1)
            return None, [Problem(file, p.line, p.col, "$", str(exc))]
        except RecursionError:
            return None, [Problem(file, 1, 1, "$", f"nesting deeper than {MAX_DEPTH} levels is not supported")]
        return located, builder.problems
    finally:
        loader.dispose()


def _offset_to_pos(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    line = before.count("\n") + 1
    col = offset - (before.rfind("\n") + 1) + 1
    return line, col


def read_text(path: Any, file: str) -> tuple[str | None, list[Problem]]:
    """Read a file as UTF-8, turning I/O and decoding failures into located problems."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, [Problem(file, 1, 1, "$", "file not found")]
    except IsADirectoryError:
        return None, [Problem(file, 1, 1, "$", "is a directory, not a file")]
    except OSError as exc:
        return None, [Problem(file, 1, 1, "$", f"cannot read: {exc.strerror or exc}")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        head = raw[: exc.start]
        line = head.count(b"\n") + 1
        col = exc.start - (head.rfind(b"\n") + 1) + 1
        return None, [Problem(file, line, col, "$", f"not UTF-8 text (byte 0x{raw[exc.start]:02x})")]
    return text, []
