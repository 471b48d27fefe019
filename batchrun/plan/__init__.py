"""A Spec -> the lazy stream of planned requests with stable ids: matrix expansion, selection,
shards, plan-level checks and cost estimates.

Kept empty on purpose: importing a package must not load its heavy modules
(`batchrun --help` loads neither the client stack nor httpx)."""
