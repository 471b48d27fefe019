"""batchrun: run batches of model-inference requests against fal-style APIs from a YAML spec."""

from __future__ import annotations

__all__ = ["DISTRIBUTION", "__version__"]

# What pip installs this project as (PyPI's "batchrun" is another tool); imported as `batchrun`.
DISTRIBUTION = "batchrun-fal"


def __getattr__(name: str) -> str:
    # Computed lazily so the version cannot drift from the installed metadata.
    if name == "__version__":
        import importlib.metadata  # ~50 ms: only when asked, not at every start-up

        return importlib.metadata.version(DISTRIBUTION)
    raise AttributeError(f"module 'batchrun' has no attribute {name!r}")
