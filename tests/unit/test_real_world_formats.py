"""What real uploads need beyond the basics: HEIC/AVIF in, orientation decided once, colour keys,
colour profiles converted, no metadata out, every content error a reason, the configured pixel
limit, one encode per distinct rendition, AVIF out. Images made here; real files: test_realworld."""

from __future__ import annotations

import io
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageCms, ImageStat

from image_pipeline.errors import ImageRejected, RejectReason
from image_pipeline.imaging import RenditionSpec, make_renditions
from pipeline_cli.imagefactory import (
    EXIF_ORIENTATION,
    MARK,
    encode,
    make_animated_gif,
    make_heic,
    make_heic_burst,
    make_jpeg,
    scene,
    stored_for_orientation,
)
from tests.hostile_images import png_chunk

SPEC = RenditionSpec(sizes=(512, 128))
REALWORLD = Path(__file__).resolve().parents[1] / "realworld"
SECRET = "alice@example.com 48.8584N 2.2945E"


def rendition(data: bytes, spec: RenditionSpec = SPEC, index: int = 0) -> Image.Image:
    return Image.open(io.BytesIO(make_renditions(data, spec).renditions[index].body))


def close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 30) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


def assert_upright(image: Image.Image) -> None:
    rgb = image.convert("RGB")
    probe = max(1, min(rgb.size) // 20)
    assert close(rgb.getpixel((probe, probe)), MARK), rgb.getpixel((probe, probe))
    assert not close(rgb.getpixel((rgb.width - 1 - probe, rgb.height - 1 - probe)), MARK)


def rejection(data: bytes, spec: RenditionSpec = SPEC) -> ImageRejected:
    with pytest.raises(ImageRejected) as raised:
        make_renditions(data, spec)
    return raised.value


def display_p3() -> bytes:
    """The Display P3 profile an iPhone embeds (taken from pi-heif's sample, committed under tests/realworld)."""
    with Image.open(REALWORLD / "pi-heif" / "heif_other" / "empty_icc.heic") as image:
        profile: bytes = image.info["icc_profile"]
    return profile


@pytest.fixture(autouse=True, scope="module")
def _heif_opener() -> None:
    import pi_heif  # the tests' own reading of HEIC files, as the thumbnailer registers it

    pi_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


# ----------------------------------------------------------------------------- 1. HEIC/HEIF and AVIF in


@pytest.mark.parametrize("orientation", range(1, 9))
def test_heic_orientation_irot_imir_is_applied_once(orientation: int) -> None:
    result = make_renditions(make_heic(600, 400, orientation=orientation), SPEC)
    assert (result.source.format, result.source.width, result.source.height) == ("HEIF", 600, 400)
    assert [(r.width, r.height) for r in result.renditions] == [(512, 341), (128, 85)]
    for index in range(2):
        assert_upright(Image.open(io.BytesIO(result.renditions[index].body)))


def test_heic_renders_the_primary_image_of_a_burst() -> None:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    result = make_renditions(make_heic_burst(colours, primary=1), SPEC)
    assert result.source.frames == 3
    pixel = Image.open(io.BytesIO(result.renditions[0].body)).convert("RGB").getpixel((5, 5))
    assert close(pixel, colours[1], tolerance=12), pixel


def test_heic_pixel_limit_holds_before_decoding() -> None:
    failure = rejection(make_heic(1200, 900), RenditionSpec(sizes=(128,), max_pixels=1_000_000))
    assert failure.reason is RejectReason.TOO_MANY_PIXELS
    assert "1000000" in failure.detail


def test_the_heif_and_avif_plugins_are_imported_only_for_their_bytes() -> None:
    code = (
        "import sys\n"
        "from image_pipeline.imaging import RenditionSpec, make_renditions\n"
        "from pipeline_cli.imagefactory import make_jpeg\n"
        "loaded = lambda: ('PIL.AvifImagePlugin' in sys.modules, 'pi_heif' in sys.modules)\n"
        "make_renditions(make_jpeg(64, 48), RenditionSpec(sizes=(32,)))\n"
        "print(*loaded())\n"
        "make_renditions(open(sys.argv[1], 'rb').read(), RenditionSpec(sizes=(32,)))\n"
        "print(*loaded())\n"
        "make_renditions(open(sys.argv[2], 'rb').read(), RenditionSpec(sizes=(32,)))\n"
        "print(*loaded())\n"
    )
    avif = REALWORLD / "pillow" / "avif" / "rot0mir0.avif"
    heic = REALWORLD / "pi-heif" / "heif" / "RGBA_10__29x100.heif"
    command = [sys.executable, "-c", code, str(avif), str(heic)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False", "True", "False", "True", "True"]


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_avif_orientation_is_applied(orientation: int) -> None:
    stored = stored_for_orientation(scene(600, 400), orientation)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation  # Pillow writes it as irot/imir; its reader gives it back as EXIF
    result = make_renditions(encode(stored, "AVIF", exif=exif.tobytes(), quality=90), SPEC)
    assert (result.source.format, result.source.width, result.source.height) == ("AVIF", 600, 400)
    assert_upright(Image.open(io.BytesIO(result.renditions[0].body)))


def test_avif_alpha_is_flattened_on_white() -> None:
    clear = Image.new("RGBA", (200, 100), (255, 0, 0, 0))
    pixel = rendition(encode(clear, "AVIF")).convert("RGB").getpixel((50, 50))
    assert close(pixel, (255, 255, 255), tolerance=4), pixel


# ----------------------------------------------------------------------------- 2. TIFF orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_applied_once_and_sizes_are_displayed(orientation: int) -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    tiff = encode(stored_for_orientation(scene(600, 400), orientation), "TIFF", exif=exif)
    result = make_renditions(tiff, SPEC)
    assert (result.source.width, result.source.height) == (600, 400)
    assert (result.renditions[0].width, result.renditions[0].height) == (512, 341)
    assert_upright(Image.open(io.BytesIO(result.renditions[0].body)))


# ----------------------------------------------------------------------------- 3. decode errors fail


def test_a_png_whose_pixels_do_not_decode_fails_even_when_exif_is_looked_up() -> None:
    image = scene(300, 200)
    raw = b"".join(b"\0" + image.crop((0, y, 300, y + 1)).tobytes() for y in range(200))
    damaged = bytearray(zlib.compress(raw))
    damaged[len(damaged) // 2 : len(damaged) // 2 + 64] = b"\xff" * 64  # a damaged deflate stream
    header = (300).to_bytes(4, "big") + (200).to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", bytes(damaged))
    png += png_chunk(b"IEND", b"")
    with pytest.raises(OSError, match=r"data stream|truncated|decoder"):  # plain Pillow refuses it
        Image.open(io.BytesIO(png)).load()
    assert rejection(png).reason in (RejectReason.CORRUPT, RejectReason.TRUNCATED)


# ----------------------------------------------------------------------------- 4. colour keys


@pytest.mark.parametrize(
    ("mode", "key", "drawn"),
    [("RGB", (0, 255, 0), (200, 30, 30)), ("L", 77, 20), ("1", 0, 1)],
)
def test_a_trns_colour_key_is_transparent_and_flattened_on_white(mode: str, key: object, drawn: object) -> None:
    image = Image.new(mode, (200, 100), key)  # type: ignore[arg-type]
    image.paste(drawn, (0, 0, 100, 100))  # type: ignore[arg-type]
    png = encode(image, "PNG", transparency=key)
    out = rendition(png).convert("RGB")
    assert close(out.getpixel((150, 50)), (255, 255, 255), tolerance=3), out.getpixel((150, 50))
    if mode != "1":  # 1-bit: the drawn half is white too (black is the key)
        assert not close(out.getpixel((50, 50)), (255, 255, 255), tolerance=40)


def test_a_16_bit_grey_key_is_matched_on_its_16_bit_value() -> None:
    image = Image.new("I;16", (200, 100), 300)  # 300 and 310 are both 1 in 8 bits
    image.paste(Image.new("I;16", (100, 100), 310), (0, 0))
    out = rendition(encode(image, "PNG", transparency=300)).convert("L")
    assert out.getpixel((150, 50)) >= 250  # the key: transparent, white
    assert out.getpixel((50, 50)) <= 5  # the other value: dark, as stored


# ----------------------------------------------------------------------------- 5. content errors never escape


def test_a_gif_with_a_70000_byte_comment_renders() -> None:
    gif = encode(scene(200, 150).convert("P"), "GIF", comment=b"x" * 70_000)
    result = make_renditions(gif, SPEC)
    assert len(result.renditions) == 2


def test_an_encoder_refusal_is_a_rejection_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError("encoder error -2")

    jpeg = make_jpeg(300, 200)
    monkeypatch.setattr(Image.Image, "save", refuse)
    failure = rejection(jpeg)
    assert failure.reason is RejectReason.UNENCODABLE
    assert "encoder error -2" in failure.detail


# ----------------------------------------------------------------------------- 6. no metadata in renditions


def _with_metadata() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x010E] = SECRET  # ImageDescription
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 30.0)  # GPSLatitude
    xmp = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description about="{SECRET}"/></x:xmpmeta>'.encode()
    photo = scene(400, 300)
    return {
        "jpeg": encode(photo, "JPEG", exif=exif, comment=SECRET, xmp=xmp),
        "gif": encode(photo.convert("P"), "GIF", comment=SECRET),
        "png": encode(photo, "PNG", exif=exif, pnginfo=_png_text()),
        "webp": encode(photo, "WEBP", exif=exif, xmp=xmp),
        "heic": make_heic(400, 300),
    }


def _png_text() -> object:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", SECRET)
    return info


@pytest.mark.parametrize("output", ["JPEG", "WEBP", "AVIF"])
def test_renditions_carry_no_metadata_but_a_compact_profile(output: str) -> None:
    spec = RenditionSpec(sizes=(256,), format=output)
    for source, data in _with_metadata().items():
        body = make_renditions(data, spec).renditions[0].body
        assert SECRET.encode() not in body, source
        assert b"48.8584" not in body, source
        with Image.open(io.BytesIO(body)) as image:
            assert image.format == output
            assert not {"exif", "xmp", "comment", "XML:com.adobe.xmp"} & set(image.info), (source, image.info.keys())
            assert not image.getexif(), source
            assert len(image.info.get("icc_profile") or b"") <= 1024, source


# ----------------------------------------------------------------------------- 7. colour profiles


def test_wide_gamut_sources_are_converted_to_srgb_with_a_compact_profile() -> None:
    p3 = display_p3()
    colour = (200, 120, 40)  # inside both gamuts, but different numbers in each
    expected = ImageCms.profileToProfile(
        Image.new("RGB", (1, 1), colour), ImageCms.ImageCmsProfile(io.BytesIO(p3)), ImageCms.createProfile("sRGB")
    )
    assert expected is not None
    want = expected.getpixel((0, 0))
    assert isinstance(want, tuple)
    assert not close(want, colour, tolerance=8)  # the conversion matters for this colour
    for data in (
        encode(Image.new("RGB", (400, 300), colour), "JPEG", quality=95, icc_profile=p3),
        make_heic(400, 300, displayed=Image.new("RGB", (400, 300), colour), quality=95, icc_profile=p3),
    ):
        result = make_renditions(data, SPEC)
        with Image.open(io.BytesIO(result.renditions[0].body)) as image:
            mean = tuple(round(v) for v in ImageStat.Stat(image.convert("RGB")).mean)
            profile = image.info["icc_profile"]
        assert close(mean, want, tolerance=4), (mean, want)
        assert len(profile) < 1024
        description = ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.profile_description
        assert "sRGB" in description


def test_a_400_kb_profile_is_not_copied() -> None:
    big = REALWORLD / "pillow" / "icc_profile_big.jpg"
    result = make_renditions(big.read_bytes(), SPEC)
    for output in result.renditions:
        assert len(output.body) < 20_000
        assert len(Image.open(io.BytesIO(output.body)).info.get("icc_profile") or b"") < 1024


def test_srgb_sources_stay_untagged() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = rendition(encode(scene(400, 300), "JPEG", icc_profile=srgb))
    assert "icc_profile" not in out.info


def test_cmyk_with_a_profile_and_lab_become_rgb() -> None:
    for name in ("pil_sample_cmyk.jpg", "tiff_strip_cmyk_jpeg.tif", "lab.tif"):
        out = rendition((REALWORLD / "pillow" / name).read_bytes())
        assert out.mode == "RGB", name


# ----------------------------------------------------------------------------- 8. the configured pixel limit


def test_max_pixels_above_pillows_own_threshold_is_honoured() -> None:
    # 9500x9500 = 90.25 MP: above Pillow's 89.5 MP warning threshold, below a 100 MP MaxPixels.
    header = (9500).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 9501 * 4))
    png += png_chunk(b"IEND", b"")  # rows missing at the end are black, for Pillow too
    allowed = make_renditions(png, RenditionSpec(sizes=(128,), max_pixels=100_000_000))
    assert (allowed.source.width, allowed.renditions[0].width) == (9500, 128)
    refused = rejection(png, RenditionSpec(sizes=(128,), max_pixels=90_000_000))
    assert refused.reason is RejectReason.TOO_MANY_PIXELS
    assert "90000000" in refused.detail
    assert "89478485" not in refused.detail
    assert "178956970" not in refused.detail


def test_a_limit_below_pillows_default_is_reported_as_configured() -> None:
    first = Image.new("P", (100, 100))
    gif = encode(first, "GIF", save_all=True, append_images=[Image.new("P", (100, 100), 3)])
    failure = rejection(gif, RenditionSpec(sizes=(64,), max_pixels=5_000))
    assert failure.reason is RejectReason.TOO_MANY_PIXELS
    assert "5000" in failure.detail


# ----------------------------------------------------------------------------- 9. reasons that are true


def test_a_12_bit_jpeg_is_an_unsupported_precision_not_damage() -> None:
    jpeg = bytearray(make_jpeg(64, 48))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 4] = 12  # sample precision
    failure = rejection(bytes(jpeg))
    assert failure.reason is RejectReason.UNSUPPORTED_FORMAT
    assert "precision" in failure.detail
    assert "12-bit" in failure.detail


def test_a_bmp_carrying_a_png_is_an_unsupported_variant() -> None:
    failure = rejection((REALWORLD / "pillow" / "bmp" / "q" / "rgb24png.bmp").read_bytes())
    assert failure.reason is RejectReason.UNSUPPORTED_FORMAT
    assert "BMP" in failure.detail


# ----------------------------------------------------------------------------- 10. one encode per distinct image


def test_sizes_larger_than_the_source_share_one_body() -> None:
    result = make_renditions(make_jpeg(100, 80), RenditionSpec(sizes=(1024, 512, 64)))
    first, second, third = result.renditions
    assert first.body is second.body  # encoded once
    assert (first.width, first.height) == (100, 80)
    assert third.body is not first.body
    assert (third.width, third.height) == (64, 51)


def test_animation_frames_are_reported() -> None:
    result = make_renditions(make_animated_gif(64, 48, [(200, 0, 0), (0, 200, 0)]), SPEC)
    assert result.source.frames == 2


# ----------------------------------------------------------------------------- 11. AVIF out


def test_avif_renditions() -> None:
    result = make_renditions(make_jpeg(1200, 800, orientation=6), RenditionSpec(sizes=(512, 128), format="AVIF"))
    assert [r.content_type for r in result.renditions] == ["image/avif"] * 2
    with Image.open(io.BytesIO(result.renditions[0].body)) as image:
        assert (image.format, image.size) == ("AVIF", (512, 341))
        assert not image.getexif().get(EXIF_ORIENTATION)  # pixels upright: no orientation to apply
        assert_upright(image)
