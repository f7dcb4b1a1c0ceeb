"""Where the thumbnailer's time goes on one input: each step of its path, timed on its own.

The steps are the ones imaging.make_renditions takes, in its order: open the header, decode
(JPEG: at the DCT scale imaging.scale_jpeg_decode picks), resize to the largest rendition, each
smaller rendition from the largest (imaging.LATER_REDUCING_GAP), then each encode. Every repeat runs all
the steps and the whole call once, so the shares are measured side by side; the steps add up to
the whole call, give or take the machine's noise. `pipeline bench` prints it for the baseline input.
"""

from __future__ import annotations

import io
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from PIL import Image

from image_pipeline.imaging import (
    LATER_REDUCING_GAP,
    REDUCING_GAP,
    RenditionSpec,
    fit_within,
    make_renditions,
    scale_jpeg_decode,
)

WHOLE_CALL = "make_renditions (the whole call)"


def _timed(samples: dict[str, list[float]], step: str, run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    started = time.perf_counter()
    result = run(*args, **kwargs)
    samples[step].append((time.perf_counter() - started) * 1000)
    return result


def _once(data: bytes, spec: RenditionSpec, samples: dict[str, list[float]]) -> None:
    image = _timed(samples, "open (header only)", Image.open, io.BytesIO(data))
    sizes = [fit_within(image.width, image.height, size) for size in sorted(set(spec.sizes), reverse=True)]
    box = None
    if image.format == "JPEG":
        box = scale_jpeg_decode(image, sizes[0])
    _timed(samples, f"decode {image.mode} {image.width}x{image.height}", image.load)
    current = _timed(
        samples,
        f"resize {image.width}x{image.height} -> {sizes[0][0]}x{sizes[0][1]}",
        lambda: image.resize(sizes[0], Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP),
    )
    renditions = [current]
    for size in sizes[1:]:
        step = f"resize {current.width}x{current.height} -> {size[0]}x{size[1]}"
        renditions.append(
            _timed(samples, step, current.resize, size, Image.Resampling.LANCZOS, reducing_gap=LATER_REDUCING_GAP)
        )
    for rendition in renditions:
        step = f"encode {rendition.width}x{rendition.height} {spec.format} q{spec.quality}"
        _timed(samples, step, rendition.save, io.BytesIO(), spec.format, quality=spec.quality)
    _timed(samples, WHOLE_CALL, make_renditions, data, spec)


def breakdown(data: bytes, spec: RenditionSpec, repeats: int) -> dict[str, float]:
    """Median ms per step, in the path's order, and of the whole call (WHOLE_CALL)."""
    _once(data, spec, defaultdict(list))  # warm: plugins and codecs
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):
        _once(data, spec, samples)
    return {step: statistics.median(values) for step, values in samples.items()}
