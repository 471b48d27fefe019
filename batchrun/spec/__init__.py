"""A spec file -> a validated, frozen Spec: located YAML, JSON Schema, semantic checks, the
`${{ }}` template language, datasets, expectations and result paths. Pure: no I/O beyond reading the
spec and its datasets.

Kept empty on purpose: importing a package must not load its heavy modules
(`batchrun --help` loads neither the client stack nor httpx)."""
