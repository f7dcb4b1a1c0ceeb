"""The ImagesTable item, typed: ImageRecord to the item and back, in memory and through DynamoDB."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from image_pipeline.keys import normalize_sequencer
from image_pipeline.record import (
    FailureReason,
    ImageRecord,
    ImageStatus,
    InvalidRecord,
    SourceImage,
    SourceVersion,
    StoredRendition,
)
from image_pipeline.repository import ImagesRepository
from tests.stack import TestStack

# DynamoDB numbers hold 38 digits; sizes and counts are far below.
counts = st.integers(min_value=0, max_value=2**63)
texts = st.text(max_size=40)
timestamps = st.datetimes().map(lambda moment: moment.isoformat(timespec="milliseconds") + "Z")

source_images = st.builds(
    SourceImage, width=counts, height=counts, format=texts, bytes=counts, sha256=st.text("0123456789abcdef")
)
renditions = st.builds(
    StoredRendition, size=counts, width=counts, height=counts, key=texts, bytes=counts, content_type=texts
)
failures = st.builds(FailureReason, reason=texts, detail=texts, cause=st.none() | texts)
records = st.builds(
    ImageRecord,
    image_id=st.text(min_size=1, max_size=40),  # a key attribute: DynamoDB refuses an empty one
    bucket=texts,
    key=texts,
    status=st.sampled_from(ImageStatus),
    source=st.builds(
        SourceVersion,
        etag=texts,
        sequencer=st.text("0123456789ABCDEF", min_size=1).map(normalize_sequencer),
        version_id=st.none() | texts,
    ),
    created_at=timestamps,
    updated_at=timestamps,
    attempts=counts,
    image=st.none() | source_images,
    renditions=st.lists(renditions, max_size=4).map(tuple),
    error=st.none() | failures,
    rendition_spec=st.none() | st.text("0123456789abcdef", min_size=12, max_size=12),
)


def succeeded_record() -> ImageRecord:
    return ImageRecord(
        image_id="5f1c0a3e9b7d4c2a8e6f1b3d5a7c9e0f",
        bucket="ingest",
        key="uploads/cat.jpg",
        status=ImageStatus.SUCCEEDED,
        source=SourceVersion(etag="9b2cf535f27731c974343645a3985328", sequencer="0" * 14 + "0055AED6DCD90281E5"),
        created_at="2026-11-25T09:30:01.907Z",
        updated_at="2026-11-25T09:30:02.481Z",
        attempts=1,
        image=SourceImage(width=4032, height=3024, format="JPEG", bytes=2_811_904, sha256="ab" * 32),
        renditions=(
            StoredRendition(
                size=256,
                width=256,
                height=192,
                key="renditions/5f1c0a3e9b7d4c2a8e6f1b3d5a7c9e0f/9b2cf535f27731c974343645a3985328/256.webp",
                bytes=9_120,
                content_type="image/webp",
            ),
        ),
    )


@given(records)
def test_a_record_survives_the_item_form_unchanged(record: ImageRecord) -> None:
    assert ImageRecord.from_item(record.to_item()) == record
    assert ImageRecord.from_dict(record.to_dict()) == record


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # shared machine
@given(record=records)
def test_a_record_survives_dynamodb_unchanged(stack: TestStack, record: ImageRecord) -> None:
    stack.clients.dynamodb.put_item(TableName=stack.images_table, Item=record.to_item())
    assert ImagesRepository(stack.clients.dynamodb, stack.images_table).get(record.image_id) == record


def test_the_item_is_flat_with_the_attribute_names_events_and_the_workflow_use() -> None:
    item = succeeded_record().to_dict()
    assert item == {
        "image_id": "5f1c0a3e9b7d4c2a8e6f1b3d5a7c9e0f",
        "bucket": "ingest",
        "key": "uploads/cat.jpg",
        "status": "SUCCEEDED",
        "created_at": "2026-11-25T09:30:01.907Z",
        "updated_at": "2026-11-25T09:30:02.481Z",
        "attempts": 1,
        "source_etag": "9b2cf535f27731c974343645a3985328",
        "source_sequencer": "000000000000000055AED6DCD90281E5",
        "width": 4032,
        "height": 3024,
        "format": "JPEG",
        "bytes": 2_811_904,
        "sha256": "ab" * 32,
        "renditions": [
            {
                "size": 256,
                "width": 256,
                "height": 192,
                "key": "renditions/5f1c0a3e9b7d4c2a8e6f1b3d5a7c9e0f/9b2cf535f27731c974343645a3985328/256.webp",
                "bytes": 9_120,
                "content_type": "image/webp",
            }
        ],
    }
    assert succeeded_record().to_item()["attempts"] == {"N": "1"}
    assert succeeded_record().to_item()["renditions"]["L"][0]["M"]["size"] == {"N": "256"}


def test_the_failure_the_reprocess_workflow_records_is_read_with_its_cause() -> None:
    # What statemachines/backfill.asl.json's RecordFailure step (a reprocess run) writes over a claimed item.
    item = succeeded_record().to_dict() | {
        "status": "FAILED",
        "error": {"reason": "reprocess_failed", "detail": "ImageRejected", "cause": '{"errorMessage": "gone"}'},
    }
    record = ImageRecord.from_dict(item)
    assert record.status is ImageStatus.FAILED
    assert record.error == FailureReason("reprocess_failed", "ImageRejected", '{"errorMessage": "gone"}')
    assert record.to_dict() == item


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "DONE"}, "status 'DONE' is not one of"),
        ({"attempts": "1"}, "'attempts' is str, expected int"),
        ({"width": True}, "'width' is bool, expected int"),
        ({"error": {"reason": "corrupt"}}, "error: no 'detail'"),
        ({"renditions": [{"size": 256}]}, "rendition: no 'width'"),
    ],
)
def test_an_item_that_is_not_an_image_record_is_refused_with_what_is_wrong(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRecord, match=message) as refused:
        ImageRecord.from_dict(succeeded_record().to_dict() | change)
    assert "5f1c0a3e9b7d4c2a8e6f1b3d5a7c9e0f" in str(refused.value)  # names the item


@pytest.mark.parametrize("attribute", ["image_id", "status", "source_etag", "source_sequencer", "updated_at"])
def test_an_item_missing_a_required_attribute_is_refused(attribute: str) -> None:
    item = succeeded_record().to_dict()
    del item[attribute]
    with pytest.raises(InvalidRecord, match=f"no '{attribute}'"):
        ImageRecord.from_dict(item)
