"""The difference image of two downloaded pictures, for `diff --html`'s third column.

Black where the pictures agree, brighter where they differ: the per-channel absolute difference,
amplified `GAIN` times so a re-encode's few levels show as a faint haze and a redrawn picture as a
bright one. The new picture is scaled to the base's size first (a resize is then no difference of
its own), and the result is shrunk to at most `MAX_SIDE` pixels and inlined as a `data:` URI, so the
page stays one self-contained file.

Pillow is the optional `images` extra, imported here only when a page needs a difference image;
without it (or for bytes that do not decode) there is no difference image and the page says why.
"""

from __future__ import annotations

import base64
import io

__all__ = ["GAIN", "MAX_SIDE", "NO_PILLOW", "available", "difference_uri"]

GAIN = 4
MAX_SIDE = 384
NO_PILLOW = "no difference images: install the images extra (pip install 'batchrun-fal[images]')"


def available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def difference_uri(base: str, new: str) -> str | None:
    """A PNG `data:` URI of the amplified difference of two image files; None when either does not
    decode (or Pillow is missing)."""
    try:
        from PIL import Image, ImageChops
    except ImportError:
        return None
    try:
        with Image.open(base) as a_file, Image.open(new) as b_file:
            a = a_file.convert("RGB")
            b = b_file.convert("RGB")
        if b.size != a.size:
            b = b.resize(a.size)
        difference = ImageChops.difference(a, b).point(lambda v: min(255, v * GAIN))
        difference.thumbnail((MAX_SIDE, MAX_SIDE))
        out = io.BytesIO()
        difference.save(out, "PNG")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
