"""The validated spec as frozen dataclasses.

Raw dicts never leave the loader: everything after it (planner, executor, report) works on these
types. Loading and validation (`load_spec`) live in `batchrun.load`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Literal

from batchrun.spec.constraints import Constraint

# Default bound on an answer's body, decompressed (a job's `max_answer_bytes` changes it). fal answers
# are JSON naming media by URL; 64 MiB still fits a few sync_mode images as data URIs.
MAX_ANSWER_BYTES = 64 * 1024 * 1024

Mode = Literal["run", "subscribe"]
Priority = Literal["normal", "low"]


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Where requests go. kind "local" starts an embedded server; its URLs are known only then."""

    kind: Literal["fal", "local", "custom"] = "fal"
    run_url: str | None = None
    queue_url: str | None = None
    ca_bundle: str | None = None  # PEM file of the CAs trusted for HTTPS (else certifi / SSL_CERT_FILE)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Client-side retries. Delay before retry n (1-based) is
    min(initial_delay * 2**(n-1), max_delay) * U(0.5, 1.5), clamped to max_delay (fal-client's rule),
    or the server's Retry-After when it sends one."""

    max_attempts: int = 10
    initial_delay: float = 0.1
    max_delay: float = 10.0
    # Platform 5xx carrying x-fal-request-id (runner_* errors): fal-client does not retry them.
    server_errors: bool = False
    # A queue submit whose body was sent but whose answer was lost may have been accepted (and billed).
    unknown_outcome: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: float


CacheScope = Literal["project", "user"]


@dataclasses.dataclass(frozen=True, slots=True)
class CachePolicy:
    """`cache: true` or `cache: {ttl, scope}` (batchrun.output.resultcache holds the cache itself).

    ttl_s: the oldest cached result (seconds) a run may reuse; None: any age. scope: which cache
    file, the project's (under the working directory) or the user's."""

    ttl_s: float | None = None
    scope: CacheScope = "project"


# The apps `target: local` serves (batchrun.server.apps.builtin_apps; a test keeps the two equal).
LOCAL_APPS = ("local/echo", "local/fail", "local/image", "local/sleep")
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}  # `12h`, `7d`


def duration_seconds(value: Any) -> Any:
    """`<n>s/m/h/d/w` as seconds (a float); any other value as it is (the schema checked it)."""
    if isinstance(value, str) and value[-1:] in DURATION_UNITS:
        try:
            return float(value[:-1]) * DURATION_UNITS[value[-1]]
        except ValueError:
            return value
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class MediaLifetime:
    """`media_lifetime:`: how long fal keeps the media a request generates (its
    X-Fal-Object-Lifecycle-Preference, docs/fal-protocol.md §9.5). seconds None: `never` expires."""

    seconds: int | None

    @classmethod
    def of(cls, value: Any) -> MediaLifetime | None:
        """`media_lifetime:` as the schema allows it: seconds, `<n>s/m/h/d/w` or `never`; None when
        unset or not one of those (the schema reports it)."""
        if value == "never":
            return cls(None)
        value = duration_seconds(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            return None
        # fal wants whole seconds, and reads 0 as "never expires" (fal-client sends 60 for
        # "immediate"), so a fraction rounds up and nothing rounds down to 0.
        return cls(max(1, math.ceil(value)))

    def __str__(self) -> str:
        if self.seconds is None:
            return "never"
        # the largest unit that divides it; seconds always do
        size, unit = max((size, unit) for unit, size in DURATION_UNITS.items() if self.seconds % size == 0)
        return f"{self.seconds // int(size)}{unit}"

    def header(self) -> str:
        return json.dumps({"expiration_duration_seconds": self.seconds}, separators=(",", ":"))


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """`sample: {n, seed}`: the n requests of the job whose sha256(seed, id) ranks lowest."""

    n: int
    seed: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One job with `defaults` already applied. Templates in arguments are still unresolved."""

    name: str
    endpoint: str
    path: str = ""
    mode: Mode = "subscribe"
    # A string is a whole-argument template, `${{ row }}` or `${{ row.COLUMN }}` (each row's object).
    arguments: dict[str, Any] | str = dataclasses.field(default_factory=dict)
    matrix: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    include: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    exclude: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # `strategy:` T of a T-way covering design over the matrix (pairwise: 2); None: the full product.
    strategy: int | None = None
    constraints: list[Constraint] = dataclasses.field(default_factory=list)
    sample: Sample | None = None
    dataset: Path | list[dict[str, Any]] | None = None
    # `dataset: {path, types}`: column name -> int | float | bool | json (batchrun.spec.dataset_types).
    dataset_types: dict[str, str] = dataclasses.field(default_factory=dict)
    repeat: int = 1
    concurrency: int | None = None
    timeout: float | None = None
    start_timeout: float | None = None
    client_timeout: float | None = None
    max_answer_bytes: int = MAX_ANSWER_BYTES
    hint: str | None = None
    priority: Priority | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    with_logs: bool = False
    upload: bool | None = None  # $file inputs: True all to storage, False all as data URIs, None by size
    fallbacks: bool | None = None  # False: no reroute to an alternative endpoint; None: fal's default (on)
    media_lifetime: MediaLifetime | None = None  # None: fal's default retention
    retries: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    rate_limit: RateLimit | None = None
    # Regression toolkit (expectations, artifact download); filled by the loader when present.
    expect: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # The endpoint's pinned output schema (JSON Schema), when a check is `{schema: pinned}`.
    pinned_output: dict[str, Any] | None = None
    download: bool = False
    cache: CachePolicy | None = None  # None: the result cache is off for this job (the default)


@dataclasses.dataclass(frozen=True, slots=True)
class Spec:
    version: int
    name: str
    jobs: list[Job]
    source: Path  # the spec file, for located errors and relative paths
    description: str | None = None
    target: Target = dataclasses.field(default_factory=Target)
    output: Path | None = None  # None: outputs/<name>.jsonl relative to the working directory
    concurrency: int = 16
    max_requests: int = 10_000
    rate_limit: RateLimit | None = None
    # Regression toolkit sections, kept raw-but-validated until their issue gives them types.
    gates: dict[str, Any] = dataclasses.field(default_factory=dict)
    budget: dict[str, Any] = dataclasses.field(default_factory=dict)
    pricing: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.source.parent

    def output_path(self) -> Path:
        return self.output if self.output is not None else Path("outputs") / f"{self.name}.jsonl"
