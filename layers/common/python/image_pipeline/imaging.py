"""The thumbnailer core: bytes of an image in, renditions out. Pure Pillow, no AWS.

How (and why) it is fast, measured in docs/design.md ("The thumbnail algorithm") and `make bench`:
- the header is read first (Image.open is lazy): empty, unknown, unsupported and oversized
  images are rejected before a single pixel is decoded;
- the EXIF orientation is read first and every target size is computed in displayed (oriented)
  coordinates;
- JPEG: the decoder scales the DCT (8/8, 4/8, 3/8, 2/8 or 1/8) to the smallest size that leaves
  LANCZOS enough margin above the largest target (jpeg_decode_eighths), so a 48 MP photo is never
  decoded at full size;
- resize(LANCZOS, reducing_gap=1.5) for the largest rendition, then the small result is rotated
  (cheap), then each smaller rendition is made from it (reducing_gap=3.0);
- for JPEG output, transparent images are flattened on white before resizing (as the reference
  does: exact, and 3 bands to resize instead of 4), and large ones are box-reduced strip by strip,
  so no second full-size copy is made (docs/performance.md has the measurements).

What makes it right on real files (docs/conformance.md has the corpus and the reasoning):
- HEIC/HEIF decode through pi-heif, imported only when the magic bytes say HEIF; AVIF through
  Pillow's own plugin. TIFF and HEIF decoders orient the pixels themselves: no second rotation;
- colours are converted to sRGB through the source's ICC profile (littlecms) on the small image;
  renditions embed at most lcms' compact sRGB profile and no other metadata (comments, EXIF, XMP);
- a colour key (tRNS) is transparency, flattened on white like an alpha channel;
- every error the input's bytes cause, while decoding or encoding, is an ImageRejected with a
  reason; the configured pixel limit is the one Pillow enforces while frames and tiles load.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import PIL
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

if TYPE_CHECKING:
    from PIL import ImageCms

SUPPORTED_FORMATS: Final = frozenset({"JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "AVIF", "HEIF"})
# The JPEG opener also yields MPO (phone photos). AVIF and HEIF (ISO BMFF files) join only for
# bytes that start with an ftyp box: their plugins and codecs load on first use, not at cold start.
_OPENABLE_FORMATS: Final = tuple(sorted(SUPPORTED_FORMATS - {"AVIF", "HEIF"}))
CONTENT_TYPES: Final = {"JPEG": "image/jpeg", "WEBP": "image/webp", "AVIF": "image/avif"}
EXTENSIONS: Final = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}
# ISO BMFF major brands of HEVC-coded HEIF (iPhone: heic) and the generic image/sequence brands,
# which AVIF shares: Pillow's AVIF plugin tries those first and passes on what is not AV1.
_HEIF_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
# Decoders that apply the orientation themselves and report the displayed size: Pillow's TIFF
# plugin (the Orientation tag, on load) and libheif (irot/imir; pi-heif resets EXIF's to 1).
_ORIENTED_BY_DECODER: Final = frozenset({"TIFF", "HEIF"})

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
REDUCING_GAP: Final = 1.5
# The smaller renditions are made from the largest: 1024 -> 128 px is a 2x box, then LANCZOS 4x.
# A larger box aliases fine periodic texture (1.5: box 5, 2.0: box 4 lose 10-20 dB of pixels at
# 128 px on the bench's photos); LANCZOS 4x filters out what a 2x box aliases (docs/performance.md).
LATER_REDUCING_GAP: Final = 3.0
# jpeg_decode_eighths: the JPEG DCT scales Pillow reaches (in eighths) and how many times the
# target each must leave for LANCZOS (measured: docs/performance.md).
_DCT_MARGIN: Final = {1: 1.5, 2: 1.9, 3: 1.4, 4: 1.0, 8: 0.0}
_STRIP_ROWS: Final = 256  # rows box-reduced at a time: a 49 MP RGBA strip is 8 MB
_PREMULTIPLIED: Final = {"RGBA": "RGBa", "LA": "La"}  # what Pillow resamples alpha images in
_TRUNCATION_HINTS: Final = ("truncated", "broken data stream", "premature end", "unexpected end")
# How Pillow says "valid, but not a variant I decode" (JPEG: "cannot handle 12-bit layers").
_UNSUPPORTED_HINTS: Final = ("unsupported", "not supported", "cannot handle", "unknown pixel mode", "not configured")
# What Pillow and its codecs raise on bytes they cannot decode or encode (never a bug of ours to retry).
_CONTENT_ERRORS: Final = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    MemoryError,
    struct.error,
)
_BOMB_PIXELS: Final = re.compile(r"\((\d+) pixels\)")
# Bump when a change to this module changes the renditions it makes: every image is then at an
# older spec version, and a backfill re-renders the library (docs/backfill.md).
RENDERER_REVISION: Final = 2


@dataclass(frozen=True)
class RenditionSpec:
    sizes: tuple[int, ...]
    format: str = "JPEG"
    quality: int = 82
    max_pixels: int = 50_000_000

    @property
    def version(self) -> str:
        """A short hash of what decides a rendition's bytes: sizes, format, quality, this renderer's
        revision and Pillow's version (max_pixels only decides whether an image is rendered)."""
        identity = [list(self.sizes), self.format, self.quality, RENDERER_REVISION, PIL.__version__]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:12]


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
    return encode_renditions(resample(data, spec), spec)


def encode_renditions(resampled: Resampled, spec: RenditionSpec) -> RenditionResult:
    """Encode resampled pixels; sizes the source is smaller than share one image (the cascade
    stops resizing) and are encoded once."""
    bodies: dict[int, bytes] = {}
    renditions = []
    for size, image in resampled.images:
        if id(image) not in bodies:
            bodies[id(image)] = _encode(image, spec, resampled.icc_profile, resampled.source.format)
        renditions.append(
            Rendition(size, image.width, image.height, spec.format, CONTENT_TYPES[spec.format], bodies[id(image)])
        )
    return RenditionResult(resampled.source, tuple(renditions))


def resample(data: bytes, spec: RenditionSpec) -> Resampled:
    """Decode and resize: every rendition's pixels, displayed upright, in display colours."""
    if spec.format not in CONTENT_TYPES:
        raise ValueError(f"unsupported rendition format {spec.format!r}")
    if not data:
        raise ImageRejected(RejectReason.EMPTY, "the object has zero bytes")
    with _pixel_limit(None):  # _open checks the header itself, and its message says WxH
        image = _open(data, spec.max_pixels)
    try:
        with _pixel_limit(spec.max_pixels):
            orientation = _orientation(image)
            source = _source_info(image, orientation)
            images, icc_profile = _render(image, source, spec)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _too_many_pixels(error, spec.max_pixels) from error
    except _CONTENT_ERRORS as error:
        raise _decode_failure(image, error) from error
    finally:
        image.close()
    return Resampled(source, images, icc_profile)


@contextmanager
def _pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Pillow's own bomb check at the configured limit (None: off), as a hard error.

    Pillow checks the header on open and again while GIF frames, MPO pictures and TIFF tiles
    load, against MAX_IMAGE_PIXELS (~89.5 MP by default), which would cap a larger MaxPixels.
    The global is set for this call only: a Lambda process renders one image at a time.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _too_many_pixels(error: Exception, max_pixels: int) -> ImageRejected:
    """Pillow's message names its threshold (twice the limit, for its error): quote ours."""
    found = _BOMB_PIXELS.search(str(error))
    pixels = f"{int(found.group(1))} pixels" if found else "the image"
    return ImageRejected(RejectReason.TOO_MANY_PIXELS, f"{pixels} is more than the limit of {max_pixels}")


def _decode_failure(image: Image.Image, error: Exception) -> ImageRejected:
    message = str(error) or type(error).__name__
    return ImageRejected(_failure_reason(message), f"cannot decode the {image.format} image: {message}")


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header only, refusing formats we do not handle and oversized images."""
    formats = _OPENABLE_FORMATS
    if data[4:8] == b"ftyp":
        from PIL import AvifImagePlugin  # noqa: F401  # registers AVIF, first: it passes on what is not AV1

        formats = (*formats, "AVIF")
        if _is_heif(data):
            _register_heif()
            formats = (*formats, "HEIF")
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _too_many_pixels(error, max_pixels) from error
    except UnidentifiedImageError as error:
        raise _unidentified(data) from error
    except _CONTENT_ERRORS as error:
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


def _unidentified(data: bytes) -> ImageRejected:
    recognised = _recognised_format(data)
    if recognised in SUPPORTED_FORMATS or recognised == "MPO":
        # Our format's magic number, but its plugin refused the header: ask it why.
        complaint = _header_complaint(recognised, data)
        reason = _failure_reason(complaint) if complaint else RejectReason.CORRUPT
        if reason is RejectReason.UNSUPPORTED_FORMAT:
            what = "sample precision" if re.search(r"\d+-bit", complaint or "") else "variant"
            return ImageRejected(reason, f"unsupported {recognised} {what}: {complaint}")
        return ImageRejected(reason, f"the {recognised} header is damaged or cut short: {complaint or 'unreadable'}")
    if recognised:
        return ImageRejected(
            RejectReason.UNSUPPORTED_FORMAT,
            f"{recognised} images are not supported (supported: {', '.join(sorted(SUPPORTED_FORMATS))})",
        )
    # Formats without a magic number (TGA, IM, PCD...) cannot be told from any other bytes.
    return ImageRejected(
        RejectReason.NOT_AN_IMAGE,
        f"the bytes match the signature of no image format we know (supported: {', '.join(sorted(SUPPORTED_FORMATS))})",
    )


def _header_complaint(name: str, data: bytes) -> str | None:
    """What the format's own plugin says about the header (Image.open keeps it to itself)."""
    factory, _ = Image.OPEN["JPEG" if name == "MPO" else name]
    try:
        factory(io.BytesIO(data), "").close()
    except Exception as error:  # any refusal is the answer we are after
        return str(error) or type(error).__name__
    return None


def _is_heif(data: bytes) -> bool:
    return data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS


@functools.cache
def _register_heif() -> None:
    """Register pi-heif's opener, on the first HEIF upload: other images' cold start skips libheif."""
    from pi_heif import register_heif_opener

    # Only the primary image: no thumbnails, depth maps or auxiliary images are read.
    register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


def _failure_reason(message: str) -> RejectReason:
    """Pillow reports decoder failures with a mix of exception types; classify by what they say."""
    lowered = message.lower()
    if any(hint in lowered for hint in _UNSUPPORTED_HINTS):
        return RejectReason.UNSUPPORTED_FORMAT  # a variant of a format we take (12-bit JPEG, BMP with PNG inside)
    return RejectReason.TRUNCATED if any(hint in lowered for hint in _TRUNCATION_HINTS) else RejectReason.CORRUPT


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
    return "HEIF" if _is_heif(data) else None


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation still to apply (1 when the decoder applies it)."""
    if image.format in _ORIENTED_BY_DECODER:
        return 1
    if image.format == "PNG" and "exif" not in image.info:
        # An eXIf chunk may follow the pixels, so PNG's getexif() decodes the image: do it here,
        # where a decode error fails the image, not inside the lenient EXIF lookup below.
        image.load()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF; we fall back to upright
            value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _CONTENT_ERRORS:  # malformed EXIF must not fail the image: treat as upright
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
        box = scale_jpeg_decode(image, decode_size)  # before anything loads pixels
    working = _resizable(image)
    if box is None and working.mode in _PREMULTIPLIED:
        flatten = spec.format == "JPEG"  # JPEG has no alpha
        current = _shrink_alpha_image(working, decode_size, flatten=flatten)
    else:
        current = working.resize(decode_size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    if source.orientation in _TRANSPOSE:
        current = current.transpose(_TRANSPOSE[source.orientation])  # rotate the small result, not the source
    current, icc_profile = _to_display_colours(current, image)
    # Renditions carry no metadata: encoders fall back to image.info (JPEG's comment, AVIF's EXIF
    # and XMP), which resize() copies from the source.
    current.info = {}

    # Each smaller rendition from the largest; sizes the source is smaller than share one image.
    made = {current.size: current}
    images = []
    for size in sizes:
        target = fit_within(source.width, source.height, size)
        if target not in made:
            made[target] = current.resize(target, Image.Resampling.LANCZOS, reducing_gap=LATER_REDUCING_GAP)
        images.append((size, made[target]))
    return tuple(images), icc_profile


def jpeg_decode_eighths(width: int, height: int, target: tuple[int, int]) -> int:
    """The DCT scale, in eighths, to decode a width x height JPEG at for a target size: the
    smallest that leaves at least _DCT_MARGIN[eighths] times the target for LANCZOS to finish.

    Why margins (measured by `python -m pipeline_cli.perf.dct_sweep`, docs/performance.md): the
    scaled IDCT is a cruder low-pass than LANCZOS, the more so the coarser the scale. Decoded just
    above the target, renditions lose up to 3 dB (2/8 of a 5460 px photo for 1024 px: 1.33x).
    3/8 loses nothing from 1.4x on, and is faster than 4/8 there; 2/8 keeps losing 0.6 dB up to
    1.95x, but 3/8 costs 70% more there, so 2/8 is kept from 1.9x on; 1/8 from 1.5x (at 1.33-1.46x
    it loses 1.4-3.6 dB); 4/8 from 1.0x on, as draft() picks it, because a full decode costs up to 6x.
    """
    for eighths in sorted(_DCT_MARGIN):
        margin = _DCT_MARGIN[eighths]
        if width * eighths >= margin * 8 * target[0] and height * eighths >= margin * 8 * target[1]:
            return eighths
    return 8


def scale_jpeg_decode(image: ImageFile.ImageFile, target: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """Make the JPEG decode at jpeg_decode_eighths' scale; see decode_jpeg_at."""
    eighths = jpeg_decode_eighths(image.width, image.height, target)
    if eighths == 3 and not _decodes_at_three_eighths():
        eighths = 4  # never wrong pixels: the next scale draft() offers
    return decode_jpeg_at(image, eighths)


def decode_jpeg_at(image: ImageFile.ImageFile, eighths: int) -> tuple[float, float, float, float] | None:
    """Make an opened JPEG decode at eighths/8 (8, 4, 3, 2 or 1); the box of the decoded image
    that the source covers (for resize()), or None at full scale.

    draft() offers only 1/1, 1/2, 1/4 and 1/8. libjpeg also decodes at 3/8, reached through
    Pillow's decoder arguments (scale_denom 3, which libjpeg rounds up to 3/8): not a public API,
    so callers take it only if _decodes_at_three_eighths() proved it on this Pillow.
    """
    width, height = image.size
    if eighths == 3 and len(image.tile) == 1 and not image.decoderconfig:
        _decode_at_three_eighths(image)
        return (0, 0, width * 3 / 8, height * 3 / 8)
    scale = 8 // (4 if eighths == 3 else eighths)
    if scale == 1:
        return None
    # draft() picks the largest power of two not above min(width // w, height // h): this one.
    drafted = image.draft(None, (max(1, width // scale), max(1, height // scale)))
    return drafted[1] if drafted is not None else None


def _decode_at_three_eighths(image: ImageFile.ImageFile) -> None:
    """What draft() does for 1/2, for libjpeg's 3/8 scale (output size: ceil(size * 3 / 8))."""
    decoder, extents, offset, args = image.tile[0]
    width, height = -(-image.size[0] * 3 // 8), -(-image.size[1] * 3 // 8)
    left, top = extents[:2] if extents else (0, 0)
    image.tile = [ImageFile._Tile(decoder, (left, top, left + width, top + height), offset, args)]
    image._size = (width, height)
    image.decoderconfig = (3, 0)


@functools.cache
def _decodes_at_three_eighths() -> bool:
    """Whether this Pillow's JPEG decoder still decodes at 3/8 (checked once per process on a
    small generated JPEG: the size, and the pixels against a full decode scaled down)."""
    from PIL import ImageChops, ImageStat

    pattern = Image.linear_gradient("L").resize((80, 64)).convert("RGB")
    buffer = io.BytesIO()
    pattern.save(buffer, "JPEG", quality=95)
    try:
        with Image.open(buffer) as probe:
            assert isinstance(probe, ImageFile.ImageFile)
            _decode_at_three_eighths(probe)
            probe.load()
            scaled = probe.copy()
    except Exception:  # any refusal means: use draft()'s scales
        return False
    if scaled.size != (30, 24):
        return False
    with Image.open(buffer) as full:
        expected = full.resize((30, 24), Image.Resampling.LANCZOS)
    error = ImageStat.Stat(ImageChops.difference(scaled, expected).convert("L")).mean[0]
    return error < 4  # a mean error of a few levels: DCT scaling vs LANCZOS; wrong pixels are far off


def _shrink_alpha_image(image: Image.Image, size: tuple[int, int], *, flatten: bool) -> Image.Image:
    """image.resize(size, LANCZOS, reducing_gap) for an image with alpha, flattened on white first
    if `flatten`, without a second full-size copy.

    Pillow resizes RGBA by converting the whole image to premultiplied RGBa (and flattening would
    be one more copy): a 49 MP PNG held two 196 MB images. Here each strip of rows is copied,
    flattened or premultiplied, and box-reduced on its own, which gives the same pixels as
    reducing the whole image, then LANCZOS finishes on the small result, as resize() would.
    """
    width, height = image.size
    factor_x = int(width / size[0] / REDUCING_GAP) or 1
    factor_y = int(height / size[1] / REDUCING_GAP) or 1
    if factor_x == factor_y == 1:  # nothing to box-reduce: one full-size step either way
        return (_on_white(image) if flatten else image).resize(size, Image.Resampling.LANCZOS)
    mode = ("RGB" if image.mode == "RGBA" else "L") if flatten else _PREMULTIPLIED[image.mode]
    reduced = Image.new(mode, (-(-width // factor_x), -(-height // factor_y)))
    rows = factor_y * max(1, _STRIP_ROWS // factor_y)  # whole boxes per strip
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows)))
        strip = _on_white(strip) if flatten else strip.convert(mode)
        reduced.paste(strip.reduce((factor_x, factor_y)), (0, top // factor_y))
    shrunk = reduced.resize(size, Image.Resampling.LANCZOS, box=(0, 0, width / factor_x, height / factor_y))
    return shrunk if flatten else shrunk.convert(image.mode)


def _on_white(image: Image.Image) -> Image.Image:
    """RGBA/LA composited on white: convert("RGB") would turn transparent areas black."""
    flat = Image.new("RGB" if image.mode == "RGBA" else "L", image.size, "white")
    flat.paste(image, mask=image.getchannel("A"))
    return flat


def _resizable(image: Image.Image) -> Image.Image:
    """A mode LANCZOS handles correctly (palette and 16-bit images do not), colour key applied."""
    mode = image.mode
    key = image.info.get("transparency")
    if mode in ("P", "PA"):
        return image.convert("RGBA" if mode == "PA" or key is not None else "RGB")
    if mode == "RGB" and key is not None:
        return image.convert("RGBA")  # tRNS: pixels of the key colour are transparent
    grey = _eight_bit_grey(image) if mode in ("1", "I", "F") or mode.startswith("I;16") else image
    if isinstance(key, int) and grey.mode == "L":
        # A grey colour key, matched on the original samples (before any scaling to 8 bits).
        from PIL import ImageMath

        matches = ImageMath.lambda_eval(lambda args: args["equal"](args["image"], key), image=image.convert("I"))
        grey = grey.convert("LA")
        grey.putalpha(matches.convert("L").point(lambda value: 0 if value else 255))
        return grey
    if grey.mode not in ("L", "LA", "RGB", "RGBA", "CMYK", "LAB"):
        return grey.convert("RGBA" if "A" in grey.mode else "RGB")
    return grey


def _eight_bit_grey(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit samples: scale to 8 bits; convert("L") alone would clip everything above 255.
        return image.convert("I").point(lambda value: value / 256).convert("L")
    return image.convert("L")


def _to_display_colours(resized: Image.Image, source: Image.Image) -> tuple[Image.Image, bytes | None]:
    """sRGB pixels, converted on the small image, and the ICC profile to embed with them.

    Untagged sources are taken as sRGB (the web's default) and stay untagged; a source tagged
    with another space (Display P3, Adobe RGB, a CMYK press profile) is converted through its
    profile and tagged with lcms' compact sRGB profile, never its own (which can be 100s of KB).
    """
    profile = source.info.get("icc_profile")
    if resized.mode == "LAB":  # CIELAB is device independent: no profile needed to convert it
        return _transform(resized, None, "LAB"), _srgb_profile() if profile else None
    if not profile or resized.mode not in _ICC_SPACE_OF_MODE:
        return (resized.convert("RGB") if resized.mode == "CMYK" else resized), None
    source_profile = _profile(bytes(profile))
    if source_profile is None or _is_srgb(source_profile):
        return (resized.convert("RGB") if resized.mode == "CMYK" else resized), None
    try:
        return _transform(resized, source_profile, resized.mode), _srgb_profile()
    except (ValueError, OSError):  # a profile lcms cannot use: show the values as they are
        return (resized.convert("RGB") if resized.mode == "CMYK" else resized), None


# The ICC colour space a profile must describe for the image mode it is embedded in.
_ICC_SPACE_OF_MODE: Final = {"RGB": "RGB", "RGBA": "RGB", "CMYK": "CMYK", "L": "GRAY", "LA": "GRAY"}


@functools.lru_cache(maxsize=16)
def _profile(data: bytes) -> ImageCms.ImageCmsProfile | None:
    from PIL import ImageCms  # only images with a profile pay for importing littlecms

    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(data))
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None  # a damaged profile: the pixels are shown as they are


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    description = profile.profile.profile_description or ""
    return "srgb" in description.lower()


@functools.cache
def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # ~600 bytes


def _transform(image: Image.Image, source_profile: ImageCms.ImageCmsProfile | None, mode: str) -> Image.Image:
    """image (in `mode`, described by source_profile; None: CIELAB) to sRGB, alpha kept."""
    from PIL import ImageCms

    space = _ICC_SPACE_OF_MODE.get(mode)
    if source_profile is not None and source_profile.profile.xcolor_space.strip() != space:
        raise ValueError(f"a {source_profile.profile.xcolor_space.strip()} profile on a {mode} image")
    alpha = image.getchannel("A") if mode in ("RGBA", "LA") else None
    colour = image.convert(mode.removesuffix("A")) if alpha is not None else image
    in_mode = colour.mode
    transform = _transform_for(source_profile, in_mode)
    try:
        converted = ImageCms.applyTransform(colour, transform)
    except ImageCms.PyCMSError as error:
        raise ValueError(str(error)) from error
    assert converted is not None  # not in place: a new image
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


@functools.lru_cache(maxsize=16)
def _transform_for(source_profile: ImageCms.ImageCmsProfile | None, in_mode: str) -> ImageCms.ImageCmsTransform:
    from PIL import ImageCms

    source = source_profile if source_profile is not None else ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
    try:
        return ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), in_mode, "RGB")
    except ImageCms.PyCMSError as error:
        raise ValueError(str(error)) from error


def _encode(image: Image.Image, spec: RenditionSpec, icc_profile: bytes | None, source_format: str) -> bytes:
    """Encode one rendition; an encoder's refusal is the input's fault, never retried."""
    output = image  # JPEG renditions were flattened on white before resizing
    if spec.format in ("WEBP", "AVIF") and image.mode == "LA":
        output = image.convert("RGBA")
    elif spec.format == "AVIF" and image.mode == "L":
        output = image.convert("RGB")
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": spec.quality}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if spec.format == "WEBP":
        options["method"] = 4
    if spec.format == "AVIF":
        options["speed"] = _AVIF_SPEED
    try:
        output.save(buffer, spec.format, **options)  # no exif: outputs are upright, orientation never copied
    except _CONTENT_ERRORS as error:
        message = str(error) or type(error).__name__
        raise ImageRejected(
            RejectReason.UNENCODABLE, f"cannot encode the {source_format} image as {spec.format}: {message}"
        ) from error
    return buffer.getvalue()


# libavif's speed (0 slowest .. 10 fastest): `make bench` measures the trade against file size.
_AVIF_SPEED: Final = 8
