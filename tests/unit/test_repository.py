"""Conditional writes: duplicates and out-of-order events never regress the item."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from image_pipeline.keys import ObjectRef, normalize_sequencer
from image_pipeline.repository import ClaimOutcome, ImagesRepository, ImageStatus
from tests.stack import TestStack

NOW = "2026-11-25T10:00:00.000Z"
LATER = "2026-11-25T10:00:05.000Z"


def ref(sequencer: str, etag: str = "etag-a", key: str = "uploads/a.jpg") -> ObjectRef:
    return ObjectRef(bucket="test-ingest", key=key, etag=etag, sequencer=sequencer, version_id=f"v-{etag}")


def repository(stack: TestStack) -> ImagesRepository:
    return ImagesRepository(stack.clients.dynamodb, stack.images_table)


def test_first_claim_creates_a_processing_item(stack: TestStack) -> None:
    repo = repository(stack)
    claim = repo.claim(ref("0A"), NOW)
    assert claim.outcome is ClaimOutcome.CLAIMED
    item = repo.get(ref("0A").image_id)
    assert item is not None
    assert item["status"] == ImageStatus.PROCESSING
    assert item["source_sequencer"] == normalize_sequencer("0A")
    assert item["attempts"] == 1
    assert item["created_at"] == NOW


def test_retry_of_an_unfinished_attempt_may_claim_again(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0A"), NOW)
    assert repo.claim(ref("0A"), LATER).outcome is ClaimOutcome.CLAIMED
    item = repo.get(ref("0A").image_id)
    assert item is not None
    assert item["attempts"] == 2
    assert item["created_at"] == NOW


def test_finished_version_is_a_duplicate_and_stays_finished(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0A"), NOW)
    assert repo.mark_succeeded(ref("0A"), NOW, {"width": 10, "height": 5}, []) is not None
    claim = repo.claim(ref("0A"), LATER)
    assert claim.outcome is ClaimOutcome.DUPLICATE
    assert claim.previous is not None
    assert claim.previous["status"] == ImageStatus.SUCCEEDED
    item = repo.get(ref("0A").image_id)
    assert item is not None
    assert item["status"] == ImageStatus.SUCCEEDED


def test_older_event_after_newer_is_stale(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0B", etag="new"), NOW)
    repo.mark_succeeded(ref("0B", etag="new"), NOW, {"width": 1, "height": 1}, [])
    assert repo.claim(ref("0A", etag="old"), LATER).outcome is ClaimOutcome.STALE
    item = repo.get(ref("0A").image_id)
    assert item is not None
    assert item["source_etag"] == "new"
    assert item["status"] == ImageStatus.SUCCEEDED


def test_newer_version_takes_over_and_the_older_attempt_cannot_finish(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0A", etag="old"), NOW)
    claim = repo.claim(ref("0B", etag="new"), LATER)
    assert claim.outcome is ClaimOutcome.CLAIMED
    assert claim.previous is not None
    assert claim.previous["source_etag"] == "old"
    assert repo.mark_succeeded(ref("0A", etag="old"), LATER, {"width": 1, "height": 1}, []) is None
    assert repo.mark_failed(ref("0A", etag="old"), LATER, "corrupt", "x") is None
    finished = repo.mark_succeeded(ref("0B", etag="new"), LATER, {"width": 2, "height": 2}, [])
    assert finished is not None
    assert finished["width"] == 2


def test_failure_records_reason_and_success_clears_it(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0A"), NOW)
    failed = repo.mark_failed(ref("0A"), NOW, "truncated", "image file is truncated")
    assert failed is not None
    assert failed["status"] == ImageStatus.FAILED
    assert failed["error"] == {"reason": "truncated", "detail": "image file is truncated"}
    forced = ObjectRef(bucket="test-ingest", key="uploads/a.jpg", etag="etag-a", sequencer="")
    assert repo.claim(forced, LATER, force=True).outcome is ClaimOutcome.CLAIMED
    done = repo.mark_succeeded(forced, LATER, {"width": 3, "height": 3}, [])
    assert done is not None
    assert done["status"] == ImageStatus.SUCCEEDED
    assert "error" not in done
    assert done["source_sequencer"] == normalize_sequencer("0A")  # reprocess keeps the ordering guard


def test_forced_reprocess_of_a_replaced_object_is_stale(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0A", etag="current"), NOW)
    forced = ObjectRef(bucket="test-ingest", key="uploads/a.jpg", etag="gone", sequencer="")
    assert repo.claim(forced, LATER, force=True).outcome is ClaimOutcome.STALE


def test_by_status_pages_oldest_first(stack: TestStack) -> None:
    repo = repository(stack)
    for index in range(30):
        item_ref = ref("0A", key=f"uploads/{index:02}.jpg")
        repo.claim(item_ref, f"2026-11-25T10:00:{index:02}.000Z")
        repo.mark_failed(item_ref, f"2026-11-25T10:01:{index:02}.000Z", "corrupt", "bad")
    failed = list(repo.by_status(ImageStatus.FAILED))
    assert [item["key"] for item in failed] == [f"uploads/{index:02}.jpg" for index in range(30)]
    assert len(list(repo.by_status(ImageStatus.FAILED, updated_before="2026-11-25T10:01:10.000Z"))) == 10


@given(st.integers(min_value=0, max_value=2**100), st.integers(min_value=0, max_value=2**100))
def test_normalized_sequencers_compare_like_numbers(a: int, b: int) -> None:
    assert (normalize_sequencer(f"{a:X}") < normalize_sequencer(f"{b:x}")) == (a < b)
