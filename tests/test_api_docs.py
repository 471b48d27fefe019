"""docs/api.md's notebook session runs: its ```python blocks, in order, in one namespace, in a
fresh folder (the spec targets the embedded server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parent.parent / "docs" / "api.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_doc_has_the_whole_session() -> None:
    """load -> plan -> run with callbacks -> read -> pandas, each in a block."""
    text = "\n".join(BLOCKS)
    assert len(BLOCKS) >= 6
    for call in ("br.load(", ".plan(", "br.run(", "on_queue_update", "br.read(", ".to_pandas()", "br.export("):
        assert call in text


def test_the_doc_session_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every block runs without an error (their own asserts check what they print)."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__api_doc__"}
    for number, block in enumerate(BLOCKS, start=1):
        code = compile(block, f"docs/api.md block {number}", "exec")
        exec(code, namespace)  # noqa: S102 - the documentation's own examples
