"""httpx.Headers as text, the way httpx's own Mapping view decodes them, in one pass.

`httpx.Headers.encoding` decodes every name and value once just to pick an encoding (ASCII, then
UTF-8, else Latin-1), and each look-up decodes them again. Both sides of an exchange read all of a
message's headers once: the production transport (the request's, for aiohttp) and the Sender (the
answer's, looked up six or seven times).
"""

from __future__ import annotations

import httpx

__all__ = ["text_pairs"]


def text_pairs(headers: httpx.Headers) -> list[tuple[str, str]]:
    """(name, value) for each header in order: names lower-cased as bytes, as httpx.Headers does;
    a repeated name stays repeated."""
    raw = headers.raw
    try:  # httpx's own choice when every byte is ASCII (nearly always), without its extra pass
        return [(name.lower().decode("ascii"), value.decode("ascii")) for name, value in raw]
    except UnicodeDecodeError:
        encoding = headers.encoding
        return [(name.lower().decode(encoding), value.decode(encoding)) for name, value in raw]
