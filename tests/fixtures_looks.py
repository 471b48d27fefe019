"""Two deployments of an image model for perceptual-diff tests: at base time, and after an update
that re-encodes one prompt's picture (other bytes, same look: the server's `reencode`) and redraws
another's from the next seed (which the expectation `seed equals 5` then catches).

Each is a user app for the embedded server (`ServerThread(apps={"me/draw": deployment(new=...)})`)
that draws with `local/image`'s renderer and answers `data:` URLs, which downloads decode: the
request ids are the same in both runs while the pictures differ."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from batchrun.server.image import prompt_digest, render_png

SPEC = """\
    version: 1
    name: looks
    defaults: {download: true, mode: run}
    jobs:
      - name: draw
        endpoint: me/draw
        arguments: {prompt: "${{ matrix.prompt }}", seed: 5}
        matrix: {prompt: [kept, reencoded, redrawn]}
        expect:
          - {path: seed, equals: 5}
"""

SIZE = (160, 120)


def deployment(*, new: bool) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The model as deployed at base time (`new=False`) or after the update."""

    def draw(arguments: dict[str, Any]) -> dict[str, Any]:
        prompt, seed = arguments["prompt"], arguments["seed"]
        reencode = 4 if new and prompt == "reencoded" else 0
        if new and prompt == "redrawn":
            seed += 1
        png = render_png(prompt_digest(prompt), seed, 0, *SIZE, reencode)
        url = "data:image/png;base64," + base64.b64encode(png).decode()
        return {"images": [{"url": url, "width": SIZE[0], "height": SIZE[1], "content_type": "image/png"}],
                "seed": seed, "prompt": prompt}

    return draw
