"""The HTML report and HTML diff without a browser: the page's structure parsed back (contact sheet
axes and their order, links, escaping of hostile strings, no external resources) and its exact
numbers. tests/test_browser.py looks at the same pages in Chromium."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from batchrun.cli import main
from batchrun.report.html import histogram_svg, render_report_html
from batchrun.report.stats import build_report

DATA = Path(__file__).parent / "data" / "records"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
HOSTILE = '<script>alert("x")</script>'


@dataclasses.dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = dataclasses.field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag and (cls is None or cls in child.attrs.get("class", "").split()):
                    found.append(child)
                found += child.all(tag, cls)
        return found


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    tree = _Tree()
    tree.feed(page)
    tree.close()
    assert tree.stack == [tree.root], "unclosed elements"
    return tree.root


def record(index: int, job: str = "sweep", *, matrix: dict[str, Any] | None = None, ok: bool = True,
           images: list[str] | None = None, latency: float = 1.0, **extra: Any) -> dict[str, Any]:  # fmt: skip
    matrix = matrix or {}
    urls = images if images is not None else [f"https://cdn.example/{job}/{index}.png"]
    return {
        "id": f"id-{index:02d}", "index": index, "job": job, "endpoint": "fal-ai/flux/dev", "path": "",
        "mode": "subscribe", "arguments": {"prompt": f"a cat, {matrix.get('style', '')}", **matrix},
        "matrix": matrix, "status": "ok" if ok else "error",
        "result": {"images": [{"url": u, "width": 64, "height": 48, "content_type": "image/png"} for u in urls],
                   "seed": index} if ok else None,
        "error": None if ok else {"type": "validation_error", "status_code": 422, "detail": "bad", "retryable": False},
        "request_id": None, "attempts": 1, "logs": None, "metrics": None,
        "timing": {"started_at": f"2025-01-01T12:00:{index:02d}.000Z", "finished_at": f"2025-01-01T12:00:{index + 1:02d}.000Z",
                   "latency_s": latency, "queue_s": None},
        **extra,
    }  # fmt: skip


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def sweep(tmp_path: Path) -> Path:
    """style [watercolor, photo] x seed [3, 1, 2] (matrix order, not sorted), written out of order."""
    records = [
        record(i, matrix={"style": style, "seed": seed, "size": "square" if style == "watercolor" else "wide"})
        for i, (style, seed) in enumerate((s, n) for s in ("watercolor", "photo") for n in (3, 1, 2))
    ]
    return write(tmp_path / "out.jsonl", records[::-1])


def sheet(page: Node) -> tuple[str, str, list[str], list[tuple[str, list[list[str]]]]]:
    """(rows key, cols key, column values, [(row value, [image srcs per cell])]) of the first sheet."""
    table = page.all("table", "sheet")[0]
    cols = [span.text() for th in table.all("thead")[0].all("th") for span in th.all("span", "value")]
    rows = []
    for tr in table.all("tbody")[0].all("tr"):
        cells = [[img.attrs["src"] for img in td.all("img")] for td in tr.all("td")]
        rows.append((tr.all("th")[0].all("span", "value")[0].text(), cells))
    return table.attrs["data-rows"], table.attrs["data-cols"], cols, rows


def report_page(output: Path, html: Path, grid: tuple[str, str] | None = None) -> Node:
    return parse(render_report_html(build_report(output), html, grid))


def test_default_grid_is_the_two_most_varied_keys_in_matrix_order(tmp_path: Path) -> None:
    page = report_page(sweep(tmp_path), tmp_path / "r.html")
    url = "https://cdn.example/sweep/{}.png".format
    assert sheet(page) == (
        "style", "seed", ["3", "1", "2"],
        [("watercolor", [[url(0)], [url(1)], [url(2)]]), ("photo", [[url(3)], [url(4)], [url(5)]])],
    )  # fmt: skip
    # Each thumbnail links to its full image and carries the request's arguments on hover.
    link = page.all("a")[0]
    assert link.attrs["href"] == url(0) == link.all("img")[0].attrs["src"]
    assert link.attrs["title"] == (
        "id: id-00\njob: sweep\nprompt: a cat, watercolor\nstyle: watercolor\nseed: 3\nsize: square"
    )
    assert [c.text() for c in page.all("figcaption")][:2] == ["size=square", "size=square"]


def test_grid_option_picks_and_orders_the_axes(tmp_path: Path) -> None:
    page = report_page(sweep(tmp_path), tmp_path / "r.html", ("seed", "style"))
    rows_key, cols_key, cols, rows = sheet(page)
    assert (rows_key, cols_key, cols) == ("seed", "style", ["watercolor", "photo"])
    assert [value for value, _ in rows] == ["3", "1", "2"]
    assert rows[0][1] == [["https://cdn.example/sweep/0.png"], ["https://cdn.example/sweep/3.png"]]


def test_ties_go_to_the_earlier_key_and_missing_values_get_their_own_row(tmp_path: Path) -> None:
    records = [record(0, matrix={"a": 1, "b": "x", "c": "p"}), record(1, matrix={"a": 2, "b": "y", "c": "q"}),
               record(2, matrix={"a": 1, "b": "z", "c": "r"}), record(3, matrix={"b": "x", "c": "s"})]  # fmt: skip
    rows_key, cols_key, cols, rows = sheet(report_page(write(tmp_path / "o.jsonl", records), tmp_path / "r.html"))
    # c has 4 values; a (1, 2, absent) and b (x, y, z) tie at 3: the earlier key wins.
    assert (rows_key, cols_key, cols) == ("a", "c", ["p", "q", "r", "s"])
    _, _, _, rows = sheet(report_page(tmp_path / "o.jsonl", tmp_path / "r.html", ("a", "b")))
    assert [(value, [len(cell) for cell in cells]) for value, cells in rows] == [
        ("1", [1, 0, 1]), ("2", [0, 1, 0]), ("(none)", [1, 0, 0]),
    ]  # fmt: skip


def test_one_varying_key_falls_back_to_a_plain_grid_in_plan_order(tmp_path: Path) -> None:
    records = [record(i, matrix={"seed": i, "style": "ink"}) for i in (2, 0, 1)]
    page = report_page(write(tmp_path / "o.jsonl", records), tmp_path / "r.html")
    assert page.all("table", "sheet") == []
    plain = page.all("div", "plain")[0]
    assert [img.attrs["src"] for img in plain.all("img")] == [f"https://cdn.example/sweep/{i}.png" for i in (0, 1, 2)]
    assert [c.text() for c in plain.all("figcaption")] == ["seed=0, style=ink", "seed=1, style=ink", "seed=2, style=ink"]


def test_dataset_rows_in_one_cell_are_labelled_and_failed_checks_marked(tmp_path: Path) -> None:
    """Two dataset rows per matrix cell stack in one cell: each says its row (and repeat); a picture
    whose expectation failed is outlined and says so, its message on hover."""
    failed = [{"passed": False, "message": "images[0].width: expected >= 512, got 64", "check": {}}]
    passed = [{"passed": True, "message": "ok", "check": {}}]
    records = [
        record(i, matrix={"style": style, "seed": seed}, row=row, repeat=1 if i == 7 else 0,
               expectations=failed if i == 2 else passed)
        for i, (style, seed, row) in enumerate((s, n, r) for s in ("ink", "oil") for n in (1, 2) for r in (0, 1))
    ]
    page = report_page(write(tmp_path / "o.jsonl", records), tmp_path / "r.html")
    _, _, _, rows = sheet(page)
    assert [len(cell) for _, cells in rows for cell in cells] == [2, 2, 2, 2]
    captions = [c.text() for c in page.all("figcaption")]
    assert captions == ["row 0", "row 1", "row 0", "row 1", "row 0", "row 1", "row 0", "row 1, repeat 1"]
    marked = page.all("figure", "checks-failed")
    assert len(marked) == 1 and marked[0].all("img")[0].attrs["src"] == "https://cdn.example/sweep/2.png"
    assert marked[0].all("div", "checks")[0].text() == "✗ 1 failed check"
    assert "failed: images[0].width: expected >= 512, got 64" in marked[0].all("a")[0].attrs["title"]


def test_hostile_strings_are_escaped_and_unsafe_urls_dropped(tmp_path: Path) -> None:
    bad = record(1, job=HOSTILE, ok=False)
    bad["error"]["detail"] = HOSTILE
    evil = record(0, matrix={"style": HOSTILE, "seed": 1}, images=["javascript:alert(1)", "https://cdn.example/ok.png"])
    evil["arguments"]["prompt"] = '"><img src=x onerror=alert(1)>'
    evil2 = record(2, matrix={"style": "ink", "seed": 2})
    page_text = render_report_html(build_report(write(tmp_path / "o.jsonl", [evil, bad, evil2])), tmp_path / "r.html")
    page = parse(page_text)
    assert page.all("script") == [] and "<script>" not in page_text
    every = page.all("img") + page.all("a") + page.all("figure") + page.all("span")
    assert not [n for n in every if any(name.startswith("on") for name in n.attrs)]
    assert [img.attrs["src"] for img in page.all("img")] == ["https://cdn.example/ok.png", "https://cdn.example/sweep/2.png"]
    assert "javascript:" not in page_text
    # The texts survive intact for a reader: in the errors table, the sheet and the hover text.
    errors = [[td.text() for td in tr.all("td")] for tr in page.all("tbody")[0].all("tr")]
    assert errors == [[HOSTILE, "validation_error", "1", "id-01", HOSTILE]]
    assert 'prompt: "><img src=x onerror=alert(1)>' in page.all("a")[0].attrs["title"]
    assert sheet(page)[3][0][0] == HOSTILE


def test_no_external_resources_only_the_records_images(tmp_path: Path) -> None:
    page_text = render_report_html(build_report(sweep(tmp_path)), tmp_path / "r.html")
    images = {f"https://cdn.example/sweep/{i}.png" for i in range(6)}
    assert set(re.findall(r"https?://[^\"'\s<>]+", page_text)) == images
    page = parse(page_text)
    referenced = {img.attrs["src"] for img in page.all("img")} | {a.attrs["href"] for a in page.all("a")}
    assert referenced == images
    assert page.all("link") == [] and page.all("script") == [] and page.all("iframe") == []
    assert "@import" not in page_text and "url(" not in page_text and "@font-face" not in page_text


def test_downloaded_artifacts_are_referenced_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "runs" / "art").mkdir(parents=True)
    (tmp_path / "runs" / "art" / "0 a.png").write_bytes(b"\x89PNG")
    url = "https://cdn.example/sweep/0.png"
    artifacts = [{"url": url, "path": "art/0 a.png", "sha256": "ab", "bytes": 4, "content_type": "image/png"}]
    gone = [{"url": "https://cdn.example/sweep/1.png", "path": "art/1.png", "sha256": "cd", "bytes": 4, "content_type": "image/png"}]
    output = write(tmp_path / "runs" / "o.jsonl", [record(0, artifacts=artifacts), record(1, artifacts=gone)])
    page = report_page(output, tmp_path / "site" / "r.html")
    assert [img.attrs["src"] for img in page.all("img")] == ["../runs/art/0%20a.png", "https://cdn.example/sweep/1.png"]


def test_summary_numbers_are_the_text_reports(tmp_path: Path) -> None:
    page = report_page(DATA / "run.jsonl", tmp_path / "r.html")
    cards = {
        card.all("h3")[0].text(): [(tr.all("th")[0].text(), tr.all("td")[0].text()) for tr in card.all("tr")]
        for card in page.all("section", "card")
        if card.all("table", "metrics")
    }
    assert list(cards) == ["All jobs 4/6 ok", "Job txt2img 3/4 ok", "Job upscale 1/2 ok"]
    assert cards["All jobs 4/6 ok"] == [
        ("requests", "6"), ("ok", "4"), ("error", "2 (33.3%)"), ("expectation failures", "2 requests (3 checks)"),
        ("latency p50 / p95 / max", "1.200 s / 3.400 s / 3.400 s"), ("queue p50 / p95", "0.200 s / 0.500 s"),
        ("attempts", "9 (2 requests retried)"), ("throughput", "1.20 requests/s over 5.000 s"), ("cost", "$0.0350"),
    ]  # fmt: skip
    tables = [[[td.text() for td in tr.all("td")] for tr in body.all("tr")] for body in page.all("tbody")]
    assert tables[0][1] == ["upscale", "http_timeout", "1", "id-05 row 5 prompt=a cat seed=5", "read timed out"]
    assert tables[1] == [  # failed requests, named by what they are
        ["txt2img", "id-02 seed=2", 'validation_error: [{"loc": ["body", "num_images"], "msg": "ensure this value is less '
                                    'than or equa…'],
        ["upscale", "id-05 row 5 prompt=a cat seed=5", "http_timeout: read timed out"],
    ]
    assert tables[2] == [
        ["txt2img", "id-01 seed=1", "images[0].width: expected 512, got 768"],
        ["txt2img", "id-03 seed=3", "seed: expected 7, got 8"],
        ["txt2img", "id-03 seed=3", "latency_s: expected <= 3, got 3.4"],
    ]
    assert page.all("p", "bad")[0].text() == "FAIL: 2 errors, 2 expectation failures"
    assert "7 records, 1 superseded by newer ones" in page.all("header")[0].text()


def test_latency_histogram_bins() -> None:
    overall = build_report(DATA / "run.jsonl").overall  # p50 1.2, p95 3.4
    svg = parse(histogram_svg([0.1, 0.2, 0.3, 0.4], overall))
    assert [t.text() for rect in svg.all("rect") for t in rect.all("title")] == [
        "0.100–0.250 s: 2 requests", "0.250–0.400 s: 2 requests",
    ]  # fmt: skip
    assert [t.text() for line in svg.all("line") for t in line.all("title")] == ["p50 1.200 s", "p95 3.400 s"]


def test_cli_writes_the_page_and_still_prints_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "new" / "dir" / "report.html"
    assert main(["report", str(sweep(tmp_path)), "--html", str(html), "--grid", "seed,style"]) == 0
    assert capsys.readouterr().out.startswith("batchrun report: ")
    assert sheet(parse(html.read_text(encoding="utf-8")))[:2] == ("seed", "style")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid", "style,seed"], "batchrun: error: --grid needs --html PATH\n"),
        (["--html", "{tmp}/r.html", "--grid", "style"],
         "batchrun: error: --grid: expected two different matrix keys as ROWS,COLS (e.g. style,seed), got 'style'\n"),
        (["--html", "{tmp}/r.html", "--grid", "style,colour"],
         "batchrun: error: --grid style,colour: no job with images has both matrix keys (matrix keys: seed, size, style)\n"),
    ],
)  # fmt: skip
def test_cli_grid_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    output = sweep(tmp_path)
    assert main(["report", str(output), *(a.format(tmp=tmp_path) for a in args)]) == 2
    assert capsys.readouterr().err == message
    assert not (tmp_path / "r.html").exists()


def test_diff_page_puts_base_and_new_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path / "base.jsonl", [record(0), record(1), record(2), record(3)])
    failing = record(1, ok=False)
    failing["error"]["detail"] = HOSTILE
    changed = record(2, images=["https://cdn.example/sweep/2-new.png"])
    changed["result"]["seed"] = 99
    new = write(tmp_path / "new.jsonl", [record(0), failing, changed, record(4)])
    html = tmp_path / "diff.html"
    assert main(["diff", str(base), str(new), "--html", str(html)]) == 1
    capsys.readouterr()
    page_text = html.read_text(encoding="utf-8")
    assert "<script>" not in page_text
    page = parse(page_text)
    assert page.all("p", "bad")[0].text() == "regressed: 1 newly failing, 1 missing, 1 added, 1 result changed"

    def side(card: Node, name: str) -> list[str]:
        box = card.all("div", name)[0]
        return [i.attrs["src"] for i in box.all("img")] + [e.text() for e in box.all("div", "err")] + [
            p.text() for p in box.all("p")
        ]

    cards = [(c.attrs["data-id"], side(c, "base"), side(c, "new"), [li.text() for li in c.all("li")]) for c in page.all("section")
             if "data-id" in c.attrs]  # fmt: skip
    url = "https://cdn.example/sweep/{}.png".format
    assert cards == [
        ("id-01", [url(1)], [f"validation_error: {HOSTILE}"], []),
        ("id-03", [url(3)], ["(absent)"], []),
        ("id-04", ["(absent)"], [url(4)], []),
        ("id-02", [url(2)], [url("2-new")], ["seed: 2 -> 99"]),
    ]


@pytest.mark.parametrize("latency", [float("nan"), float("inf")])
def test_a_non_finite_latency_is_unknown_not_a_crash(tmp_path: Path, latency: float) -> None:
    """Regression: a NaN/Infinity latency (valid for Python's json) made the histogram raise; it is
    now unknown, as in the text report, so the page shows the other requests' histogram."""
    out = write(tmp_path / "run.jsonl", [record(0, latency=latency), record(1, latency=2.0)])
    html_path = tmp_path / "report.html"
    assert main(["report", str(out), "--html", str(html_path)]) == 0
    assert "Histogram 1 successful request" in " ".join(parse(html_path.read_text()).text().split())
