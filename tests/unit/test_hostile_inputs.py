"""Hostile and odd uploads through the real ThumbnailFunction against moto, each within a memory budget.

Every case runs in tests.sandbox: a child process with an address-space cap that holds the moto
stack and the handler, uploads the object, delivers its real-shaped S3 event, and reports what
the case left behind and how much resident memory it added at its peak. Each case must end as
a FAILED item with a specific reason and one ImageFailed event (and no renditions), or as
SUCCEEDED with renditions of the right sizes and one ImageProcessed event; and it must stay
within CASE_MEMORY_BUDGET_MB, which a decoded bomb exceeds several times over.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from image_pipeline.config import PEAK_BYTES_PER_PIXEL
from image_pipeline.errors import ImageRejected, RejectReason
from image_pipeline.imaging import RenditionSpec, fit_within, make_renditions
from image_pipeline.keys import image_id_for
from pipeline_cli.imagefactory import MARK, encode, make_jpeg, make_png, scene, stored_for_orientation
from tests.hostile_images import (
    MALFORMED_EXIF,
    animated_gif,
    cut,
    gif_screen_bomb,
    jpeg_bomb,
    png_bomb,
    png_chunk,
    png_deflate_bomb,
    png_text_bomb,
    without_adobe_marker,
)
from tests.image_strategies import damaged_images, upload_bodies
from tests.s3events import s3_put_event
from tests.sandbox import DELETE_KEY, DELETE_VERSION, CaseOutcome, HandlerSandbox, Upload
from tests.stack import TestStack

# Every hostile case is small once refused: none may add more than this at its peak. Decoding the
# 8000x8000 deflate bomb below would add ~190 MB (measured: 264 MB with the pixel limit lifted).
CASE_MEMORY_BUDGET_MB = 64
SIZES = (1024, 512, 128)  # the stack's RENDITION_SIZES
KNOWN_REASONS = {reason.value for reason in RejectReason}
WHITE = (255, 255, 255)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[HandlerSandbox]:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("per-case peak memory is measured through Linux's /proc (Lambda and CI run Linux)")
    with HandlerSandbox(timeout_seconds=60) as running:
        yield running


_case_numbers = itertools.count()


def run_case(sandbox: HandlerSandbox, name: str, body: bytes, **options: object) -> CaseOutcome:
    """Upload under a fresh key (so cases never see each other's items) and deliver the event."""
    return sandbox.run(Upload(f"uploads/hostile/{next(_case_numbers)} {name}", body, **options))  # type: ignore[arg-type]


def close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 30) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def assert_failed(outcome: CaseOutcome, reason: RejectReason) -> None:
    assert outcome.error is None, outcome.error  # a bad image is not retried: the handler returns
    assert outcome.response is not None
    [result] = outcome.response["results"]
    assert (result["outcome"], result["reason"]) == ("FAILED", reason.value)
    assert outcome.item is not None
    assert outcome.item["status"] == "FAILED"
    assert outcome.item["error"]["reason"] == reason.value
    assert outcome.item["error"]["detail"]
    [event] = outcome.events
    assert event["event_type"] == "ImageFailed"
    assert event["error"] == outcome.item["error"]
    assert outcome.renditions == []
    assert outcome.peak_mb < CASE_MEMORY_BUDGET_MB


def assert_succeeded(outcome: CaseOutcome, width: int, height: int) -> None:
    """The item, the stored objects and the event all describe width x height at every size."""
    assert outcome.error is None, outcome.error
    assert outcome.outcome == "SUCCEEDED", outcome.response
    item = outcome.item
    assert item is not None
    assert item["status"] == "SUCCEEDED"
    assert (item["width"], item["height"]) == (width, height)
    expected = {size: fit_within(width, height, size) for size in SIZES}
    assert {r["size"]: (r["width"], r["height"]) for r in item["renditions"]} == expected
    stored = {r.key: r for r in outcome.renditions}
    assert sorted(stored) == sorted({r["key"] for r in item["renditions"]})  # all present, nothing else
    for rendition in item["renditions"]:
        assert (stored[rendition["key"]].width, stored[rendition["key"]].height) == expected[rendition["size"]]
        assert stored[rendition["key"]].format == "JPEG"
    [event] = outcome.events
    assert event["event_type"] == "ImageProcessed"
    assert event["image"]["renditions"] == item["renditions"]
    assert outcome.peak_mb < CASE_MEMORY_BUDGET_MB


def largest(outcome: CaseOutcome) -> dict[str, tuple[int, int, int]]:
    """The probe pixels of the largest stored rendition."""
    return max(outcome.renditions, key=lambda r: r.width * r.height).pixels


# ----------------------------------------------------------------------------- refused


@dataclass(frozen=True)
class Refused:
    body: bytes
    reason: RejectReason
    env: tuple[tuple[str, str], ...] = ()
    before_invoke: str = ""


JPEG_1600 = make_jpeg(1600, 1200)
PNG_640 = make_png(640, 480)

REFUSED = {
    "png header claiming 100000x100000": Refused(png_bomb(100_000, 100_000), RejectReason.TOO_MANY_PIXELS),
    "png inflating to 192 MB of pixels": Refused(png_deflate_bomb(8000, 8000), RejectReason.TOO_MANY_PIXELS),
    "jpeg header claiming 65000x65000": Refused(jpeg_bomb(65_000, 65_000), RejectReason.TOO_MANY_PIXELS),
    "jpeg header just over the limit": Refused(jpeg_bomb(8000, 6251), RejectReason.TOO_MANY_PIXELS),
    "gif screen claiming 65535x65535": Refused(gif_screen_bomb(65_535, 65_535), RejectReason.TOO_MANY_PIXELS),
    "png header claiming 7000x7000 without pixels": Refused(png_bomb(7000, 7000), RejectReason.TRUNCATED),
    "png text chunk inflating to 10 MB": Refused(png_text_bomb(10_000_000), RejectReason.CORRUPT),
    "jpeg cut in the scan": Refused(cut(JPEG_1600, 0.5), RejectReason.TRUNCATED),
    "jpeg cut in its header": Refused(JPEG_1600[:200], RejectReason.TRUNCATED),
    "png cut in the pixels": Refused(cut(PNG_640, 0.5), RejectReason.TRUNCATED),
    "png cut in its first chunk": Refused(PNG_640[:40], RejectReason.CORRUPT),
    "zero bytes": Refused(b"", RejectReason.EMPTY),
    "html named jpg": Refused(
        b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", RejectReason.NOT_AN_IMAGE
    ),
    "plain text named jpg": Refused(b"just words, named photo.jpg\n" * 20, RejectReason.NOT_AN_IMAGE),
    "icon named jpg": Refused(encode(Image.new("RGB", (32, 32)), "ICO"), RejectReason.UNSUPPORTED_FORMAT),
    "larger than MAX_SOURCE_BYTES": Refused(JPEG_1600, RejectReason.TOO_LARGE, env=(("MAX_SOURCE_BYTES", "50000"),)),
    "version deleted before processing": Refused(JPEG_1600, RejectReason.SOURCE_MISSING, before_invoke=DELETE_VERSION),
    "key deleted before processing": Refused(JPEG_1600, RejectReason.SOURCE_MISSING, before_invoke=DELETE_KEY),
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_hostile_upload_fails_with_its_reason_an_event_and_bounded_memory(sandbox: HandlerSandbox, name: str) -> None:
    case = REFUSED[name]
    outcome = run_case(sandbox, f"{name}.jpg", case.body, env=case.env, before_invoke=case.before_invoke)
    assert_failed(outcome, case.reason)


def test_the_memory_budget_would_catch_a_decoded_bomb(sandbox: HandlerSandbox) -> None:
    """The budget is not vacuous: with the pixel limit lifted, the same bomb is decoded and exceeds it."""
    lifted = (("MAX_PIXELS", "100000000"),)
    outcome = run_case(
        sandbox, "bomb with the limit lifted.png", REFUSED["png inflating to 192 MB of pixels"].body, env=lifted
    )
    assert outcome.outcome == "SUCCEEDED"
    assert outcome.peak_mb > 2 * CASE_MEMORY_BUDGET_MB


def test_a_refused_upload_is_logged_with_its_reason(
    stack: TestStack, invoke_thumbnail: Callable[[dict[str, Any]], dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """The third record of a failure (after the item and the event): a structured log line."""
    key = "uploads/hostile/logged bomb.png"
    invoke_thumbnail(s3_put_event(stack, key, png_bomb(100_000, 100_000)))

    [logged] = [record for record in caplog.records if record.getMessage() == "image failed"]
    fields = vars(logged)  # Powertools writes the `extra` fields as JSON keys next to the message
    assert (logged.levelname, fields["outcome"], fields["key"]) == ("WARNING", "FAILED", key)
    assert fields["reason"] == RejectReason.TOO_MANY_PIXELS
    assert fields["detail"]
    assert fields["image_id"] == image_id_for(stack.ingest_bucket, key)


# ----------------------------------------------------------------------------- odd but valid


def palette_with_transparency() -> bytes:
    """Blue, with a transparent top-left block (palette index 0)."""
    image = Image.new("P", (600, 400), 1)
    image.putpalette([255, 0, 0, 20, 20, 220] + [0, 0, 0] * 254)
    ImageDraw.Draw(image).rectangle((0, 0, 149, 99), fill=0)
    return encode(image, "PNG", transparency=0)


def cmyk_jpeg(*, adobe_marker: bool = True, icc_profile: bytes | None = None) -> bytes:
    cmyk = Image.new("RGB", (640, 480), (200, 30, 30)).convert("CMYK")
    jpeg = encode(cmyk, "JPEG", quality=95, **({"icc_profile": icc_profile} if icc_profile else {}))
    return jpeg if adobe_marker else without_adobe_marker(jpeg)


def grey_16_bit_png() -> bytes:
    """A vertical 16-bit gradient, 0 at the top to 65535 at the bottom."""
    gradient = Image.linear_gradient("L").resize((600, 400)).convert("I").point(lambda value: value * 257)
    return encode(gradient.convert("I;16"), "PNG")


def test_a_1x1_image_is_never_upscaled(sandbox: HandlerSandbox) -> None:
    outcome = run_case(sandbox, "pixel.bmp", encode(Image.new("RGB", (1, 1), (10, 200, 90)), "BMP"))
    assert_succeeded(outcome, 1, 1)
    assert close(largest(outcome)["centre"], (10, 200, 90))


def test_a_1x100000_strip_keeps_one_pixel_of_width(sandbox: HandlerSandbox) -> None:
    outcome = run_case(sandbox, "strip.png", encode(Image.new("L", (1, 100_000), 128), "PNG"))
    assert_succeeded(outcome, 1, 100_000)


def test_an_animated_gif_with_thousands_of_frames_renders_its_first(sandbox: HandlerSandbox) -> None:
    outcome = run_case(sandbox, "animation.gif", animated_gif(3000))
    assert_succeeded(outcome, 64, 48)
    assert close(largest(outcome)["centre"], (220, 20, 20))


def test_palette_transparency_is_flattened_on_white(sandbox: HandlerSandbox) -> None:
    outcome = run_case(sandbox, "palette.png", palette_with_transparency())
    assert_succeeded(outcome, 600, 400)
    pixels = largest(outcome)
    assert close(pixels["top left"], WHITE)
    assert close(pixels["centre"], (20, 20, 220))


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("with adobe marker", cmyk_jpeg()),
        ("without adobe marker", cmyk_jpeg(adobe_marker=False)),
        ("with a garbage icc profile", cmyk_jpeg(icc_profile=b"not an icc profile" * 10)),
    ],
)
def test_cmyk_jpegs_render_as_rgb(sandbox: HandlerSandbox, name: str, body: bytes) -> None:
    outcome = run_case(sandbox, f"cmyk {name}.jpg", body)
    assert_succeeded(outcome, 640, 480)
    if name != "without adobe marker":  # without the marker the inks are read inverted, by design of the format
        assert close(largest(outcome)["centre"], (200, 30, 30))


def test_16_bit_greyscale_is_scaled_not_clipped(sandbox: HandlerSandbox) -> None:
    outcome = run_case(sandbox, "grey16.png", grey_16_bit_png())
    assert_succeeded(outcome, 600, 400)
    top, middle = largest(outcome)["top left"][0], largest(outcome)["centre"][0]
    assert top < 40
    assert 90 < middle < 170  # clipping at 255 would make everything below the top 0.4% white


@pytest.mark.parametrize("name", MALFORMED_EXIF)
def test_malformed_exif_never_fails_an_image(sandbox: HandlerSandbox, name: str) -> None:
    exif, orientation = MALFORMED_EXIF[name]
    stored = stored_for_orientation(scene(600, 400), orientation)
    outcome = run_case(sandbox, f"exif {name}.jpg", encode(stored, "JPEG", exif=exif))
    assert_succeeded(outcome, 600, 400)
    assert close(largest(outcome)["top left"], MARK, tolerance=40)  # displayed upright


ODD_KEYS = [
    "uploads/odd keys/a+b=c.jpg",
    "uploads/odd keys/100% cotton.jpg",
    "uploads/odd keys/%20 is not a space.jpg",
    "uploads/odd keys/a%2Bb+c %25.jpg",
    "uploads/odd keys/ünïcödé 写真 😀.jpg",
    "uploads/odd keys/question?hash#amp&.jpg",
    "uploads/odd keys/  spaces  around  .jpg",
    "uploads/odd keys/dir//double slash.jpg",
]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_keys_s3_url_encodes_arrive_intact(sandbox: HandlerSandbox, key: str) -> None:
    outcome = sandbox.run(Upload(key, make_jpeg(320, 240)))
    assert_succeeded(outcome, 320, 240)
    assert outcome.item is not None
    assert outcome.item["key"] == key
    assert outcome.events[0]["image"]["key"] == key


# ----------------------------------------------------------------------------- fuzz


def assert_known_outcome(outcome: CaseOutcome) -> None:
    """Never a crash: SUCCEEDED with every rendition stored, or FAILED with a known reason."""
    assert outcome.error is None, outcome.error
    assert outcome.peak_mb < CASE_MEMORY_BUDGET_MB
    item = outcome.item
    assert item is not None
    [published] = outcome.events
    event(f"{item['status']} {item.get('error', {}).get('reason', '')}".strip())
    if item["status"] == "SUCCEEDED":
        assert outcome.outcome == "SUCCEEDED"
        assert published["event_type"] == "ImageProcessed"
        assert sorted(r.key for r in outcome.renditions) == sorted({r["key"] for r in item["renditions"]})
        assert len(item["renditions"]) == len(SIZES)
    else:
        assert (item["status"], outcome.outcome) == ("FAILED", "FAILED")
        assert item["error"]["reason"] in KNOWN_REASONS
        assert published["event_type"] == "ImageFailed"
        assert outcome.renditions == []


# A damaged header may claim up to MAX_PIXELS and be decoded as claimed; this limit keeps any
# legitimate decode (~4.3 bytes per pixel) inside the budget.
FUZZ_ENV = (("MAX_PIXELS", "4000000"),)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(upload_bodies())
def test_any_upload_ends_succeeded_or_failed_with_a_known_reason(sandbox: HandlerSandbox, body: bytes) -> None:
    assert_known_outcome(run_case(sandbox, "fuzz.jpg", body, env=FUZZ_ENV))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_images(), st.sampled_from([(1024, 512, 128), (64,), (300, 16)]))
def test_the_core_only_ever_rejects_damaged_images_of_any_format(body: bytes, sizes: tuple[int, ...]) -> None:
    spec = RenditionSpec(sizes=sizes, max_pixels=4_000_000)
    try:
        result = make_renditions(body, spec)
    except ImageRejected as rejection:  # anything else escapes and fails the test
        event(f"rejected: {rejection.reason}")
        assert_meaningful(rejection)
        return
    event("rendered")
    assert [r.size for r in result.renditions] == sorted(sizes, reverse=True)
    for rendition in result.renditions:
        assert (rendition.width, rendition.height) == fit_within(
            result.source.width, result.source.height, rendition.size
        )


def assert_meaningful(rejection: ImageRejected) -> None:
    assert rejection.reason in RejectReason
    assert rejection.detail


def rgb_16_bit_png(width: int, height: int) -> bytes:
    """A valid 16-bit-per-channel RGB PNG (6 bytes a pixel, the costliest common decode)."""
    rows = []
    for shade in range(256):  # a few distinct rows, so the file stays small and deflates fast
        pixel = struct.pack(">HHH", shade * 257, (255 - shade) * 257, (shade * 97 % 256) * 257)
        rows.append(b"\0" + pixel * width)
    compressor = zlib.compressobj(6)
    idat = b"".join(compressor.compress(rows[y % 256]) for y in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def test_a_large_accepted_image_stays_within_the_memory_the_start_check_budgets(sandbox: HandlerSandbox) -> None:
    """The start-time check (config.memory_needed_mb) budgets PEAK_BYTES_PER_PIXEL per pixel plus
    the original: a 12 MP 16-bit PNG, rendered in full, must add no more at its peak. The budget
    is linear in pixels, so this bounds the largest accepted image at the template's MemorySize."""
    width, height = 4000, 3000
    body = rgb_16_bit_png(width, height)

    outcome = run_case(sandbox, "rgb16 12mp.png", body)

    assert outcome.error is None, outcome.error
    assert outcome.outcome == "SUCCEEDED", outcome.response
    assert outcome.item is not None
    assert (outcome.item["width"], outcome.item["height"]) == (width, height)
    assert len(outcome.renditions) == len(SIZES)
    budget_mb = (width * height * PEAK_BYTES_PER_PIXEL + len(body)) / 2**20
    assert 0 < outcome.peak_mb <= budget_mb, (outcome.peak_mb, budget_mb)
