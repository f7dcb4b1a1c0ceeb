"""Images made by code, for tests, the demo and the benchmarks (no binary fixtures in the repo).

Content is gradients and shapes, not noise, so encoded sizes are like real photos'. A red
square marks the top-left corner of the DISPLAYED image, so orientation handling can be checked.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw

MARK = (255, 0, 0)
EXIF_ORIENTATION = 0x0112
# How a displayed image must be stored so that applying `orientation` displays it upright.
_STORE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def scene(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A displayed image: a diagonal gradient, some shapes, and the red corner mark."""
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient.rotate(90)))
    draw = ImageDraw.Draw(image)
    for index in range(1, 6):
        x, y = width * index // 7, height * index // 9
        draw.ellipse((x, y, x + width // 8, y + height // 8), fill=(40 * index, 180, 255 - 40 * index))
    draw.rectangle((0, 0, max(0, width // 5 - 1), max(0, height // 5 - 1)), fill=MARK)
    return image if mode == "RGB" else image.convert(mode)


def stored_for_orientation(displayed: Image.Image, orientation: int) -> Image.Image:
    transpose = _STORE_FOR_ORIENTATION.get(orientation)
    return displayed.transpose(transpose) if transpose is not None else displayed


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def make_jpeg(
    width: int,
    height: int,
    *,
    orientation: int = 1,
    progressive: bool = False,
    mode: str = "RGB",
    quality: int = 90,
    displayed: Image.Image | None = None,
) -> bytes:
    """A JPEG that DISPLAYS as width x height with the mark top-left (or `displayed`, e.g. the
    benchmark's photo-like picture), stored for `orientation`."""
    stored = stored_for_orientation(scene(width, height) if displayed is None else displayed, orientation)
    if mode != "RGB":
        stored = stored.convert(mode)
    exif = Image.Exif()
    if orientation != 1:
        exif[EXIF_ORIENTATION] = orientation
    return encode(stored, "JPEG", quality=quality, progressive=progressive, exif=exif.tobytes())


def make_png(width: int, height: int, *, mode: str = "RGB", displayed: Image.Image | None = None) -> bytes:
    image = scene(width, height) if displayed is None else displayed
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize((width, height)))
    elif mode != "RGB":
        image = image.convert(mode)
    return encode(image, "PNG")


def make_heic(
    width: int,
    height: int,
    *,
    orientation: int = 1,
    displayed: Image.Image | None = None,
    quality: int = 80,
    icc_profile: bytes | None = None,
) -> bytes:
    """An iPhone-like HEIC that DISPLAYS as width x height with the mark top-left: HEVC pictures
    stored for `orientation`, which libheif writes as irot/imir transforms (and EXIF), optionally a
    colour profile. Encoding needs pillow-heif (a dev dependency; the layer's pi-heif only decodes)."""
    import pillow_heif

    stored = stored_for_orientation(scene(width, height) if displayed is None else displayed, orientation)
    heif = pillow_heif.from_pillow(stored)  # before the EXIF is set: from_pillow would apply it
    if orientation != 1:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        heif.info["exif"] = exif.tobytes()
    if icc_profile:
        heif.info["icc_profile"] = icc_profile
    buffer = io.BytesIO()
    heif.save(buffer, quality=quality, enc_params={"preset": "ultrafast"})  # x265's default takes ~6x longer
    return buffer.getvalue()


def make_heic_burst(colours: list[tuple[int, int, int]], primary: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A HEIF with one image per colour (a burst), `primary` the one viewers show."""
    import pillow_heif

    heif = pillow_heif.from_pillow(Image.new("RGB", size, colours[0]))
    for colour in colours[1:]:
        heif.add_from_pillow(Image.new("RGB", size, colour))
    buffer = io.BytesIO()
    heif.save(buffer, primary_index=primary)
    return buffer.getvalue()


def make_animated_gif(width: int, height: int, colours: list[tuple[int, int, int]]) -> bytes:
    frames = [Image.new("RGB", (width, height), colour) for colour in colours]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def sample_images() -> dict[str, bytes]:
    """Named, varied samples for the demo: formats, modes, orientations and awkward names."""
    transparent = scene(640, 480)
    transparent.putalpha(Image.linear_gradient("L").resize((640, 480)))
    scan = Image.linear_gradient("L").resize((1200, 900)).convert("I").point(lambda value: value * 257)
    return {
        "landscape-12mp.jpg": make_jpeg(4000, 3000, orientation=6),
        "panorama 8000x1000.jpg": make_jpeg(8000, 1000, progressive=True),
        "transparent-logo.png": encode(transparent, "PNG"),
        "animated.gif": make_animated_gif(320, 240, [(200, 30, 30), (30, 200, 30), (30, 30, 200)]),
        "cmyk-print.jpg": make_jpeg(1600, 1200, mode="CMYK"),
        "scan-16bit.tif": encode(scan.convert("I;16"), "TIFF"),
        "photo.webp": encode(scene(1280, 960), "WEBP", quality=85),
        "tiny-1x1.bmp": encode(Image.new("RGB", (1, 1), (10, 200, 90)), "BMP"),
        "iphone-portrait.heic": make_heic(1512, 2016, orientation=6),  # stored sideways, as iPhones do
        "animated.avif": _animated_avif(),
    }


def _animated_avif() -> bytes:
    frames = [scene(320, 240).rotate(angle) for angle in (0, 90, 180)]
    return encode(frames[0], "AVIF", save_all=True, append_images=frames[1:], duration=200, quality=70)
