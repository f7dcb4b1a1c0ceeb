"""ThumbnailFunction on what phones upload: HEIC events, one object for byte-identical
renditions, animation frames in the item, encoder refusals as FAILED."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import pytest
from PIL import Image

from image_pipeline.keys import image_id_for
from pipeline_cli.imagefactory import MARK, make_animated_gif, make_heic, make_jpeg
from tests.conftest import load_event
from tests.s3events import s3_event_for, s3_put_event
from tests.stack import TestStack

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture
def invoke(invoke_thumbnail: Invoke) -> Invoke:
    return invoke_thumbnail


def test_the_heic_sample_event_renders_an_iphone_photo_upright(stack: TestStack, invoke: Invoke) -> None:
    key = unquote_plus(load_event("s3-put-heic.json")["Records"][0]["s3"]["object"]["key"])
    uploaded = stack.put_upload(key, make_heic(1200, 1600, orientation=6))
    invoke(s3_event_for(stack.ingest_bucket, key, **uploaded))

    item = stack.item(image_id_for(stack.ingest_bucket, key))
    assert item is not None
    assert (item["status"], item["format"], item["width"], item["height"]) == ("SUCCEEDED", "HEIF", 1200, 1600)
    assert [(r["size"], r["width"], r["height"]) for r in item["renditions"]] == [
        (1024, 768, 1024),
        (512, 384, 512),
        (128, 96, 128),
    ]
    body = stack.clients.s3.get_object(Bucket=stack.renditions_bucket, Key=item["renditions"][0]["key"])["Body"]
    with Image.open(body) as image:
        pixel = image.convert("RGB").getpixel((20, 20))
    assert isinstance(pixel, tuple)
    assert all(abs(value - mark) < 50 for value, mark in zip(pixel, MARK, strict=True))  # drawn top-left


def test_sizes_larger_than_the_source_are_one_object_every_size_points_at(stack: TestStack, invoke: Invoke) -> None:
    key = "uploads/small/icon.jpg"
    invoke(s3_put_event(stack, key, make_jpeg(300, 200)))

    item = stack.item(image_id_for(stack.ingest_bucket, key))
    assert item is not None
    by_size = {r["size"]: r for r in item["renditions"]}
    assert sorted(by_size) == [128, 512, 1024]
    assert by_size[1024]["key"] == by_size[512]["key"]  # the same 300x200 picture
    assert by_size[1024]["key"].endswith("/512.jpg")  # named after the smallest size it serves
    assert (by_size[1024]["width"], by_size[1024]["height"]) == (300, 200)
    assert by_size[128]["key"] != by_size[512]["key"]
    assert stack.rendition_keys() == sorted({by_size[512]["key"], by_size[128]["key"]})  # two objects, not three


def test_an_animation_is_recorded_with_its_frame_count(stack: TestStack, invoke: Invoke) -> None:
    key = "uploads/anim.gif"
    invoke(s3_put_event(stack, key, make_animated_gif(64, 48, [(200, 0, 0), (0, 200, 0), (0, 0, 200)])))
    item = stack.item(image_id_for(stack.ingest_bucket, key))
    assert item is not None
    assert (item["status"], item["frames"]) == ("SUCCEEDED", 3)


def test_an_encoder_refusal_ends_failed_not_processing(
    stack: TestStack, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = s3_put_event(stack, "uploads/odd.jpg", make_jpeg(640, 480))

    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError("encoder error -2")

    monkeypatch.setattr(Image.Image, "save", refuse)
    response = invoke(json.loads(json.dumps(event)))  # returns: nothing for Lambda to retry

    assert response["results"][0]["outcome"] == "FAILED"
    item = stack.item(image_id_for(stack.ingest_bucket, "uploads/odd.jpg"))
    assert item is not None
    assert (item["status"], item["error"]["reason"]) == ("FAILED", "unencodable")
    assert [event["event_type"] for event in stack.published_events()] == ["ImageFailed"]
    assert stack.rendition_keys() == []


def test_the_report_says_what_frame_the_renditions_show() -> None:
    from pipeline_cli.commands.demo_report import ImageRow

    assert ImageRow("a.gif", "SUCCEEDED", format="GIF", frames=3).frames_note == "first frame of an animation of 3"
    burst = ImageRow("b.heic", "SUCCEEDED", format="HEIF", frames=2)
    assert burst.frames_note == "primary image of 2 (sequence or burst)"
    assert ImageRow("c.jpg", "SUCCEEDED", format="JPEG").frames_note == ""
    assert ImageRow("d.gif", "FAILED", format="GIF", frames=3).frames_note == ""
