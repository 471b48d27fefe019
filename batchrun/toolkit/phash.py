"""Perceptual hashes of downloaded images, so `batchrun diff` can tell a re-encoded picture from a
changed one.

The hash is imagehash's pHash: the picture as 32x32 greyscale, its 2-D DCT, and one bit per
coefficient of the 8x8 lowest frequencies (above or below their median): 64 bits, written as 16
hex digits (`str(imagehash.phash(image))`, so any imagehash user gets the same string). Two
pictures' distance is the number of differing bits (0-64); a re-encode, a resize or a small
brightness shift stays within a few bits, a different picture is typically 25-40 bits away.

Pillow and imagehash are the optional `images` extra (`pip install 'batchrun-fal[images]'`), imported
only when a run downloads media. Measured on our 2-core machine (decode + hash, `python
bench/bench_phash.py`): 2.7 ms for a 512x512 PNG, 6 ms for 1024x768, 10 ms for 1024x1024, 36 ms
for 2048x2048, plus ~0.6 s once for the imports (numpy, scipy). Callers hash in a worker thread so
downloads stay concurrent.
"""

from __future__ import annotations

import io
from typing import Any

__all__ = ["MISSING_EXTRA", "PHASH_BITS", "PerceptualHasher", "is_image"]

PHASH_BITS = 64
MISSING_EXTRA = (
    "downloaded images get no perceptual hash (`phash`), so `batchrun diff` can only compare their bytes: "
    "install the images extra (pip install 'batchrun-fal[images]': Pillow and imagehash)"
)


def is_image(content_type: str | None, path: str | None) -> bool:
    """Whether an artifact is worth decoding as a picture (by content type, else file suffix)."""
    if content_type:
        return content_type.split(";")[0].strip().lower().startswith("image/")
    return bool(path) and str(path).lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tiff"))


class PerceptualHasher:
    """pHash of image bytes. `available` is false when the extra is not installed (then `message`
    says what to install and `phash` is never called by the toolkit)."""

    def __init__(self) -> None:
        try:
            import imagehash
            from PIL import Image
        except ImportError:
            self.available = False
            self._image: Any = None
            self._imagehash: Any = None
            return
        self.available = True
        self._image = Image
        self._imagehash = imagehash

    @property
    def message(self) -> str:
        return "" if self.available else MISSING_EXTRA

    def phash(self, data: bytes) -> str | None:
        """The 16-hex-digit pHash of an encoded picture; None when the bytes are no picture Pillow
        can decode (a truncated file, an SVG, a video mislabelled image/*)."""
        if not self.available:
            raise RuntimeError(MISSING_EXTRA)
        try:
            with self._image.open(io.BytesIO(data)) as picture:
                return str(self._imagehash.phash(picture))  # an animation's first frame
        # Pillow's own refusal of a picture too big to decode safely is an Exception subclass.
        except (OSError, ValueError, SyntaxError, self._image.DecompressionBombError):
            return None
