"""The JSONL output and its sidecars: records, the streaming reader, the writer and its lock,
the submit journal, resume, plan ids, the manifest, merge and run summaries.

Kept empty on purpose: importing a package must not load its heavy modules
(`batchrun --help` loads neither the client stack nor httpx)."""
