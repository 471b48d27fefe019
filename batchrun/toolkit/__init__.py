"""The regression toolkit the executor plugs in: expectations, artifacts, cost, budget, gates,
and `batchrun check`.

Kept empty on purpose: importing a package must not load its heavy modules
(`batchrun --help` loads neither the client stack nor httpx)."""
