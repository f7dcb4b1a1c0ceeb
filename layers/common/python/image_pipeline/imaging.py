"""The thumbnailer core: bytes of an image in, renditions out. Pure Pillow, no AWS.

How (and why) it is fast, measured in docs/design.md ("The thumbnail algorithm") and `make bench`:
- the header is read first (Image.open is lazy): empty, unknown, unsupported and oversized
  images are rejected before a single pixel is decoded;
- the EXIF orientation is read first and every target size is computed in displayed (oriented)
  coordinates;
- JPEG: draft() asks the decoder for a DCT-scaled image just larger than the largest target
  (1/2, 1/4, 1/8 scale), so a 48 MP photo is never decoded at full size;
- resize(LANCZOS, reducing_gap=1.5) for the largest rendition, then the small result is rotated
  (cheap), then each smaller rendition is made from the previous one (cascade).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Final

from PIL import (  # noqa: F401  # importing a plugin registers it: only the formats we open
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from image_pipeline.errors import ImageRejected, RejectReason

SUPPORTED_FORMATS: Final = frozenset({"JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP"})
_OPENABLE_FORMATS: Final = tuple(sorted(SUPPORTED_FORMATS))  # the JPEG opener also yields MPO (phone photos)
CONTENT_TYPES: Final = {"JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS: Final = {"JPEG": "jpg", "WEBP": "webp"}

_EXIF_ORIENTATION: Final = 0x0112
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES: Final = frozenset({5, 6, 7, 8})
_TRUNCATION_HINTS: Final = ("truncated", "broken data stream", "premature end", "unexpected end")


@dataclass(frozen=True)
class RenditionSpec:
    sizes: tuple[int, ...]
    format: str = "JPEG"
    quality: int = 82
    max_pixels: int = 50_000_000


@dataclass(frozen=True)
class SourceInfo:
    format: str
    width: int  # displayed (oriented) width
    height: int  # displayed (oriented) height
    mode: str
    orientation: int
    frames: int


@dataclass(frozen=True)
class Rendition:
    size: int
    width: int
    height: int
    format: str
    content_type: str
    body: bytes


@dataclass(frozen=True)
class RenditionResult:
    source: SourceInfo
    renditions: tuple[Rendition, ...]


@dataclass(frozen=True)
class Resampled:
    """The renditions' pixels before encoding, largest first (what `make bench` scores)."""

    source: SourceInfo
    images: tuple[tuple[int, Image.Image], ...]  # (requested size, image)
    icc_profile: bytes | None


def fit_within(width: int, height: int, box: int) -> tuple[int, int]:
    """Largest size with the same aspect that fits box x box; never upscaled, never 0 px."""
    scale = min(1.0, box / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def make_renditions(data: bytes, spec: RenditionSpec) -> RenditionResult:
    resampled = resample(data, spec)
    renditions = tuple(_encode(image, size, spec, resampled.icc_profile) for size, image in resampled.images)
    return RenditionResult(resampled.source, renditions)


def resample(data: bytes, spec: RenditionSpec) -> Resampled:
    """Decode and resize: every rendition's pixels, displayed upright, in display colours."""
    if spec.format not in CONTENT_TYPES:
        raise ValueError(f"unsupported rendition format {spec.format!r}")
    if not data:
        raise ImageRejected(RejectReason.EMPTY, "the object has zero bytes")
    image = _open(data, spec.max_pixels)
    try:
        orientation = _orientation(image)
        source = _source_info(image, orientation)
        images, icc_profile = _render(image, source, spec)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as error:
        raise ImageRejected(RejectReason.TOO_MANY_PIXELS, str(error)) from error
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, MemoryError) as error:
        message = str(error) or type(error).__name__
        raise ImageRejected(_failure_reason(message), f"cannot decode the {image.format} image: {message}") from error
    finally:
        image.close()
    return Resampled(source, images, icc_profile)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header only, refusing formats we do not handle and oversized images."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=_OPENABLE_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageRejected(RejectReason.TOO_MANY_PIXELS, str(error)) from error
        except UnidentifiedImageError as error:
            recognised = _recognised_format(data)
            if recognised in SUPPORTED_FORMATS or recognised == "MPO":
                # Our format's magic number, but its plugin could not parse the header.
                raise ImageRejected(RejectReason.CORRUPT, f"the {recognised} header is damaged or cut short") from error
            if recognised:
                raise ImageRejected(
                    RejectReason.UNSUPPORTED_FORMAT,
                    f"{recognised} images are not supported (supported: {', '.join(sorted(SUPPORTED_FORMATS))})",
                ) from error
            raise ImageRejected(RejectReason.NOT_AN_IMAGE, "the bytes are not an image format Pillow knows") from error
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            message = str(error) or type(error).__name__
            raise ImageRejected(_failure_reason(message), f"unreadable image header: {message}") from error
    pixels = image.width * image.height
    if pixels > max_pixels:
        image.close()
        raise ImageRejected(
            RejectReason.TOO_MANY_PIXELS,
            f"{image.width}x{image.height} is {pixels} pixels, more than the limit of {max_pixels}",
        )
    return image


def _failure_reason(message: str) -> RejectReason:
    """Pillow reports decoder failures with a mix of exception types; classify by what they say."""
    return (
        RejectReason.TRUNCATED if any(hint in message.lower() for hint in _TRUNCATION_HINTS) else RejectReason.CORRUPT
    )


def _recognised_format(data: bytes) -> str | None:
    """Which other format the bytes are, judged by the plugins' magic-number checks alone.

    Nothing is opened: formats we do not support (PSD, EPS, PDF, ICO...) never reach a decoder.
    """
    Image.init()
    prefix = data[:16]
    for name in Image.ID:
        _, accept = Image.OPEN[name]
        try:
            if accept is not None and accept(prefix):
                return name
        except Exception:  # noqa: S112  # a plugin's sniffer failing means "not this format"
            continue
    return None


def _orientation(image: Image.Image) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF; we fall back to upright
            value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF must not fail the image: treat as upright
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _source_info(image: Image.Image, orientation: int) -> SourceInfo:
    width, height = image.size
    if orientation in _SWAPS_AXES:
        width, height = height, width
    fmt = "JPEG" if image.format == "MPO" else str(image.format)
    return SourceInfo(fmt, width, height, image.mode, orientation, getattr(image, "n_frames", 1))


def _render(
    image: Image.Image, source: SourceInfo, spec: RenditionSpec
) -> tuple[tuple[tuple[int, Image.Image], ...], bytes | None]:
    sizes = sorted(set(spec.sizes), reverse=True)
    largest = fit_within(source.width, source.height, sizes[0])
    swap = source.orientation in _SWAPS_AXES
    decode_size = (largest[1], largest[0]) if swap else largest

    box = None
    if isinstance(image, ImageFile.ImageFile) and image.format in ("JPEG", "MPO"):
        # Before anything loads pixels: decode at the smallest DCT scale that still covers the target.
        drafted = image.draft(None, decode_size)
        if drafted is not None:
            box = drafted[1]
    working = _resizable(image)
    current = working.resize(decode_size, Image.Resampling.LANCZOS, box=box, reducing_gap=1.5)
    if source.orientation in _TRANSPOSE:
        current = current.transpose(_TRANSPOSE[source.orientation])  # rotate the small result, not the source
    current = _to_display_colours(current, image)
    icc_profile = image.info.get("icc_profile") if current.mode == working.mode else None

    images = []
    for size in sizes:
        target = fit_within(source.width, source.height, size)
        if current.size != target:
            current = current.resize(target, Image.Resampling.LANCZOS)
        images.append((size, current))
    return tuple(images), icc_profile


def _resizable(image: Image.Image) -> Image.Image:
    """A mode LANCZOS handles correctly (palette and 16-bit images do not)."""
    mode = image.mode
    if mode in ("P", "PA"):
        return image.convert("RGBA" if mode == "PA" or "transparency" in image.info else "RGB")
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16") or mode == "I":
        # 16-bit samples: scale to 8 bits; convert("L") alone would clip everything above 255.
        return image.convert("I").point(lambda value: value / 256).convert("L")
    if mode == "F":
        return image.convert("L")
    if mode not in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return image.convert("RGBA" if "A" in mode else "RGB")
    return image


def _to_display_colours(resized: Image.Image, source: Image.Image) -> Image.Image:
    """CMYK to RGB on the small image, through its ICC profile when it has one."""
    if resized.mode != "CMYK":
        return resized
    profile = source.info.get("icc_profile")
    if profile:
        from PIL import ImageCms  # only CMYK images with a profile pay for importing littlecms

        try:
            cmyk = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            converted = ImageCms.profileToProfile(resized, cmyk, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):
            converted = None
        if converted is not None:
            return converted
    return resized.convert("RGB")


def _encode(image: Image.Image, size: int, spec: RenditionSpec, icc_profile: bytes | None) -> Rendition:
    output = image
    if spec.format == "JPEG" and image.mode in ("RGBA", "LA"):
        # Flatten on white (after resizing): convert("RGB") would turn transparent areas black.
        base_mode = "RGB" if image.mode == "RGBA" else "L"
        output = Image.new(base_mode, image.size, "white")
        output.paste(image, mask=image.getchannel("A"))
    elif spec.format == "WEBP" and image.mode == "LA":
        output = image.convert("RGBA")
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": spec.quality}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if spec.format == "WEBP":
        options["method"] = 4
    output.save(buffer, spec.format, **options)  # no exif: outputs are upright, orientation never copied
    return Rendition(size, image.width, image.height, spec.format, CONTENT_TYPES[spec.format], buffer.getvalue())
