"""Reading outputs back for people: report, diff, their text/markdown/json/JUnit/HTML renderings.

Kept empty on purpose: importing a package must not load its heavy modules
(`batchrun --help` loads neither the client stack nor httpx)."""
