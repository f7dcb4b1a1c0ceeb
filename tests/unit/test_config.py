from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from image_pipeline.config import ConfigError, ThumbnailSettings, memory_needed_mb, parse_sizes
from pipeline_cli.twin.template import load_template

REQUIRED = {
    "INGEST_BUCKET": "i",
    "RENDITIONS_BUCKET": "r",
    "IMAGES_TABLE": "t",
    "EVENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t",
}


def test_defaults_fill_everything_but_the_resources() -> None:
    settings = ThumbnailSettings.from_env(REQUIRED)
    assert settings.rendition_sizes == (1024, 512, 128)
    assert settings.rendition_format == "JPEG"
    assert settings.rendition_quality == 82
    assert settings.upload_prefix == "uploads/"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        ThumbnailSettings.from_env({"RENDITION_FORMAT": "gif", "RENDITION_QUALITY": "0", "RENDITION_SIZES": "big"})
    message = str(raised.value)
    for expected in ("RENDITIONS_BUCKET is required", "IMAGES_TABLE is required", "EVENTS_TOPIC_ARN is required"):
        assert expected in message
    assert "RENDITION_FORMAT='gif'" in message
    assert "RENDITION_QUALITY='0'" in message
    assert "RENDITION_SIZES='big'" in message


def test_format_is_case_insensitive() -> None:
    assert ThumbnailSettings.from_env({**REQUIRED, "RENDITION_FORMAT": "webp"}).rendition_format == "WEBP"


@given(st.lists(st.integers(min_value=16, max_value=4096), min_size=1, max_size=6))
def test_sizes_parse_unique_and_descending(sizes: list[int]) -> None:
    parsed = parse_sizes(", ".join(map(str, sizes)))
    assert parsed == tuple(sorted(set(sizes), reverse=True))


@pytest.mark.parametrize("raw", ["", ",", "8", "5000", "12,abc", "-128"])
def test_bad_sizes_are_rejected(raw: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_sizes(raw)


def test_limits_the_function_memory_cannot_hold_fail_at_start_with_the_memory_needed() -> None:
    """MaxPixels, MaxUploadBytes and ThumbnailMemorySize are checked against each other when the
    function starts: the template's defaults fit, the same limits at 512 MB do not."""
    parameters = load_template()["Parameters"]
    limits = {
        "MAX_PIXELS": str(parameters["MaxPixels"]["Default"]),
        "MAX_SOURCE_BYTES": str(parameters["MaxUploadBytes"]["Default"]),
    }
    default_memory = str(parameters["ThumbnailMemorySize"]["Default"])
    settings = ThumbnailSettings.from_env({**REQUIRED, **limits, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": default_memory})
    assert memory_needed_mb(settings.max_pixels, settings.max_source_bytes) < int(default_memory)

    with pytest.raises(ConfigError, match=r"need about \d+ MB, the function has 512 MB"):
        ThumbnailSettings.from_env({**REQUIRED, **limits, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512"})
    smaller = {"MAX_PIXELS": "12000000", "MAX_SOURCE_BYTES": "30000000", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512"}
    assert ThumbnailSettings.from_env({**REQUIRED, **smaller}).max_pixels == 12_000_000  # what fits 512 MB
