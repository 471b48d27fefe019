"""Semantic checks the JSON Schema cannot express, each a located Problem.

They run after the schema on the same located data, defensively: a value the schema already
rejected (a path in `bad`) is skipped rather than reported twice. Job options are checked after
`defaults` are merged in, but located where they were written (the job or the defaults section).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from pathlib import Path
from typing import Any, TypeGuard

from batchrun.errors import Problem
from batchrun.spec import constraints, dataset, expect
from batchrun.spec.dataset_types import TYPES
from batchrun.spec.model import LOCAL_APPS, MediaLifetime
from batchrun.spec.template import Ref, compile_value, whole_refs
from batchrun.spec.yamlsource import Located, PathKey, json_path

_SEG = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_ENDPOINT = re.compile(rf"^(?:{_SEG}/{_SEG}(?:/{_SEG})*|[0-9]+-[A-Za-z0-9-]+)$")
_NAMESPACES = ("workflows", "comfy")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # all but tab; CR/LF would inject headers
TEMPLATED = ("arguments", "path", "hint", "headers", "expect")
# A downloaded result's files are fetched after its answer arrives, behind the other downloads and
# their retries: a lifetime under this may run out first.
DOWNLOAD_MARGIN_S = 300
# Options of one calling style only. A default of the other style is skipped for a job (so
# `defaults: {client_timeout: 300}` serves the subscribe jobs of a spec that also has run jobs);
# a job's own such key is an error, since it would be ignored.
MODE_ONLY = {"timeout": "run", "client_timeout": "subscribe", "priority": "subscribe", "with_logs": "subscribe"}
_MODE_FIX = {"timeout": "; use client_timeout for subscribe mode", "client_timeout": "; use timeout for run mode",
             "with_logs": " (a direct call has no runner logs)"}


@dataclasses.dataclass(frozen=True, slots=True)
class UnsetEnv(Problem):
    """A warning: the job uses `${{ env.NAME }}` but NAME is not set in this process. Validation
    only warns (a variable may be set only where the spec runs); `batchrun run` turns those of the
    jobs it will send into its error before anything is sent. Names only: never a value."""

    name: str = ""
    job: str = ""


def endpoint_problem(endpoint: str) -> str | None:
    """Why `endpoint` is not a fal endpoint id, or None when it is one."""
    example = "such as fal-ai/flux/schnell"
    if not _ENDPOINT.match(endpoint):
        return f"'{endpoint}' is not an endpoint id: expected owner/alias[/path] {example}"
    head, _, rest = endpoint.partition("/")
    if head in _NAMESPACES and rest.count("/") < 1:
        return f"'{endpoint}' is not an endpoint id: {head}/ ids are {head}/owner/alias[/path]"
    return None


@dataclasses.dataclass(slots=True)
class JobSource:
    """One job's options with defaults merged in, and where each option was written."""

    index: int
    options: dict[str, Any]
    origin: dict[str, PathKey]
    skipped: tuple[str, ...] = ()  # defaults left out because they do not apply to the job's mode

    @property
    def path(self) -> PathKey:
        return ("jobs", self.index)

    @property
    def name(self) -> str:
        name = self.options.get("name")
        return name if isinstance(name, str) else f"#{self.index}"

    def at(self, key: str) -> PathKey:
        return self.origin.get(key, self.path)


def merge_jobs(data: dict[str, Any]) -> list[JobSource]:
    defaults = data.get("defaults")
    defaults = defaults if isinstance(defaults, dict) else {}
    jobs = data.get("jobs")
    out = []
    for i, job in enumerate(jobs if isinstance(jobs, list) else []):
        if not isinstance(job, dict):
            continue
        options = {**defaults, **job}
        origin: dict[str, PathKey] = {k: ("defaults", k) for k in defaults}
        origin.update({k: ("jobs", i, k) for k in job})
        mode = options.get("mode", "subscribe")
        skipped = tuple(k for k, only in MODE_ONLY.items()
                        if k in defaults and k not in job and mode in ("run", "subscribe") and mode != only)
        for key in skipped:
            del options[key], origin[key]
        out.append(JobSource(i, options, origin, skipped))
    return out


class Checker:
    def __init__(self, located: Located, bad: set[PathKey], spec_dir: Path) -> None:
        self.located = located
        self.bad = bad
        self.spec_dir = spec_dir
        self.problems: list[Problem] = []
        # The check's report per job index with a dataset: the plan is counted from its rows (no
        # second read to count), and rows known to be distinct spare the duplicate-id walk.
        self.datasets: dict[int, dataset.Report] = {}
        # (file, fields used) -> (the fields its rows were compared on, the report)
        # (file, fields, sorted types) -> (fields the rows were compared on, the check's report)
        self._datasets_checked: dict[
            tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]], tuple[tuple[str, ...], dataset.Report]
        ] = {}

    def is_bad(self, path: PathKey) -> bool:
        return any(path[:i] in self.bad for i in range(1, len(path) + 1))

    def error(self, path: PathKey, message: str, *, at_key: bool = False, severity: str = "error") -> None:
        self.problems.append(self.located.problem(path, message, at_key=at_key, severity=severity))

    def run(self) -> list[JobSource]:
        data = self.located.data
        jobs = merge_jobs(data)
        seen: dict[str, int] = {}
        for job in jobs:
            name = job.options.get("name")
            if isinstance(name, str):
                if name in seen:
                    self.error(
                        (*job.path, "name"), f"duplicate job name '{name}' (also used by $.jobs[{seen[name]}])"
                    )
                else:
                    seen[name] = job.index
            self.check_job(job)
        self.check_pricing(data.get("pricing"))
        self.check_unused_defaults(jobs)
        self.check_cache(data, jobs)
        self.check_media_lifetime(data, jobs)
        return jobs

    def check_media_lifetime(self, data: dict[str, Any], jobs: list[JobSource]) -> None:
        """Expired media are deleted for good (docs/fal-protocol.md §9.5): warn when a job's would
        go before batchrun fetches them, or while its output is still worth comparing against."""
        for job in jobs:
            lifetime = MediaLifetime.of(job.options.get("media_lifetime"))
            where = job.at("media_lifetime")
            if lifetime is None or lifetime.seconds is None or self.is_bad(where):
                continue
            if job.options.get("download") is True:
                if lifetime.seconds < DOWNLOAD_MARGIN_S:
                    self.error(where, f"job '{job.name}' downloads its media, but fal deletes them {lifetime} "
                               "after they are made: a download waiting behind others or retrying may find them "
                               f"gone; give media_lifetime at least {DOWNLOAD_MARGIN_S // 60}m", severity="warning")
                continue
            later = ("a later `batchrun diff` against this regression run cannot compare them, "
                     if data.get("gates") else "a later `batchrun diff` cannot compare them, ")
            self.error(where, f"job '{job.name}' keeps its media only {lifetime} and does not download them: "
                       f"after that its result URLs are dead ({later}and report pages show no pictures); "
                       "add `download: true` to keep copies", severity="warning")

    def check_cache(self, data: dict[str, Any], jobs: list[JobSource]) -> None:
        """`gates` make a regression run, which exists to see the service change; a result cache
        without a ttl would answer it with old results forever (docs/spec.md, Result cache). A
        warning, once per place `cache` is written: the spec may mean it (a gate on cost)."""
        if not data.get("gates"):
            return
        warned: set[PathKey] = set()
        for job in jobs:
            value = job.options.get("cache", data.get("cache", False))
            if value is True or (isinstance(value, dict) and "ttl" not in value):
                where = job.at("cache") if "cache" in job.options else ("cache",)
                if where not in warned and not self.is_bad(where):
                    warned.add(where)
                    self.error(where, "this spec has gates (a regression run, meant to see the service change), but "
                               f"the result cache serves job '{job.name}' earlier results of any age: give `cache` "
                               "a ttl, or `cache: false` to the jobs the gates judge (docs/spec.md, Result cache)",
                               at_key=True, severity="warning")

    def check_unused_defaults(self, jobs: list[JobSource]) -> None:
        """A mode-specific default that every job skipped (see MODE_ONLY) does nothing: say so."""
        for key in dict.fromkeys(k for job in jobs for k in job.skipped):
            if not any(job.origin.get(key) == ("defaults", key) for job in jobs):
                other = "run" if MODE_ONLY[key] == "subscribe" else "subscribe"
                message = (f"{key} applies to {MODE_ONLY[key]} mode only, and every job that does "
                           f"not set its own uses mode: {other}: this default has no effect")
                self.error(("defaults", key), message, at_key=True, severity="warning")

    def check_job(self, job: JobSource) -> None:
        o = job.options
        suffix = f" (job '{job.name}')"
        endpoint = o.get("endpoint")
        if "endpoint" not in o:
            self.error(job.path, "missing required key 'endpoint' (set it on the job or under defaults)")
        elif isinstance(endpoint, str) and not self.is_bad(job.at("endpoint")):
            msg = endpoint_problem(endpoint) or self.local_problem(endpoint, job)
            if msg:
                self.error(job.at("endpoint"), msg)
        mode = o.get("mode", "subscribe")
        for key, only in MODE_ONLY.items():
            # `with_logs: false` asks for what a run job does anyway (specs wrote it to turn off a default)
            if key in o and mode in ("run", "subscribe") and mode != only and o[key] is not False:
                self.error(
                    job.at(key),
                    f"{key} applies to {only} mode only, but job '{job.name}' uses mode: {mode}"
                    f"{_MODE_FIX.get(key, '')}",
                    at_key=True,
                )
        start, client = o.get("start_timeout"), o.get("client_timeout")
        if _is_num(start) and _is_num(client) and start > client and mode != "run":
            self.error(
                job.at("start_timeout"),
                f"start_timeout ({start}) is greater than client_timeout ({client}): the client gives up first{suffix}",
                severity="warning",
            )
        raw_matrix = o.get("matrix")
        matrix = raw_matrix if isinstance(raw_matrix, dict) else {}
        include = (
            [e for e in o.get("include") or [] if isinstance(e, dict)] if isinstance(o.get("include"), list) else []
        )
        self.check_exclude(job, matrix)
        self.check_constraints(job, matrix)
        known_matrix = list(matrix) + [k for e in include for k in e if k not in matrix]
        row_fields: dict[str, str] = {}
        for key in TEMPLATED:
            if key in o and not self.is_bad(job.at(key)):
                self.check_templates(job, key, known_matrix, row_fields, suffix)
        headers = o.get("headers")
        if isinstance(headers, dict):
            for name, value in headers.items():
                if not _HEADER_NAME.match(name):
                    self.error((*job.at("headers"), name), f"'{name}' is not a valid HTTP header name", at_key=True)
                elif isinstance(value, str):
                    self.check_header_text((*job.at("headers"), name), value)
        if isinstance(o.get("hint"), str):
            self.check_header_text(job.at("hint"), o["hint"])
        if isinstance(o.get("arguments"), dict) and not self.is_bad(job.at("arguments")):
            self.check_files(o["arguments"], job.at("arguments"))
        self.check_dataset(job, row_fields, suffix)
        if isinstance(o.get("expect"), list) and not self.is_bad(job.at("expect")):
            for i, check in enumerate(o["expect"]):
                where = (*job.at("expect"), i)
                if not self.is_bad(where):
                    for msg in expect.check_problems(check, templates=True):
                        self.error(_check_value_path(where, check, msg), msg)

    def local_problem(self, endpoint: str, job: JobSource) -> str | None:
        """`target: local` is the embedded server: an endpoint it does not serve would make every
        request of the job a 404 record."""
        if not isinstance(self.located.data, dict) or self.located.data.get("target") != "local":
            return None
        app = "/".join(endpoint.strip("/").split("/")[:2])
        if app in LOCAL_APPS:
            return None
        return (f"target: local is the embedded server, which serves {', '.join(LOCAL_APPS)}; job '{job.name}' "
                f"calls {endpoint}: use one of those, or target: fal (with FAL_KEY) for fal's endpoints")

    def check_header_text(self, where: tuple[Any, ...], value: str) -> None:
        """A header's (or the runner hint's) literal text: HTTP carries ASCII without control
        characters, so anything else would make every request of the job an input error. The
        value is not quoted: it may hold a secret."""
        if HEADER_CONTROL.search(value):
            self.error(where, "a line break or another control character, which an HTTP header cannot carry")
        elif not value.isascii():
            self.error(where, "non-ASCII text, which an HTTP header cannot carry (httpx and fal's ingress "
                              "reject it); percent-encode it or send it as an argument")

    def check_exclude(self, job: JobSource, matrix: dict[str, Any]) -> None:
        exclude = job.options.get("exclude")
        if not isinstance(exclude, list):
            return
        for i, entry in enumerate(exclude):
            if not isinstance(entry, dict):
                continue
            for key in entry:
                if key not in matrix:
                    head = f"exclude key '{key}' is not in the matrix"
                    self.error(
                        (*job.at("exclude"), i, key), _not_in_matrix(head, key, list(matrix), job.name), at_key=True
                    )

    def check_constraints(self, job: JobSource, matrix: dict[str, Any]) -> None:
        if "constraints" not in job.options:
            return
        base = job.at("constraints")
        for rel, message, at_key in constraints.problems(job.options["constraints"], matrix, job.name):
            if not self.is_bad((*base, *rel)):
                self.error((*base, *rel), message, at_key=at_key)

    def check_templates(
        self, job: JobSource, key: str, known_matrix: list[str], row_fields: dict[str, str], suffix: str
    ) -> None:
        base = job.at(key)
        _, refs, errors = compile_value(job.options[key])
        for rel, message in errors:
            self.error((*base, *rel), message + suffix if base[0] == "defaults" else message)
        for rel, ref in refs:
            where = (*base, *rel)
            msg = self._ref_problem(ref, key, known_matrix, job)
            if msg:
                self.error(where, msg + (suffix if base[0] == "defaults" else ""))
            elif ref.namespace == "row" and ref.name:  # `${{ row }}` (the whole row) needs no field
                row_fields.setdefault(ref.name, json_path(where))
            elif ref.namespace == "env" and ref.name not in os.environ:
                self._unset_env(where, ref, job, suffix if base[0] == "defaults" else "")

    def _unset_env(self, where: PathKey, ref: Ref, job: JobSource, suffix: str) -> None:
        message = (
            f"{ref.text()}: environment variable {ref.name} is not set; `batchrun run` stops before "
            f"sending anything unless it is set there{suffix}"
        )
        p = self.located.problem(where, message, severity="warning")
        self.problems.append(UnsetEnv(p.file, p.line, p.col, p.path, p.message, p.severity, ref.name, job.name))

    def _ref_problem(self, ref: Ref, key: str, known_matrix: list[str], job: JobSource) -> str | None:
        if ref.namespace == "env" and key in ("path", "hint"):
            return (f"{ref.text()}: env templates are allowed in arguments and headers only "
                    "(they are resolved at send time)")
        if ref.namespace == "env" and key == "expect":
            return (
                f"{ref.text()}: env templates are not allowed in expect: an expected value is shown in "
                "failure messages and stored in records, so a secret would leak"
            )
        if ref.namespace == "matrix" and ref.name not in known_matrix:
            return _not_in_matrix(f"unknown matrix key '{ref.name}' in {ref.text()}", ref.name, known_matrix, job.name)
        if ref.namespace == "row" and "dataset" not in job.options:
            return f"{ref.text()} needs a dataset, but job '{job.name}' has none"
        return None

    def check_files(self, value: Any, path: PathKey) -> None:
        """Static `{$file: path}` objects must name an existing file (templated paths: at plan time)."""
        if isinstance(value, dict):
            if "$file" in value:
                target = value["$file"]
                if len(value) != 1:
                    self.error(path, "a {$file: path} object takes only the $file key")
                elif not isinstance(target, str):
                    self.error((*path, "$file"), f"$file must be a path string, got {type(target).__name__}")
                elif "${{" not in target:
                    full = os.path.normpath(os.path.join(os.path.abspath(self.spec_dir), target))
                    if os.path.isdir(full):
                        self.error((*path, "$file"), f"{target} is a folder, not a file (looked at {full})")
                    elif not os.path.isfile(full):
                        self.error((*path, "$file"), f"file not found: {target} (looked for {full})")
                return
            for k, v in value.items():
                self.check_files(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.check_files(v, (*path, i))

    def check_dataset(self, job: JobSource, fields: dict[str, str], suffix: str) -> None:
        source = job.options.get("dataset")
        where = base = job.at("dataset")
        if source is None or self.is_bad(where):
            return
        types: dict[str, str] = {}
        if isinstance(source, dict) and "files" in source:  # {files: GLOB}; the schema checked its shape
            self.datasets[job.index] = self._file_rows(source["files"], (*where, "files"), fields)
            return
        if isinstance(source, dict):  # {path, types}; the schema checked its shape
            raw_types = source.get("types")
            types = {k: v for k, v in raw_types.items() if v in TYPES} if isinstance(raw_types, dict) else {}
            source, where = source.get("path"), (*where, "path")
        if isinstance(source, list):
            report = dataset.Report()
            dataset.check_inline(self.located, where, fields, report)
        elif isinstance(source, str):
            full = Path(os.path.normpath(os.path.join(os.path.abspath(self.spec_dir), source)))
            if not full.exists():  # said at the spec's own key, with where we looked
                self.error(where, f"dataset file not found: {source} (looked for {full})")
                return
            # Rows that differ in the fields whole arguments copy make distinct requests (see
            # plan.checks.distinct_by_construction); the check's read finds out for free.
            arguments = job.options.get("arguments")
            distinct_on = tuple(sorted(whole_refs(arguments, "row"))) if isinstance(arguments, dict) else ()
            # Jobs of a sweep often share one file: it is read once per set of fields used, and
            # its problems (located in the file itself) are said once.
            key = (str(full), tuple(sorted(fields)), tuple(sorted(types.items())))
            seen = self._datasets_checked.get(key)
            if seen is not None and (seen[0] == distinct_on or not distinct_on):
                # The same rows and problems; only what the rows were compared on may differ.
                self.datasets[job.index] = (
                    seen[1] if seen[0] == distinct_on else dataclasses.replace(seen[1], distinct=False)
                )
                return
            label = os.path.normpath(os.path.join(os.path.dirname(self.located.file), source))
            report = dataset.check(full, label, fields, distinct_on, types)
            if seen is not None:  # read again only to compare rows on other fields: problems were said
                self.datasets[job.index] = report
                return
            self._datasets_checked[key] = (distinct_on, report)
            if report.columns:
                self._unknown_columns(types, report, (*base, "types"), source)
        else:
            return
        self.datasets[job.index] = report
        self.problems.extend(report.problems)
        if report.more:
            first = report.problems[-1]
            self.problems.append(
                dataclasses.replace(first, message=f"... and {report.more} more problems in this dataset")
            )

    def _file_rows(self, pattern: str, where: PathKey, fields: dict[str, str]) -> dataset.Report:
        report = dataset.Report(rows=len(dataset.file_rows(self.spec_dir, pattern)))
        report.columns = dict.fromkeys(dataset.FILE_FIELDS)
        if not report.rows:
            full = os.path.normpath(os.path.join(os.path.abspath(self.spec_dir), pattern))
            self.error(where, f"no file matches {pattern!r} (looked for {full})")
        for name, used_at in fields.items():
            if name not in dataset.FILE_FIELDS:
                self.error(where, f"a files dataset's rows have path, name and stem, not '{name}' (used by {used_at})")
        return report

    def _unknown_columns(self, types: dict[str, str], report: dataset.Report, where: PathKey, source: str) -> None:
        """A `types` name that no row has converts nothing: most likely a typo of a real column."""
        columns = list(report.columns)
        for name in types:
            if name not in report.columns:
                close = difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else "columns: " + ", ".join(columns[:10])
                more = f" (and {len(columns) - 10} more)" if not close and len(columns) > 10 else ""
                self.error((*where, name), f"no column '{name}' in {source}; {hint}{more}", at_key=True)

    def check_pricing(self, pricing: Any) -> None:
        if not isinstance(pricing, dict) or self.is_bad(("pricing",)):
            return
        for endpoint, price in pricing.items():
            msg = endpoint_problem(endpoint)
            if msg:
                self.error(("pricing", endpoint), msg, at_key=True)
            if isinstance(price, dict) and "per_request" in price and ("per_unit" in price or "unit_argument" in price):
                self.error(("pricing", endpoint), "give either per_request or per_unit with unit_argument, not both")


def _not_in_matrix(head: str, key: str, matrix_keys: list[str], job: str) -> str:
    """`head` (which key is unknown), then why: the job has no matrix, or the key it likely meant."""
    if not matrix_keys:
        return f"{head}: job '{job}' has no matrix"
    close = difflib.get_close_matches(key, matrix_keys, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"matrix keys: {', '.join(matrix_keys)}"
    return f"{head}; {hint}"


def _check_value_path(where: PathKey, check: Any, message: str) -> PathKey:
    """Point an expectation problem at the value it is about when the message names one."""
    prefixes = {
        "invalid regular expression": "matches",
        "matches must": "matches",
        "invalid JSON Schema": "schema",
        "schema must": "schema",
        "exists must": "exists",
        "latency_s must": "latency_s",
        "path must": "path",
        "min must": "min",
        "max must": "max",
    }
    for prefix, key in prefixes.items():
        if message.startswith(prefix) and isinstance(check, dict) and key in check:
            return (*where, key)
    return where


def _is_num(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
