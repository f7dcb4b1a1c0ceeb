"""Conditional writes: duplicates and out-of-order events never regress the item."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from image_pipeline.keys import ObjectRef, normalize_sequencer
from image_pipeline.record import FailureReason, ImageStatus, SourceImage
from image_pipeline.repository import ClaimOutcome, ImagesRepository
from tests.stack import TestStack

NOW = "2026-11-25T10:00:00.000Z"
LATER = "2026-11-25T10:00:05.000Z"


def ref(sequencer: str, etag: str = "etag-a", key: str = "uploads/a.jpg") -> ObjectRef:
    return ObjectRef(bucket="test-ingest", key=key, etag=etag, sequencer=sequencer, version_id=f"v-{etag}")


def image(width: int, height: int) -> SourceImage:
    return SourceImage(width=width, height=height, format="PNG", bytes=100, sha256="0" * 64)


def repository(stack: TestStack) -> ImagesRepository:
    return ImagesRepository(stack.clients.dynamodb, stack.images_table)


def test_first_claim_creates_a_processing_item(stack: TestStack) -> None:
    repo = repository(stack)
    claim = repo.claim(ref("0A"), NOW)
    assert claim.outcome is ClaimOutcome.CLAIMED
    item = repo.get(ref("0A").image_id)
    assert item is not None
    assert item.status is ImageStatus.PROCESSING
    assert item.source.sequencer == normalize_sequencer("0A")
    assert item.attempts == 1
    assert item.created_at == NOW


def test_retry_of_an_unfinished_attempt_may_claim_again(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0A"), NOW)
    assert repo.claim(ref("0A"), LATER).outcome is ClaimOutcome.CLAIMED
    item = repo.get(ref("0A").image_id)
    assert item is not None
    assert item.attempts == 2
    assert item.created_at == NOW


def test_finished_version_is_a_duplicate_and_stays_finished(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0A"), NOW)
    assert repo.mark_succeeded(ref("0A"), NOW, image(10, 5), [], "spec1") is not None
    claim = repo.claim(ref("0A"), LATER)
    assert claim.outcome is ClaimOutcome.DUPLICATE
    assert claim.previous is not None
    assert claim.previous.status is ImageStatus.SUCCEEDED
    item = repo.get(ref("0A").image_id)
    assert item is not None
    assert item.status is ImageStatus.SUCCEEDED


def test_older_event_after_newer_is_stale(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0B", etag="new"), NOW)
    repo.mark_succeeded(ref("0B", etag="new"), NOW, image(1, 1), [], "spec1")
    assert repo.claim(ref("0A", etag="old"), LATER).outcome is ClaimOutcome.STALE
    item = repo.get(ref("0A").image_id)
    assert item is not None
    assert item.source.etag == "new"
    assert item.status is ImageStatus.SUCCEEDED


def test_newer_version_takes_over_and_the_older_attempt_cannot_finish(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0A", etag="old"), NOW)
    claim = repo.claim(ref("0B", etag="new"), LATER)
    assert claim.outcome is ClaimOutcome.CLAIMED
    assert claim.previous is not None
    assert claim.previous.source.etag == "old"
    assert repo.mark_succeeded(ref("0A", etag="old"), LATER, image(1, 1), [], "spec1") is None
    assert repo.mark_failed(ref("0A", etag="old"), LATER, "corrupt", "x") is None
    finished = repo.mark_succeeded(ref("0B", etag="new"), LATER, image(2, 2), [], "spec1")
    assert finished is not None
    assert finished.image == image(2, 2)


def test_failure_records_reason_and_success_clears_it(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0A"), NOW)
    failed = repo.mark_failed(ref("0A"), NOW, "truncated", "image file is truncated")
    assert failed is not None
    assert failed.status is ImageStatus.FAILED
    assert failed.error == FailureReason("truncated", "image file is truncated")
    forced = ObjectRef(bucket="test-ingest", key="uploads/a.jpg", etag="etag-a", sequencer="")
    assert repo.claim(forced, LATER, force=True).outcome is ClaimOutcome.CLAIMED
    done = repo.mark_succeeded(forced, LATER, image(3, 3), [], "spec1")
    assert done is not None
    assert done.status is ImageStatus.SUCCEEDED
    assert done.error is None
    assert done.source.sequencer == normalize_sequencer("0A")  # reprocess keeps the ordering guard


def test_forced_reprocess_of_a_replaced_object_is_stale(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0A", etag="current"), NOW)
    forced = ObjectRef(bucket="test-ingest", key="uploads/a.jpg", etag="gone", sequencer="")
    assert repo.claim(forced, LATER, force=True).outcome is ClaimOutcome.STALE


def test_a_re_render_at_the_spec_the_item_succeeded_with_is_current_and_changes_nothing(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0A"), NOW)
    done = repo.mark_succeeded(ref("0A"), NOW, image(3, 3), [], "spec1")
    assert done is not None
    assert done.rendition_spec == "spec1"
    forced = ObjectRef(bucket="test-ingest", key="uploads/a.jpg", etag="etag-a", sequencer="")

    current = repo.claim(forced, LATER, force=True, spec_version="spec1")

    assert current.outcome is ClaimOutcome.CURRENT
    assert repo.get(done.image_id) == done  # not even updated_at or attempts moved
    assert repo.claim(forced, LATER, force=True, spec_version="spec2").outcome is ClaimOutcome.CLAIMED


def test_a_re_render_of_a_failed_item_at_the_same_spec_is_claimed(stack: TestStack) -> None:
    repo = repository(stack)
    repo.claim(ref("0A"), NOW)
    repo.mark_succeeded(ref("0A"), NOW, image(3, 3), [], "spec1")
    repo.claim(ref("0B"), LATER)
    repo.mark_failed(ref("0B"), LATER, "truncated", "image file is truncated")
    forced = ObjectRef(bucket="test-ingest", key="uploads/a.jpg", etag="etag-a", sequencer="")
    assert repo.claim(forced, LATER, force=True, spec_version="spec1").outcome is ClaimOutcome.CLAIMED


def test_status_pages_list_oldest_first(stack: TestStack) -> None:
    repo = repository(stack)
    for index in range(30):
        item_ref = ref("0A", key=f"uploads/{index:02}.jpg")
        repo.claim(item_ref, f"2026-11-25T10:00:{index:02}.000Z")
        repo.mark_failed(item_ref, f"2026-11-25T10:01:{index:02}.000Z", "corrupt", "bad")

    def listed(updated_before: str) -> list[str]:
        keys, start_key = [], None
        while True:
            page = repo.status_page(ImageStatus.FAILED, updated_before=updated_before, start_key=start_key, limit=7)
            keys += [record.key for record in page.records]
            if page.next_key is None:
                return keys
            start_key = page.next_key

    assert listed("9999") == [f"uploads/{index:02}.jpg" for index in range(30)]
    assert len(listed("2026-11-25T10:01:10.000Z")) == 10


def test_scan_reads_every_item_once_across_pages(stack: TestStack) -> None:
    repo = repository(stack)
    keys = [f"uploads/{index:02}.jpg" for index in range(25)]
    for key in keys:
        repo.claim(ref("0A", key=key), NOW)
    scanned = [record.key for record in repo.scan(page_size=7)]
    assert sorted(scanned) == keys


@given(st.integers(min_value=0, max_value=2**100), st.integers(min_value=0, max_value=2**100))
def test_normalized_sequencers_compare_like_numbers(a: int, b: int) -> None:
    assert (normalize_sequencer(f"{a:X}") < normalize_sequencer(f"{b:x}")) == (a < b)
