"""`python -m pipeline_cli.perf.pyvips_peer`: pyvips as a peer in `pipeline bench`, in its own process.

It speaks sharp_peer.mjs's protocol (one JSON request per line on stdin, one JSON answer per line
on stdout: "version", "load", "run"), so both libvips bindings are driven alike by
pipeline_cli.perf.peers. A process of its own keeps libvips (and its threads, which can hold up
an interpreter's exit) out of the bench's and the tests' processes.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("VIPS_CONCURRENCY", "1")  # read when libvips starts, i.e. on import

import pyvips  # after VIPS_CONCURRENCY

pyvips.concurrency_set(1)
pyvips.cache_set_max(0)  # libvips would otherwise reuse the previous repeat's result


def _thumbnail(data: bytes, size: int) -> Any:
    # thumbnail_buffer: shrink-on-load, EXIF orientation, CMYK/ICC to sRGB, never upscaled.
    return pyvips.Image.thumbnail_buffer(data, size, height=size, size="down")


def _save(image: Any, fmt: str, quality: int) -> bytes:
    if fmt == "jpeg":
        if image.hasalpha():
            image = image.flatten(background=[255] * (image.bands - 1))  # on white, like the thumbnailer
        return bytes(image.jpegsave_buffer(Q=quality, keep="none"))
    return bytes(image.webpsave_buffer(Q=quality, effort=4, keep="none"))


def per_size(data: bytes, sizes: list[int], fmt: str, quality: int) -> list[bytes]:
    """One decode-resize-encode pipeline per rendition, as image handlers call them."""
    return [_save(_thumbnail(data, size), fmt, quality) for size in sizes]


def cascade(data: bytes, sizes: list[int], fmt: str, quality: int) -> list[bytes]:
    """Decode once to the largest rendition, then resize that result for the smaller ones."""
    largest, *smaller = sizes
    decoded = _thumbnail(data, largest).copy_memory()  # libvips is lazy: render the decode once
    outputs = [_save(decoded, fmt, quality)]
    outputs += [_save(decoded.thumbnail_image(size, height=size, size="down"), fmt, quality) for size in smaller]
    return outputs


def answer(request: dict[str, Any], state: dict[str, bytes]) -> dict[str, Any]:
    if request["op"] == "version":
        libvips = ".".join(str(pyvips.version(part)) for part in range(3))
        return {"pyvips": pyvips.__version__, "vips": libvips}
    if request["op"] == "load":
        state["input"] = base64.b64decode(request["data"])
        return {"ok": True}
    if request["op"] == "run":
        run = cascade if request["way"] == "cascade" else per_size
        started = time.perf_counter()
        outputs = run(state["input"], request["sizes"], request["format"], request["quality"])
        ms = (time.perf_counter() - started) * 1000
        return {"ms": ms, "outputs": [base64.b64encode(output).decode("ascii") for output in outputs]}
    raise ValueError(f"unknown op {request['op']}")


def main() -> None:
    state: dict[str, bytes] = {}
    for line in sys.stdin:
        try:
            reply = answer(json.loads(line), state)
        except Exception as error:  # the parent reports it; this process keeps serving
            reply = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
