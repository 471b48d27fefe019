"""The fal protocol (run and queue): the only code that speaks HTTP to an inference API.

Kept empty on purpose: importing a package must not load its heavy modules
(`batchrun --help` loads neither the client stack nor httpx)."""
