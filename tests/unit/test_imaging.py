"""The thumbnailer core on images the tests make: sizes, orientation, colours, rejections."""

from __future__ import annotations

import io
from collections.abc import Callable

import PIL
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageFile, ImageStat

from image_pipeline import imaging
from image_pipeline.errors import ImageRejected, RejectReason
from image_pipeline.imaging import (
    RenditionResult,
    RenditionSpec,
    decode_jpeg_at,
    fit_within,
    jpeg_decode_eighths,
    make_renditions,
    resample,
)
from pipeline_cli.imagefactory import (
    MARK,
    encode,
    make_animated_gif,
    make_jpeg,
    make_png,
    scene,
    stored_for_orientation,
)
from pipeline_cli.perf.corpus import photo
from pipeline_cli.perf.fidelity import psnr, reference
from tests.hostile_images import jpeg_bomb, png_bomb, without_adobe_marker
from tests.image_strategies import valid_images

SPEC = RenditionSpec(sizes=(1024, 512, 128))


def decoded(result: RenditionResult, index: int = 0) -> Image.Image:
    return Image.open(io.BytesIO(result.renditions[index].body))


def is_close(actual: tuple[int, ...] | float, expected: tuple[int, ...], tolerance: int = 40) -> bool:
    values = actual if isinstance(actual, tuple) else (int(actual),)
    return all(abs(a - e) <= tolerance for a, e in zip(values, expected, strict=False))


def assert_fits(result: RenditionResult, width: int, height: int) -> None:
    assert [r.size for r in result.renditions] == sorted(SPEC.sizes, reverse=True)
    for rendition in result.renditions:
        expected = fit_within(width, height, rendition.size)
        assert (rendition.width, rendition.height) == expected
        image = Image.open(io.BytesIO(rendition.body))
        assert image.size == expected
        assert image.format == "JPEG"
        assert image.getexif().get(0x0112) is None  # orientation is never copied into outputs


def assert_mark_top_left(image: Image.Image) -> None:
    """The red square drawn in the displayed top-left corner is still there, and only there."""
    rgb = image.convert("RGB")
    w, h = rgb.size
    probe = max(1, min(w, h) // 20)
    assert is_close(rgb.getpixel((probe, probe)), MARK), rgb.getpixel((probe, probe))
    for corner in ((w - 1 - probe, probe), (probe, h - 1 - probe), (w - 1 - probe, h - 1 - probe)):
        assert not is_close(rgb.getpixel(corner), MARK), corner


# ----------------------------------------------------------------------------- formats and modes


def _flat(mode: str, colour: object, size: tuple[int, int] = (640, 480)) -> Image.Image:
    return Image.new(mode, size, colour)  # type: ignore[arg-type]


FORMATS: dict[str, Callable[[], bytes]] = {
    "jpeg": lambda: make_jpeg(1600, 1200),
    "progressive jpeg": lambda: make_jpeg(1600, 1200, progressive=True),
    "png": lambda: make_png(1600, 1200),
    "webp": lambda: encode(scene(1600, 1200), "WEBP", quality=90),
    "gif": lambda: encode(scene(1600, 1200).convert("P"), "GIF"),
    "tiff": lambda: encode(scene(1600, 1200), "TIFF"),
    "bmp": lambda: encode(scene(1600, 1200), "BMP"),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_supported_format_makes_every_size(name: str) -> None:
    result = make_renditions(FORMATS[name](), SPEC)
    assert (result.source.width, result.source.height) == (1600, 1200)
    assert_fits(result, 1600, 1200)
    for index in range(len(result.renditions)):
        assert_mark_top_left(decoded(result, index))


def test_webp_output_keeps_alpha() -> None:
    result = make_renditions(make_png(400, 300, mode="RGBA"), RenditionSpec(sizes=(200,), format="WEBP"))
    image = decoded(result)
    assert image.format == "WEBP"
    assert result.renditions[0].content_type == "image/webp"
    assert image.mode == "RGBA"


@pytest.mark.parametrize(
    ("mode", "colour", "expected"),
    [
        ("L", 90, (90, 90, 90)),
        ("LA", (90, 255), (90, 90, 90)),
        ("RGB", (20, 140, 220), (20, 140, 220)),
        ("RGBA", (20, 140, 220, 255), (20, 140, 220)),
    ],
)
def test_flat_colours_survive(mode: str, colour: object, expected: tuple[int, int, int]) -> None:
    result = make_renditions(encode(_flat(mode, colour), "PNG"), SPEC)
    for index in range(3):
        mean = ImageStat.Stat(decoded(result, index).convert("RGB")).mean
        assert is_close(tuple(round(m) for m in mean), expected, tolerance=4)


def test_transparency_is_flattened_on_white_not_black() -> None:
    clear = _flat("RGBA", (255, 0, 0, 0))
    result = make_renditions(encode(clear, "PNG"), SPEC)
    assert is_close(decoded(result).convert("RGB").getpixel((10, 10)), (255, 255, 255), tolerance=2)


def _transparent_photo(width: int, height: int, mode: str = "RGBA") -> Image.Image:
    image = scene(width, height)
    image.putalpha(Image.linear_gradient("L").resize((width, height)))  # from opaque to clear
    return image.convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
@pytest.mark.parametrize("sizes", [(1024, 512, 128), (96,)])  # (96,): box-reduced strip by strip first
def test_transparent_images_are_flattened_before_resizing_pixel_for_pixel(mode: str, sizes: tuple[int, ...]) -> None:
    image = _transparent_photo(1600, 1200, mode)
    flat = Image.new("L" if mode == "LA" else "RGB", image.size, "white")
    flat.paste(image, mask=image.getchannel("A"))
    resampled = resample(encode(image, "PNG"), RenditionSpec(sizes=sizes))
    expected = flat.resize(resampled.images[0][1].size, Image.Resampling.LANCZOS, reducing_gap=1.5)
    assert resampled.images[0][1].tobytes() == expected.tobytes()


def test_webp_renditions_of_large_transparent_images_match_one_resize() -> None:
    image = _transparent_photo(1600, 1200)
    resampled = resample(encode(image, "PNG"), RenditionSpec(sizes=(96,), format="WEBP"))
    expected = image.resize((96, 72), Image.Resampling.LANCZOS, reducing_gap=1.5)  # premultiplied by Pillow
    assert resampled.images[0][1].mode == "RGBA"
    assert resampled.images[0][1].tobytes() == expected.tobytes()


def test_a_profile_on_a_flattened_transparent_image_still_converts_its_colours() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    result = make_renditions(encode(_transparent_photo(800, 600), "PNG", icc_profile=srgb), SPEC)
    assert decoded(result).mode == "RGB"
    assert is_close(decoded(result).getpixel((400, 0)), (255, 255, 255), tolerance=4)  # the clear top row


@pytest.mark.parametrize("with_transparency", [False, True])
def test_palette_images_are_resized_smoothly_and_flattened(with_transparency: bool) -> None:
    image = scene(800, 600).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    options = {"transparency": image.getpixel((400, 300))} if with_transparency else {}
    result = make_renditions(encode(image, "PNG", **options), SPEC)
    small = decoded(result, 2).convert("RGB")
    assert result.source.mode == "P"
    assert_mark_top_left(small)
    # LANCZOS on RGB gives many in-between colours; NEAREST on a 64-colour palette would not.
    assert len(small.getcolors(maxcolors=100_000) or []) > 64


def test_cmyk_jpeg_with_adobe_marker_keeps_its_colours() -> None:
    cmyk = encode(_flat("RGB", (200, 30, 30)).convert("CMYK"), "JPEG", quality=95)
    assert b"Adobe" in cmyk
    result = make_renditions(cmyk, SPEC)
    assert result.source.mode == "CMYK"
    image = decoded(result)
    assert image.mode == "RGB"
    assert is_close(image.getpixel((50, 50)), (200, 30, 30), tolerance=12)


def test_cmyk_jpeg_without_adobe_marker_still_renders_rgb() -> None:
    cmyk = without_adobe_marker(encode(_flat("RGB", (200, 30, 30)).convert("CMYK"), "JPEG", quality=95))
    result = make_renditions(cmyk, SPEC)
    image = decoded(result)
    assert image.mode == "RGB"
    assert image.size == (640, 480)


def test_16_bit_greyscale_is_scaled_not_clipped() -> None:
    grey = Image.linear_gradient("L").resize((600, 400)).convert("I").point(lambda v: v * 257)  # 0..65535
    result = make_renditions(encode(grey.convert("I;16"), "TIFF"), SPEC)
    assert result.source.mode.startswith("I")
    image = decoded(result, 1).convert("L")
    top, bottom = image.getpixel((100, 2)), image.getpixel((100, image.height - 3))
    assert isinstance(top, int)
    assert isinstance(bottom, int)
    assert top < 20
    assert bottom > 230  # clipping at 255 would make the whole image white from the first percent on


def test_animation_renders_its_first_frame() -> None:
    result = make_renditions(make_animated_gif(200, 100, [(220, 20, 20), (20, 220, 20), (20, 20, 220)]), SPEC)
    assert result.source.frames == 3
    assert is_close(decoded(result).convert("RGB").getpixel((50, 50)), (220, 20, 20), tolerance=12)


# ----------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_to_every_rendition(orientation: int) -> None:
    result = make_renditions(make_jpeg(1200, 800, orientation=orientation), SPEC)
    assert result.source.orientation == orientation
    assert (result.source.width, result.source.height) == (1200, 800)
    assert_fits(result, 1200, 800)
    for index in range(3):
        assert_mark_top_left(decoded(result, index))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_applies_to_png_too(orientation: int) -> None:
    stored = stored_for_orientation(scene(900, 600), orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    result = make_renditions(encode(stored, "PNG", exif=exif.tobytes()), SPEC)
    assert_mark_top_left(decoded(result, 1))


def test_malformed_exif_is_treated_as_upright() -> None:
    jpeg = encode(scene(400, 300), "JPEG", exif=b"Exif\x00\x00MM\x00*\xff\xff\xff\xff garbage")
    result = make_renditions(jpeg, SPEC)
    assert result.source.orientation == 1
    assert_mark_top_left(decoded(result))


# ----------------------------------------------------------------------------- sizes


def test_tiny_images_are_never_upscaled() -> None:
    result = make_renditions(encode(Image.new("RGB", (1, 1), (0, 200, 0)), "BMP"), SPEC)
    assert [(r.width, r.height) for r in result.renditions] == [(1, 1)] * 3


def test_a_1_by_100000_strip_keeps_at_least_one_pixel() -> None:
    strip = encode(Image.new("L", (1, 100_000), 128), "PNG")
    result = make_renditions(strip, SPEC)
    assert [(r.width, r.height) for r in result.renditions] == [(1, 1024), (1, 512), (1, 128)]


@pytest.fixture(scope="module")
def jpeg_12mp() -> bytes:
    return make_jpeg(4000, 3000, orientation=6)


@pytest.fixture(scope="module")
def jpeg_48mp() -> bytes:
    return make_jpeg(8000, 6000)


def test_12_megapixel_rotated_jpeg(jpeg_12mp: bytes) -> None:
    result = make_renditions(jpeg_12mp, SPEC)
    assert_fits(result, 4000, 3000)
    for index in range(3):
        assert_mark_top_left(decoded(result, index))


@pytest.mark.slow
def test_48_megapixel_jpeg(jpeg_48mp: bytes) -> None:
    result = make_renditions(jpeg_48mp, SPEC)
    assert (result.source.width, result.source.height) == (8000, 6000)
    assert_fits(result, 8000, 6000)
    assert_mark_top_left(decoded(result))


def test_the_pixel_limit_is_checked_from_the_header(jpeg_48mp: bytes) -> None:
    with pytest.raises(ImageRejected) as raised:
        make_renditions(jpeg_48mp, RenditionSpec(sizes=(128,), max_pixels=40_000_000))
    assert raised.value.reason is RejectReason.TOO_MANY_PIXELS
    assert "8000x6000" in raised.value.detail


# ----------------------------------------------------------------------------- JPEG decode scale

THREE_EIGHTHS = RenditionSpec(sizes=(256, 64))  # 1001 px wide decodes at 3/8 (376 px) for 256 px


def _mpo(width: int, height: int) -> bytes:
    """A two-picture MPO, as phones write them; the first picture is the one rendered."""
    first = scene(width, height)
    return encode(first, "MPO", save_all=True, append_images=[first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])


def test_this_pillow_still_decodes_jpeg_at_three_eighths() -> None:
    """Canary: the 3/8 scale is reached through Pillow's decoder arguments, not a public API."""
    data = make_jpeg(1600, 1200, displayed=photo(1600, 1200))
    with Image.open(io.BytesIO(data)) as image:
        box = decode_jpeg_at(image, 3)
        image.load()
        scaled = image.copy()
    with Image.open(io.BytesIO(data)) as full:
        expected = full.resize((600, 450), Image.Resampling.LANCZOS)
    detail = (
        f"Pillow {PIL.__version__} no longer decodes JPEG at 3/8 through decoderconfig: the thumbnailer "
        "falls back to draft()'s 4/8 (slower; docs/performance.md, 'Choosing the JPEG decode scale')"
    )
    assert box == (0, 0, 600.0, 450.0), detail
    assert scaled.size == (600, 450), f"{detail}; decoded {scaled.size}"
    assert psnr(scaled, expected) > 35, f"{detail}; pixels {psnr(scaled, expected):.1f} dB from a full decode"
    assert imaging._decodes_at_three_eighths(), f"{detail}; the runtime probe refuses it"


@pytest.mark.parametrize(
    ("width", "height", "target", "eighths"),
    [
        (4000, 3000, (1024, 768), 3),  # 1500 px: 1.46x left for LANCZOS
        (3000, 4000, (768, 1024), 3),
        (3600, 2700, (1024, 768), 4),  # 3/8 would leave 1.32x: 1/2, as draft() picks
        (5460, 4095, (1024, 768), 3),  # draft() picks 2/8, 1.33x: 1.7 dB lower
        (7200, 5400, (1024, 768), 3),  # draft() picks 2/8, 1.76x: 0.8 dB lower
        (8000, 6000, (1024, 768), 2),  # 1.95x: 3/8 is 0.6 dB better but 70% slower
        (2048, 1536, (1024, 768), 4),
        (1600, 1200, (1024, 768), 8),
        (8064, 6048, (512, 384), 1),
        (4096, 3072, (512, 384), 2),
    ],
)
def test_the_decode_scale_leaves_lanczos_its_margin(
    width: int, height: int, target: tuple[int, int], eighths: int
) -> None:
    assert jpeg_decode_eighths(width, height, target) == eighths


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(make_jpeg(1001, 751, displayed=photo(1001, 751)), id="odd size"),
        pytest.param(make_jpeg(1001, 751, progressive=True), id="progressive"),
        pytest.param(make_jpeg(1001, 751, mode="CMYK"), id="cmyk"),
        pytest.param(make_jpeg(1001, 751, mode="L"), id="greyscale"),
        pytest.param(make_jpeg(1001, 751, orientation=6), id="exif rotated"),
        pytest.param(_mpo(1001, 751), id="mpo"),
    ],
)
def test_jpegs_decoded_at_three_eighths_match_a_full_decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        assert jpeg_decode_eighths(image.width, image.height, fit_within(image.width, image.height, 256)) == 3
    images = [image for _, image in resample(data, THREE_EIGHTHS).images]
    for image, ref in zip(images, reference(data, [image.size for image in images]), strict=True):
        assert psnr(image, ref) > 40


def test_without_the_three_eighths_scale_jpegs_decode_at_one_half(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Pillow whose decoder refuses the 3/8 arguments (here: asked for 2/8 in a 3/8 tile, which
    it reports as broken data) fails the probe, and renditions come from draft()'s 1/2 scale."""

    def wrong_scale(image: ImageFile.ImageFile) -> None:
        image.tile = [image.tile[0]._replace(extents=(0, 0, -(-image.width * 3 // 8), -(-image.height * 3 // 8)))]
        image._size = image.tile[0].extents[2:]
        image.decoderconfig = (4, 0)

    monkeypatch.setattr(imaging, "_decode_at_three_eighths", wrong_scale)
    imaging._decodes_at_three_eighths.cache_clear()
    try:
        assert not imaging._decodes_at_three_eighths()
        data = make_jpeg(1001, 751, displayed=photo(1001, 751))
        images = [image for _, image in resample(data, THREE_EIGHTHS).images]
        for image, ref in zip(images, reference(data, [image.size for image in images]), strict=True):
            assert psnr(image, ref) > 40
        with Image.open(io.BytesIO(data)) as image:
            assert imaging.scale_jpeg_decode(image, (256, 192)) == (0, 0, 500.5, 375.5)  # 1/2
    finally:
        imaging._decodes_at_three_eighths.cache_clear()


# ----------------------------------------------------------------------------- rejections


@pytest.mark.parametrize("bomb", [png_bomb(100_000, 100_000), png_bomb(9_000, 7_000), jpeg_bomb(65_000, 65_000)])
def test_decompression_bombs_are_rejected_before_decoding(bomb: bytes) -> None:
    with pytest.raises(ImageRejected) as raised:
        make_renditions(bomb, SPEC)
    assert raised.value.reason is RejectReason.TOO_MANY_PIXELS


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", RejectReason.EMPTY),
        (b"<!doctype html><html><body>not a jpeg</body></html>", RejectReason.NOT_AN_IMAGE),
        (b"just some text, named photo.jpg", RejectReason.NOT_AN_IMAGE),
        (encode(Image.new("RGB", (32, 32)), "ICO"), RejectReason.UNSUPPORTED_FORMAT),
        (encode(Image.new("RGB", (32, 32)), "PCX"), RejectReason.UNSUPPORTED_FORMAT),
    ],
)
def test_what_is_not_a_supported_image_is_rejected_with_a_reason(data: bytes, reason: RejectReason) -> None:
    with pytest.raises(ImageRejected) as raised:
        make_renditions(data, SPEC)
    assert raised.value.reason is reason
    assert raised.value.detail


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_images_are_rejected_as_truncated(fmt: str) -> None:
    complete = encode(scene(800, 600), fmt)
    with pytest.raises(ImageRejected) as raised:
        make_renditions(complete[: len(complete) // 2], SPEC)
    assert raised.value.reason is RejectReason.TRUNCATED


# ----------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_images(), st.lists(st.integers(min_value=16, max_value=400), min_size=1, max_size=3, unique=True))
def test_any_valid_image_fits_every_box_keeping_its_aspect(image: tuple[bytes, int, int], sizes: list[int]) -> None:
    data, width, height = image
    result = make_renditions(data, RenditionSpec(sizes=tuple(sizes)))
    assert (result.source.width, result.source.height) == (width, height)
    for rendition in result.renditions:
        assert max(rendition.width, rendition.height) <= max(rendition.size, 1)
        assert rendition.width <= width
        assert rendition.height <= height
        scale = min(1.0, rendition.size / max(width, height))  # aspect kept: each side within a pixel
        assert abs(rendition.width - width * scale) <= 1
        assert abs(rendition.height - height * scale) <= 1
        assert Image.open(io.BytesIO(rendition.body)).size == (rendition.width, rendition.height)


def render_or_rejection(data: bytes) -> RenditionResult | ImageRejected:
    """Any other exception propagates and fails the test."""
    try:
        return make_renditions(data, SPEC)
    except ImageRejected as rejection:
        return rejection


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_image_rejected(data: bytes) -> None:
    outcome = render_or_rejection(data)
    if isinstance(outcome, ImageRejected):
        assert outcome.detail
    else:
        assert outcome.renditions


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_corrupted_jpeg_bytes_only_ever_raise_image_rejected(data: st.DataObject) -> None:
    jpeg = bytearray(make_jpeg(64, 48))
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        position = data.draw(st.integers(min_value=0, max_value=len(jpeg) - 1))
        jpeg[position] = data.draw(st.integers(min_value=0, max_value=255))
    outcome = render_or_rejection(bytes(jpeg))
    if isinstance(outcome, ImageRejected):
        assert outcome.detail
    else:
        assert outcome.renditions
