"""local/image: a stand-in for fal's text-to-image models, with real, deterministic PNGs.

The picture (wavy colour bands whose palette and geometry come from the prompt and seed) is a pure
function of (prompt, seed, index, width, height), all encoded in the file URL, so it is drawn
lazily when the URL is fetched and any server answers the same bytes. Drawing works on whole rows
(rotations plus a brightness translate table), which keeps a 1024x1024 image in the tens of ms.

`reencode: N` (1-16) answers the same picture as a lossy re-encode would: every channel value
lifted by N levels and a different zlib level, so the bytes (and pixels) differ while the look does
not. It lets tests and demos produce "visually the same" images for `batchrun diff`'s perceptual
comparison; a different seed is a visibly different picture.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import struct
import time
import zlib
from typing import Any

from batchrun.server.apps import Call
from batchrun.server.wire import Reply, dumps, model_error, model_error_item

PRESETS = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
DEFAULT_SIZE = "landscape_4_3"
MAX_SIDE = 4096
MAX_IMAGES = 4
MAX_REENCODE = 16


def prompt_digest(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


def image_path(digest: str, seed: int, index: int, width: int, height: int, reencode: int = 0) -> str:
    variant = f"~{reencode}" if reencode else ""
    return f"/files/images/{digest}/{seed}/{index}/{width}x{height}{variant}.png"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@functools.lru_cache(maxsize=16)  # bounded: at most 16 decoded pictures (~50 MB worst case) kept
def render_png(digest: str, seed: int, index: int, width: int, height: int, reencode: int = 0) -> bytes:
    rnd = random.Random(f"{digest}:{seed}:{index}")
    palette = [(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)) for _ in range(4)]
    freq = rnd.uniform(1.0, 4.0)
    phase = rnd.uniform(0, math.tau)
    row = bytearray(width * 3)
    for x in range(width):
        t = (math.sin(math.tau * freq * x / width + phase) + 1) / 2
        a, b = palette[int(x * 4 / width) % 4], palette[(int(x * 4 / width) + 1) % 4]
        row[3 * x : 3 * x + 3] = bytes(int(a[c] * (1 - t) + b[c] * t) for c in range(3))
    base = bytes(row)
    bands = 24
    tables = [bytes(min(255, int(v * (0.55 + 0.45 * k / (bands - 1))) + reencode) for v in range(256))
              for k in range(bands)]
    slope = rnd.uniform(0.2, 1.5)
    wave = rnd.uniform(0.05, 0.25) * width
    wave_freq = rnd.uniform(1.0, 3.0)
    lines = []
    for y in range(height):
        shift = int(slope * y + wave * math.sin(math.tau * wave_freq * y / height)) % width * 3
        band = int((math.cos(math.tau * y / height * 2 + phase) + 1) / 2 * (bands - 1))
        lines.append(b"\x00" + (base[shift:] + base[:shift]).translate(tables[band]))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"".join(lines), 6 if not reencode else 1 + reencode % 5)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _size(value: Any) -> tuple[int, int] | Reply:
    if isinstance(value, str):
        if value in PRESETS:
            return PRESETS[value]
        return model_error([model_error_item(["body", "image_size"], f"Input should be one of: {', '.join(PRESETS)}",
                                             "one_of", ctx={"expected": list(PRESETS)}, input_=value)])
    if isinstance(value, dict):
        sides = []
        for name in ("width", "height"):
            side = value.get(name)
            if isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= MAX_SIDE:
                return model_error([model_error_item(["body", "image_size", name],
                                                     f"Input should be an integer between 1 and {MAX_SIDE}",
                                                     "less_than_equal", ctx={"le": MAX_SIDE}, input_=side)])
            sides.append(side)
        return sides[0], sides[1]
    return model_error([model_error_item(["body", "image_size"], "Input should be a preset name or {width, height}",
                                         "one_of", ctx={"expected": list(PRESETS)}, input_=value)])


async def image(call: Call) -> Reply:
    """fal image-model shape: prompt, seed, image_size, num_images -> images[] with served PNG URLs."""
    args = call.arguments
    started = time.perf_counter()
    prompt = args.get("prompt")
    if not isinstance(prompt, str):
        msg, kind = (
            ("Field required", "missing") if prompt is None else ("Input should be a valid string", "string_type")
        )
        return model_error([model_error_item(["body", "prompt"], msg, kind, input_=prompt)])
    size = _size(args.get("image_size", DEFAULT_SIZE))
    if isinstance(size, Reply):
        return size
    count = args.get("num_images", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_IMAGES:
        return model_error(
            [
                model_error_item(
                    ["body", "num_images"],
                    f"Input should be less than or equal to {MAX_IMAGES}",
                    "less_than_equal",
                    ctx={"le": MAX_IMAGES, "ge": 1},
                    input_=count,
                )
            ]
        )
    seed = args.get("seed")
    if seed is None:
        seed = zlib.crc32(prompt.encode()) & 0x7FFFFFFF  # deterministic default (fal picks a random one)
    elif isinstance(seed, bool) or not isinstance(seed, int):
        return model_error(
            [model_error_item(["body", "seed"], "Input should be a valid integer", "int_type", input_=seed)]
        )
    reencode = args.get("reencode", 0)
    if isinstance(reencode, bool) or not isinstance(reencode, int) or not 0 <= reencode <= MAX_REENCODE:
        message = f"Input should be an integer from 0 to {MAX_REENCODE}"
        return model_error([model_error_item(["body", "reencode"], message, "less_than_equal",
                                             ctx={"le": MAX_REENCODE, "ge": 0}, input_=reencode)])
    delay = args.get("delay")
    if isinstance(delay, (int, float)) and not isinstance(delay, bool) and delay > 0:
        import asyncio

        await asyncio.sleep(delay)
    width, height = size
    digest = prompt_digest(prompt)
    call.log(f"generating {count} image(s) of {width}x{height} for seed {seed}")
    # A URL stays a pure function of the picture; a lifetime adds its deadline (unix ms), after
    # which the file is gone (batchrun.server.app.files_route).
    expiry = "" if call.media_lifetime is None else f"?expires={int((time.time() + call.media_lifetime) * 1000)}"
    images = [
        {
            "url": call.origin + image_path(digest, seed, i, width, height, reencode) + expiry,
            "width": width,
            "height": height,
            "content_type": "image/png",
        }
        for i in range(count)
    ]
    result = {
        "images": images,
        "seed": seed,
        "prompt": prompt,
        "timings": {"inference": round(time.perf_counter() - started, 6)},
        "has_nsfw_concepts": [False] * count,
    }
    return Reply(200, dumps(result))


def parse_image_path(rest: str) -> tuple[str, int, int, int, int, int] | None:
    """Inverse of image_path (without the /files/images/ prefix): (digest, seed, index, width, height,
    reencode); None if it is not one of ours."""
    parts = rest.split("/")
    if len(parts) != 4 or not parts[3].endswith(".png"):
        return None
    digest, seed_s, index_s, name = parts[0], parts[1], parts[2], parts[3][:-4]
    size_s, tilde, reencode_s = name.partition("~")
    w_s, _, h_s = size_s.partition("x")
    try:
        seed, index, width, height = int(seed_s), int(index_s), int(w_s), int(h_s)
        reencode = int(reencode_s) if tilde else 0
    except ValueError:
        return None
    if len(digest) != 16 or not 0 <= index < MAX_IMAGES or not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        return None
    if tilde and not 1 <= reencode <= MAX_REENCODE:
        return None
    return digest, seed, index, width, height, reencode
