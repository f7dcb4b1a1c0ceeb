"""How close renditions are to a careful reference: PSNR of the luma, per rendition."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PIL import Image, ImageOps

from image_pipeline.imaging import RenditionSpec, make_renditions, resample
from pipeline_cli.perf.peers import Runner
from pipeline_cli.perf.variants import naive_images, open_any, run_naive


def _to_rgb(image: Image.Image) -> Image.Image:
    """What a careful reference does with every mode: 16-bit scaled, alpha flattened on white."""
    if image.mode.startswith("I;16") or image.mode == "I":
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", image.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def reference(data: bytes, sizes: list[tuple[int, int]]) -> list[Image.Image]:
    """Full decode, oriented, flattened, one LANCZOS resize straight to each rendition's size."""
    with open_any(data) as opened:
        full = _to_rgb(ImageOps.exif_transpose(opened) or opened)
    return [full.resize(size, Image.Resampling.LANCZOS) for size in sizes]


def psnr(image: Image.Image, ref: Image.Image) -> float:
    """PSNR of the luma (Y'), as image codecs are compared; inf when identical."""
    from PIL import ImageChops

    difference = ImageChops.difference(_to_rgb(image).convert("L"), _to_rgb(ref).convert("L"))
    squared_error = sum(count * value**2 for value, count in enumerate(difference.histogram()))
    mse = squared_error / (difference.width * difference.height)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


@dataclass
class Scores:
    """Per variant, one value per rendition, largest first."""

    psnr_db: dict[str, list[float]]  # the method's pixels, before encoding
    psnr_delivered_db: dict[str, list[float]]  # the encoded files, decoded: what users get
    rendition_bytes: dict[str, list[int]]


def fidelity(data: bytes, spec: RenditionSpec, peers: Mapping[str, Runner] | None = None) -> Scores:
    """PSNR of each rendition: of the method's pixels, and of what is delivered (the peers' files
    too, each against the reference at the size that engine chose); and the files' sizes."""
    pixels = {
        "project": [image for _, image in resample(data, spec).images],
        "naive": naive_images(data, spec),
    }
    files = {
        "project": [r.body for r in make_renditions(data, spec).renditions],
        "naive": run_naive(data, spec),
        **{name: run(data, spec).files for name, run in (peers or {}).items()},
    }
    delivered = {variant: [Image.open(io.BytesIO(body)) for body in bodies] for variant, bodies in files.items()}
    refs = reference(data, [image.size for image in pixels["project"]])

    def scores(images: Sequence[Image.Image]) -> list[float]:
        sizes = [image.size for image in images]
        own = refs if sizes == [ref.size for ref in refs] else reference(data, sizes)
        return [psnr(image, ref) for image, ref in zip(images, own, strict=True)]

    return Scores(
        psnr_db={variant: scores(images) for variant, images in pixels.items()},
        psnr_delivered_db={variant: scores(images) for variant, images in delivered.items()},
        rendition_bytes={variant: [len(body) for body in bodies] for variant, bodies in files.items()},
    )
