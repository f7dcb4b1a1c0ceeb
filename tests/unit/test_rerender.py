"""Re-render requests (reprocess, backfill): versioned renditions, batches, what a second run does."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus

import pytest

from image_pipeline.errors import TransientError
from image_pipeline.events import event_for_record
from image_pipeline.imaging import RenditionSpec
from image_pipeline.keys import image_id_for
from image_pipeline.record import ImageRecord
from pipeline_cli.imagefactory import make_jpeg
from tests.conftest import lambda_context, load_event
from tests.faults import THROTTLED, BackoffRecorder, inject
from tests.stack import TestStack

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> BackoffRecorder:
    """botocore's retry sleeps, recorded instead of slept."""
    recorder = BackoffRecorder()
    monkeypatch.setattr("botocore.endpoint.time", recorder)
    return recorder


@pytest.fixture
def uploaded(stack: TestStack, invoke_thumbnail: Invoke) -> list[str]:
    """Three images rendered on upload, as the S3 event path renders them; their keys."""
    keys = [f"uploads/library/photo {index}.jpg" for index in range(3)]
    for key in keys:
        stack.put_upload(key, make_jpeg(800, 600))
    invoke_thumbnail({"images": [{"key": key} for key in keys], "bucket": stack.ingest_bucket})
    stack.published_events()  # drained: each test counts what it causes
    return keys


def item(stack: TestStack, key: str) -> dict[str, Any]:
    found = stack.item(image_id_for(stack.ingest_bucket, key))
    assert found is not None
    return found


def batch(stack: TestStack, keys: list[str], **fields: Any) -> dict[str, Any]:
    """A backfill child's request: ListObjectsV2 entries, the bucket from the batch input."""
    return {"images": [{"Key": key, "Size": 1} for key in keys], "bucket": stack.ingest_bucket, **fields}


def test_the_spec_version_changes_with_everything_that_decides_the_bytes() -> None:
    spec = RenditionSpec(sizes=(1024, 512), format="JPEG", quality=82)
    assert len(spec.version) == 12
    assert spec.version == RenditionSpec(sizes=(1024, 512), format="JPEG", quality=82, max_pixels=1).version
    others = [RenditionSpec((1024,)), RenditionSpec((1024, 512), "WEBP"), RenditionSpec((1024, 512), quality=90)]
    assert len({spec.version, *(other.version for other in others)}) == 4


def test_renditions_and_item_carry_the_spec_version(stack: TestStack, uploaded: list[str]) -> None:
    for key in uploaded:
        found = item(stack, key)
        spec = found["rendition_spec"]
        assert all(f"/{found['source_etag']}/{spec}/" in rendition["key"] for rendition in found["renditions"])


def test_a_second_backfill_of_the_same_spec_renders_nothing(
    stack: TestStack, uploaded: list[str], invoke_thumbnail: Invoke
) -> None:
    before = {key: item(stack, key) for key in uploaded}
    files = stack.rendition_keys()

    response = invoke_thumbnail(batch(stack, uploaded))

    assert response["counts"] == {"rendered": 0, "current": 3, "failed": 0, "skipped": 0}
    assert {key: item(stack, key) for key in uploaded} == before  # not even updated_at moved
    assert stack.rendition_keys() == files
    assert stack.published_events() == []


def test_a_new_spec_re_renders_under_new_keys_removes_the_old_and_tells_consumers(
    stack: TestStack, uploaded: list[str], thumbnail_app: ModuleType
) -> None:
    before = {key: item(stack, key) for key in uploaded}
    thumbnail_app.settings = type(thumbnail_app.settings)(
        **{**vars(thumbnail_app.settings), "rendition_quality": 60}  # the operator changed RenditionQuality
    )

    response = thumbnail_app.lambda_handler(batch(stack, uploaded), lambda_context())

    assert response["counts"] == {"rendered": 3, "current": 0, "failed": 0, "skipped": 0}
    events = stack.published_events()
    assert len(events) == 3
    for key in uploaded:
        after, old = item(stack, key), before[key]
        assert after["rendition_spec"] != old["rendition_spec"]
        new_keys, old_keys = {r["key"] for r in after["renditions"]}, {r["key"] for r in old["renditions"]}
        assert not new_keys & old_keys  # never rewrites what caches hold as immutable
        assert new_keys <= set(stack.rendition_keys())
        assert not old_keys & set(stack.rendition_keys())  # superseded renditions removed
    assert {event["image"]["rendition_spec"] for event in events} == {item(stack, uploaded[0])["rendition_spec"]}
    old_ids = {event_for_record(ImageRecord.from_dict(old)).event_id for old in before.values()}
    assert not old_ids & {event["event_id"] for event in events}  # news to idempotent consumers


def test_a_poison_image_in_a_batch_is_failed_with_its_reason_and_the_others_render(
    stack: TestStack, invoke_thumbnail: Invoke
) -> None:
    keys = ["uploads/a.jpg", "uploads/poison.jpg", "uploads/c.jpg"]
    for key in keys:
        stack.put_upload(key, b"not an image at all" if "poison" in key else make_jpeg(320, 240))

    response = invoke_thumbnail(batch(stack, keys))

    assert response["counts"] == {"rendered": 2, "current": 0, "failed": 1, "skipped": 0}
    poison = item(stack, "uploads/poison.jpg")
    assert poison["status"] == "FAILED"
    assert poison["error"]["reason"]
    assert [item(stack, key)["status"] for key in (keys[0], keys[2])] == ["SUCCEEDED", "SUCCEEDED"]
    assert sorted(event["event_type"] for event in stack.published_events()) == [
        "ImageFailed",
        "ImageProcessed",
        "ImageProcessed",
    ]


def test_a_gone_object_is_skipped_with_its_reason(stack: TestStack, invoke_thumbnail: Invoke) -> None:
    stack.put_upload("uploads/here.jpg", make_jpeg(320, 240))

    response = invoke_thumbnail(batch(stack, ["uploads/here.jpg", "uploads/deleted-since-listed.jpg"]))

    assert response["counts"] == {"rendered": 1, "current": 0, "failed": 0, "skipped": 1}
    assert response["results"][1]["reason"] == "source_missing"


def test_a_throttled_image_fails_the_batch_after_the_others_and_its_retry_renders_only_it(
    stack: TestStack, invoke_thumbnail: Invoke, backoff: BackoffRecorder
) -> None:
    keys = ["uploads/t0.jpg", "uploads/t1.jpg", "uploads/t2.jpg"]
    for key in keys:
        stack.put_upload(key, make_jpeg(320, 240))
    throttled_one = inject(stack.clients.s3, "GetObject", THROTTLED["s3"], when=lambda request: "t1.jpg" in request.url)

    with throttled_one, pytest.raises(TransientError, match=r"1 of 3 images to retry: uploads/t1\.jpg"):
        invoke_thumbnail(batch(stack, keys))
    assert [item(stack, key)["status"] for key in keys] == ["SUCCEEDED", "PROCESSING", "SUCCEEDED"]

    retried = invoke_thumbnail(batch(stack, keys))  # the workflow's Retry: the same batch

    assert retried["counts"] == {"rendered": 1, "current": 2, "failed": 0, "skipped": 0}
    assert [item(stack, key)["status"] for key in keys] == ["SUCCEEDED"] * 3


def test_inventory_keys_are_url_decoded(stack: TestStack, invoke_thumbnail: Invoke) -> None:
    key = "uploads/summer 2026/ä+b.jpg"
    stack.put_upload(key, make_jpeg(320, 240))
    row = {"Bucket": stack.ingest_bucket, "Key": quote_plus(key, safe="/"), "Size": "1"}

    response = invoke_thumbnail({"images": [row], "keys_url_encoded": True})

    assert response["counts"]["rendered"] == 1
    assert item(stack, key)["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    "request_body",
    [
        {},
        {"images": "uploads/a.jpg"},
        {"images": [{"Size": 1}], "bucket": "b"},
        {"bucket": "b", "key": "k", "sizes": [1]},
    ],
)
def test_a_request_it_cannot_read_is_a_clear_error(invoke_thumbnail: Invoke, request_body: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"expected|images|without bucket|sizes"):
        invoke_thumbnail(request_body)


def test_a_new_spec_keeps_every_object_the_current_renditions_share(
    stack: TestStack, thumbnail_app: ModuleType, invoke_thumbnail: Invoke
) -> None:
    """A 300 px source: 1024 and 512 are one object at each spec (never upscaled). Removing the old
    spec's objects must leave every object the new item points at, shared or not."""
    key = "uploads/small.jpg"
    stack.put_upload(key, make_jpeg(300, 200))
    invoke_thumbnail(batch(stack, [key]))
    old = item(stack, key)
    assert len({r["key"] for r in old["renditions"]}) < len(old["renditions"])  # some sizes share an object
    thumbnail_app.settings = type(thumbnail_app.settings)(**{**vars(thumbnail_app.settings), "rendition_quality": 70})

    thumbnail_app.lambda_handler(batch(stack, [key]), lambda_context())

    new = item(stack, key)
    new_keys, old_keys = {r["key"] for r in new["renditions"]}, {r["key"] for r in old["renditions"]}
    assert len(new_keys) < len(new["renditions"])
    assert set(stack.rendition_keys()) == new_keys  # every shared object kept, every old one gone
    assert not new_keys & old_keys


def test_the_sample_batch_is_what_a_backfill_child_sends(stack: TestStack, invoke_thumbnail: Invoke) -> None:
    request = load_event("backfill-batch.json")  # ListObjectsV2 entries, as the Map's ItemBatcher hands them
    request["bucket"] = stack.ingest_bucket
    for image in request["images"]:
        stack.put_upload(image["Key"], make_jpeg(640, 480))

    response = invoke_thumbnail(request)

    assert response["counts"] == {"rendered": 2, "current": 0, "failed": 0, "skipped": 0}
    assert [result["key"] for result in response["results"]] == [image["Key"] for image in request["images"]]
