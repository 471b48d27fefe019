"""One `batchrun run`: the runner (composition root), the executor, in-flight state, stopping,
concurrency limits and progress.

Kept empty on purpose: importing a package must not load its heavy modules
(`batchrun --help` loads neither the client stack nor httpx)."""
