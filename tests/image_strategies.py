"""Hypothesis strategies for upload bodies: valid images of every supported format and mode,
the same images damaged, and arbitrary bytes."""

from __future__ import annotations

from hypothesis import strategies as st
from PIL import Image

from pipeline_cli.imagefactory import encode, scene, stored_for_orientation

IMAGE_MODES = ("RGB", "L", "RGBA", "P", "LA", "CMYK")
MODE_FORMATS = {
    "RGB": ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"),
    "L": ("JPEG", "PNG", "TIFF", "BMP"),
    "RGBA": ("PNG", "WEBP", "TIFF"),
    "P": ("PNG", "GIF", "BMP"),
    "LA": ("PNG",),
    "CMYK": ("JPEG", "TIFF"),
}
HEADER_BYTES = 64  # where dimensions, modes and chunk lengths live


@st.composite
def valid_images(draw: st.DrawFn, max_side: int = 300) -> tuple[bytes, int, int]:
    """(encoded image, displayed width, displayed height)."""
    width = draw(st.integers(min_value=1, max_value=max_side))
    height = draw(st.integers(min_value=1, max_value=max_side))
    mode = draw(st.sampled_from(IMAGE_MODES))
    fmt = draw(st.sampled_from(MODE_FORMATS[mode]))
    orientation = draw(st.integers(min_value=1, max_value=8))
    image = scene(width, height).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"exif": exif.tobytes()} if fmt in ("JPEG", "PNG", "WEBP") else {}
    # Stored so that applying the orientation displays width x height (formats without EXIF: as is).
    stored = stored_for_orientation(image, orientation) if options else image
    return encode(stored, fmt, **options), width, height


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    """A valid image cut short, or with a few bytes overwritten (anywhere, or in its header)."""
    data = bytearray(draw(valid_images(max_side=120))[0])
    damage = draw(st.sampled_from(("cut", "overwrite", "overwrite header")))
    if damage == "cut":
        return bytes(data[: draw(st.integers(min_value=0, max_value=len(data) - 1))])
    region = min(len(data), HEADER_BYTES) if damage == "overwrite header" else len(data)
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        data[draw(st.integers(min_value=0, max_value=region - 1))] = draw(st.integers(min_value=0, max_value=255))
    return bytes(data)


def upload_bodies() -> st.SearchStrategy[bytes]:
    """Anything a client could upload: random bytes, valid images, damaged images."""
    return st.one_of(
        st.binary(max_size=2048),
        valid_images(max_side=200).map(lambda image: image[0]),
        damaged_images(),
    )
