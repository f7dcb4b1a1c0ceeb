"""ThumbnailFunction end to end against moto S3, DynamoDB and SNS->SQS, driven by events/."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from botocore.stub import Stubber
from PIL import Image

from image_pipeline.errors import ImageRejected, RejectReason, TransientError
from image_pipeline.keys import image_id_for
from pipeline_cli.imagefactory import make_jpeg, make_png
from pipeline_cli.twin.runtime import load_handler
from tests.conftest import EVENTS_DIR, lambda_context, load_event
from tests.s3events import s3_event_for, s3_put_event
from tests.stack import TestStack

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


def rendition_image(stack: TestStack, key: str) -> Image.Image:
    body = stack.clients.s3.get_object(Bucket=stack.renditions_bucket, Key=key)["Body"].read()
    return Image.open(io.BytesIO(body))


def test_a_12_megapixel_upload_makes_renditions_an_item_and_an_event(stack: TestStack, invoke: Invoke) -> None:
    original = make_jpeg(4000, 3000)
    key = "uploads/2026/11/beach day.jpg"

    response = invoke(s3_put_event(stack, key, original))

    image_id = image_id_for(stack.ingest_bucket, key)
    assert response["results"][0]["outcome"] == "SUCCEEDED"
    item = stack.item(image_id)
    assert item is not None
    assert item["status"] == "SUCCEEDED"
    assert (item["width"], item["height"], item["format"], item["bytes"]) == (4000, 3000, "JPEG", len(original))
    assert len(item["sha256"]) == 64
    assert [r["size"] for r in item["renditions"]] == [1024, 512, 128]
    for rendition in item["renditions"]:
        image = rendition_image(stack, rendition["key"])
        assert image.format == "JPEG"
        assert image.size == (rendition["width"], rendition["height"])
        assert max(image.size) == rendition["size"]
        assert abs(image.width / image.height - 4 / 3) < 0.02
        head = stack.clients.s3.head_object(Bucket=stack.renditions_bucket, Key=rendition["key"])
        assert head["ContentType"] == "image/jpeg"
        assert "immutable" in head["CacheControl"]
    assert stack.rendition_keys() == sorted({r["key"] for r in item["renditions"]})

    [event] = stack.published_events()
    assert event["event_type"] == "ImageProcessed"
    assert event["_attributes"] == {"event_type": "ImageProcessed", "format": "JPEG"}
    assert event["image"]["image_id"] == image_id
    assert event["image"]["key"] == key
    assert event["image"]["renditions"] == item["renditions"]


@pytest.mark.parametrize("event_file", ["s3-put.json", "s3-put-unicode.json", "s3-put-nested.json"])
def test_keys_from_sample_events_are_url_decoded(stack: TestStack, invoke: Invoke, event_file: str) -> None:
    sample = load_event(event_file)["Records"][0]["s3"]["object"]
    key = unquote_plus(sample["key"])
    uploaded = stack.put_upload(key, make_png(64, 48))
    event = s3_event_for(
        stack.ingest_bucket, key, etag=uploaded["etag"], version_id=uploaded["version_id"], size=uploaded["size"]
    )
    assert event["Records"][0]["s3"]["object"]["key"] == sample["key"]  # encoded exactly like S3 does

    invoke(event)

    item = stack.item(image_id_for(stack.ingest_bucket, key))
    assert item is not None
    assert item["key"] == key
    assert item["status"] == "SUCCEEDED"


BAD_INPUTS = {
    "not an image": (b"<html><body>definitely not a jpeg</body></html>", "not_an_image"),
    "zero bytes": (b"", "empty"),
    "truncated jpeg": (make_jpeg(640, 480)[:3000], "truncated"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_recorded_failed_with_a_reason_and_announced(stack: TestStack, invoke: Invoke, name: str) -> None:
    body, reason = BAD_INPUTS[name]
    key = f"uploads/bad/{name}.jpg"

    response = invoke(s3_put_event(stack, key, body))  # no exception: a bad image is not retried

    assert response["results"][0]["outcome"] == "FAILED"
    item = stack.item(image_id_for(stack.ingest_bucket, key))
    assert item is not None
    assert item["status"] == "FAILED"
    assert item["error"]["reason"] == reason
    assert item["error"]["detail"]
    [event] = stack.published_events()
    assert event["event_type"] == "ImageFailed"
    assert event["error"] == item["error"]
    assert event["_attributes"]["event_type"] == "ImageFailed"
    assert stack.rendition_keys() == []


def test_too_many_pixels_is_rejected_from_the_header(stack: TestStack) -> None:
    limited = stack.thumbnail_env(MAX_PIXELS="1000000")
    handler = load_handler("functions/thumbnail", "app.lambda_handler", limited)
    key = "uploads/huge.png"
    handler(s3_put_event(stack, key, make_png(1200, 1000)), lambda_context())

    item = stack.item(image_id_for(stack.ingest_bucket, key))
    assert item is not None
    assert item["error"]["reason"] == "too_many_pixels"


def test_a_duplicate_event_changes_nothing_and_republishes_the_same_event(stack: TestStack, invoke: Invoke) -> None:
    key = "uploads/dup.jpg"
    event = s3_put_event(stack, key, make_jpeg(800, 600))
    invoke(event)
    first_item = stack.item(image_id_for(stack.ingest_bucket, key))
    [first_event] = stack.published_events()

    response = invoke(json.loads(json.dumps(event)))

    assert response["results"][0]["outcome"] == "DUPLICATE"
    item = stack.item(image_id_for(stack.ingest_bucket, key))
    assert item is not None
    assert first_item is not None
    assert item["updated_at"] == first_item["updated_at"]
    [again] = stack.published_events()
    assert again["event_id"] == first_event["event_id"]


def test_a_new_version_replaces_the_renditions_and_an_old_event_is_ignored(stack: TestStack, invoke: Invoke) -> None:
    key = "uploads/versioned.jpg"
    old_event = s3_put_event(stack, key, make_jpeg(800, 600))
    new_event = s3_put_event(stack, key, make_jpeg(600, 800))
    invoke(old_event)
    old_keys = stack.rendition_keys()

    invoke(new_event)
    stale = invoke(old_event)

    assert stale["results"][0]["outcome"] == "STALE"
    item = stack.item(image_id_for(stack.ingest_bucket, key))
    assert item is not None
    assert (item["width"], item["height"]) == (600, 800)
    assert item["source_etag"] == new_event["Records"][0]["s3"]["object"]["eTag"]
    assert stack.rendition_keys() == sorted({r["key"] for r in item["renditions"]})
    assert not set(old_keys) & set(stack.rendition_keys())


@pytest.mark.parametrize(("fmt", "extension"), [("WEBP", "webp"), ("AVIF", "avif")])
def test_webp_and_avif_renditions_when_configured(stack: TestStack, fmt: str, extension: str) -> None:
    handler = load_handler("functions/thumbnail", "app.lambda_handler", stack.thumbnail_env(RENDITION_FORMAT=fmt))
    key = "uploads/logo.png"
    handler(s3_put_event(stack, key, make_png(1600, 1200)), lambda_context())

    item = stack.item(image_id_for(stack.ingest_bucket, key))
    assert item is not None
    content_type = f"image/{extension}"
    assert all(r["content_type"] == content_type and r["key"].endswith(f".{extension}") for r in item["renditions"])
    image = rendition_image(stack, item["renditions"][0]["key"])
    assert (image.format, image.size) == (fmt, (1024, 768))


def test_sample_events_all_parse() -> None:
    """Every S3 sample event in events/ is an ObjectCreated event under uploads/."""
    for path in sorted(Path(EVENTS_DIR).glob("s3-*.json")):
        for record in json.loads(path.read_text(encoding="utf-8"))["Records"]:
            assert record["eventName"].startswith("ObjectCreated")
            assert unquote_plus(record["s3"]["object"]["key"]).startswith("uploads/")


@pytest.fixture
def invoke(invoke_thumbnail: Invoke) -> Invoke:
    return invoke_thumbnail


def test_a_direct_reprocess_request_re_renders_the_current_version_at_the_requested_sizes(
    stack: TestStack, invoke: Invoke
) -> None:
    request = load_event("reprocess-request.json")
    request["bucket"] = stack.ingest_bucket
    invoke(s3_put_event(stack, request["key"], make_jpeg(2000, 1500)))
    first = stack.item(image_id_for(stack.ingest_bucket, request["key"]))
    assert first is not None

    response = invoke(request)  # processed already: a reprocess renders again anyway

    assert response["outcome"] == "SUCCEEDED"
    item = stack.item(image_id_for(stack.ingest_bucket, request["key"]))
    assert item is not None
    assert [rendition["size"] for rendition in item["renditions"]] == [1024, 256]
    assert item["attempts"] == first["attempts"] + 1
    assert sorted(stack.rendition_keys()) == sorted(rendition["key"] for rendition in item["renditions"])


def test_a_direct_request_for_a_deleted_object_fails_for_good_so_the_workflow_records_it(
    stack: TestStack, invoke: Invoke
) -> None:
    # ImageRejected is not in the workflow's Retry list: caught at once and written on the item.
    with pytest.raises(ImageRejected) as raised:
        invoke({"bucket": stack.ingest_bucket, "key": "uploads/never-uploaded.jpg"})
    assert raised.value.reason is RejectReason.SOURCE_MISSING


def test_a_direct_request_that_cannot_read_the_object_metadata_is_transient(stack: TestStack, invoke: Invoke) -> None:
    stack.put_upload("uploads/there.jpg", make_jpeg(64, 48))
    with Stubber(stack.clients.s3) as s3:
        s3.add_client_error("head_object", service_error_code="ExpiredToken", http_status_code=400)
        with pytest.raises(TransientError, match="ExpiredToken"):
            invoke({"bucket": stack.ingest_bucket, "key": "uploads/there.jpg"})
    assert stack.item(image_id_for(stack.ingest_bucket, "uploads/there.jpg")) is None


def test_an_object_in_a_foreign_bucket_is_ignored_with_its_reason_and_leaves_nothing(
    stack: TestStack, invoke: Invoke
) -> None:
    """Only the ingest bucket is allow-listed: another bucket's event (or a reprocess request
    naming it) creates no item, no renditions and no event, even when the object is readable."""
    foreign = "someone-elses-bucket"
    stack.clients.s3.create_bucket(Bucket=foreign)
    body = make_jpeg(64, 48)
    put = stack.clients.s3.put_object(Bucket=foreign, Key="uploads/theirs.jpg", Body=body)
    event = s3_event_for(foreign, "uploads/theirs.jpg", etag=put["ETag"].strip('"'), version_id=None, size=len(body))

    [result] = invoke(event)["results"]
    direct = invoke({"bucket": foreign, "key": "uploads/theirs.jpg"})

    for outcome in (result, direct):
        assert (outcome["outcome"], outcome["reason"], outcome["detail"]) == ("IGNORED", "foreign_bucket", foreign)
    assert stack.item(image_id_for(foreign, "uploads/theirs.jpg")) is None
    assert stack.rendition_keys() == []
    assert stack.published_events() == []
