"""Fixtures that start the embedded server (filled in by the server issue)."""
