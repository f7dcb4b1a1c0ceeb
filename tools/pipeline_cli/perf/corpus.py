"""The generated inputs both commands measure on (cached: later runs reuse the files)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline_cli.imagefactory import encode, make_animated_gif, make_heic, make_jpeg, make_png, scene
from pipeline_cli.project import PROJECT_ROOT

BASELINE = "jpeg-12mp"
LARGEST = "jpeg-48mp"
DEFAULT_CORPUS = PROJECT_ROOT / "build" / "bench" / "corpus"


def photo(width: int, height: int) -> Image.Image:
    """A displayed "photo": the test scene with texture and sensor-like grain, so the JPEG is as
    hard to decode as a camera's and resampling has detail to get wrong."""
    from PIL import ImageDraw, ImageFilter

    image = scene(width, height)
    draw = ImageDraw.Draw(image)
    for x in range(0, width, max(8, width // 150)):  # fine diagonal texture
        draw.line((x, 0, x + height // 3, height), fill=(235, 225, 200), width=max(1, width // 1000))
    # A camera's optics and demosaicing band-limit the image (no detail at the pixel pitch);
    # the sensor adds grain on top.
    image = image.filter(ImageFilter.GaussianBlur(1.0))
    grain = Image.effect_noise((width, height), 32).convert("RGB")
    return Image.blend(image, grain, 0.06)


def _jpeg(width: int, height: int, **options: Any) -> bytes:
    return make_jpeg(width, height, displayed=photo(width, height), **options)


def _tiff_16bit(width: int, height: int) -> bytes:
    grey = photo(width, height).convert("L").point(lambda value: value * 257, mode="I")
    return encode(grey.convert("I;16"), "TIFF")


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], bytes]
    photographic: bool  # the PSNR target applies


CORPUS = (
    Case("jpeg-1mp", lambda: _jpeg(1152, 864), True),
    Case(BASELINE, lambda: _jpeg(4000, 3000), True),
    Case("jpeg-12mp-progressive", lambda: _jpeg(4000, 3000, progressive=True), True),
    Case("jpeg-12mp-exif6", lambda: _jpeg(4000, 3000, orientation=6), True),
    Case("jpeg-24mp", lambda: _jpeg(6000, 4000), True),
    Case(LARGEST, lambda: _jpeg(8000, 6000), True),
    Case("jpeg-cmyk-12mp", lambda: _jpeg(4000, 3000, mode="CMYK"), False),
    Case("png-rgba-3mp", lambda: make_png(2000, 1500, mode="RGBA", displayed=photo(2000, 1500)), False),
    Case("webp-6mp", lambda: encode(photo(3000, 2000), "WEBP", quality=90), True),
    Case(
        "gif-animated",
        lambda: make_animated_gif(800, 600, [(40 * i % 255, 120, 255 - 30 * i % 255) for i in range(12)]),
        False,
    ),
    Case("tiff-16bit-3mp", lambda: _tiff_16bit(2000, 1500), False),
    # What phones upload: HEVC in HEIF (iPhone, stored sideways) and AV1 in AVIF; neither decodes at a reduced scale.
    Case("heic-12mp", lambda: make_heic(4032, 3024, orientation=6, displayed=photo(4032, 3024), quality=90), True),
    Case("avif-12mp", lambda: encode(photo(4000, 3000), "AVIF", quality=90), True),
)
OUTPUT_FORMATS = ("JPEG", "WEBP", "AVIF")  # RenditionFormat's choices, timed and weighed on the baseline
QUICK = ("jpeg-1mp", BASELINE)


def corpus(directory: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """Generate each input once; later runs (and `pipeline tune`) reuse the files."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in CORPUS:
        if case.name in names:
            path = directory / case.name
            if not path.exists():
                partial = path.with_suffix(f".{os.getpid()}.partial")
                partial.write_bytes(case.make())
                partial.replace(path)  # atomic: a concurrent run never reads half a file
            paths[case.name] = path
    unknown = set(names) - set(paths)
    if unknown:
        raise ValueError(f"not in the corpus: {', '.join(sorted(unknown))}")
    return paths
