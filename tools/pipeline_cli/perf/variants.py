"""The ways of making renditions that `pipeline bench` compares.

project  image_pipeline.imaging.make_renditions, as the handler calls it;
naive    exif_transpose + convert("RGB") + LANCZOS resize to each size from the full image;
floor    decode only: JPEG at the DCT scale the thumbnailer picks for the largest rendition, other
         formats in full.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache

from PIL import Image, ImageFile, ImageOps

from image_pipeline.imaging import RenditionSpec, fit_within, make_renditions, scale_jpeg_decode
from pipeline_cli.imagefactory import encode

VARIANTS = ("project", "naive", "floor")


@cache
def _heif_opener() -> None:
    from pi_heif import register_heif_opener

    register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


def open_any(data: bytes) -> Image.Image:
    """Image.open for the baselines, HEIF included (the thumbnailer registers it only on demand)."""
    _heif_opener()
    return Image.open(io.BytesIO(data))


def _largest_first(spec: RenditionSpec) -> list[int]:
    return sorted(set(spec.sizes), reverse=True)


def naive_images(data: bytes, spec: RenditionSpec) -> list[Image.Image]:
    """What most samples do: transpose the full image, then resize it once per size."""
    with open_any(data) as opened:
        full = (ImageOps.exif_transpose(opened) or opened).convert("RGB")
    return [
        full.resize(fit_within(full.width, full.height, size), Image.Resampling.LANCZOS)
        for size in _largest_first(spec)
    ]


def run_project(data: bytes, spec: RenditionSpec) -> None:
    make_renditions(data, spec)


def run_naive(data: bytes, spec: RenditionSpec) -> list[bytes]:
    return [encode(image, spec.format, quality=spec.quality) for image in naive_images(data, spec)]


def run_floor(data: bytes, spec: RenditionSpec) -> None:
    """Only the decode the largest rendition needs: no resize, no encode."""
    with open_any(data) as opened:
        if opened.format == "JPEG" and isinstance(opened, ImageFile.ImageFile):
            swapped = opened.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            width, height = (opened.height, opened.width) if swapped else opened.size
            target = fit_within(width, height, _largest_first(spec)[0])
            scale_jpeg_decode(opened, (target[1], target[0]) if swapped else target)
        opened.load()


RUNNERS: dict[str, Callable[[bytes, RenditionSpec], object]] = {
    "project": run_project,
    "naive": run_naive,
    "floor": run_floor,
}
