"""The planner: Spec -> a lazy stream of PlannedRequest with stable ids. Pure; no network."""

from __future__ import annotations

import dataclasses
from typing import Any

from batchrun.spec import Job, Mode


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedRequest:
    id: str  # stable content hash of {job, endpoint, path, arguments, repeat}
    index: int  # position in the whole plan (0-based)
    job: Job
    arguments: dict[str, Any]  # matrix/row/repeat resolved; ${{ env.X }} left for send time
    matrix: dict[str, Any]
    row: int | None
    repeat: int

    @property
    def endpoint(self) -> str:
        return self.job.endpoint

    @property
    def path(self) -> str:
        return self.job.path

    @property
    def mode(self) -> Mode:
        return self.job.mode

    def to_json(self) -> dict[str, Any]:
        """The plan line as `batchrun plan` prints it (env templates stay unresolved)."""
        return {
            "id": self.id,
            "index": self.index,
            "job": self.job.name,
            "endpoint": self.endpoint,
            "path": self.path,
            "mode": self.mode,
            "arguments": self.arguments,
            "matrix": self.matrix,
            "row": self.row,
            "repeat": self.repeat,
        }
