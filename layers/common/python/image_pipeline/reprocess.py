"""The reprocess run's code steps: which images a request selects, as the run's manifest.

BackfillStateMachine's reprocess source (statemachines/backfill.asl.json) writes the selected
images as a JSON manifest (ReprocessStepsFunction, `select_images`) that its Distributed Map reads
and renders in batches like a backfill. Requests: {"status": "FAILED"}, {"prefix": "uploads/2026/"}
or, to replay events the thumbnailer gave up on (image_pipeline.replay), {"objects": [{"bucket":
..., "key": ...}]}; optionally with "sizes": [1024, 256] to render other sizes than the configured ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from image_pipeline.config import parse_sizes
from image_pipeline.keys import image_id_for
from image_pipeline.record import ImageStatus

if TYPE_CHECKING:
    from image_pipeline.repository import ImagesRepository

# A reprocess run on BackfillStateMachine: the batch counts (rerender.BATCH_COUNTS), and the
# images whose batch failed past its retries and were failed on their items (reprocess_failed).
REPROCESS_COUNTS = ("rendered", "current", "failed", "skipped", "errors")
MAX_OBJECTS = 200  # objects one request may name (a replay's batch of records)
_SELECTORS = ("status", "prefix", "objects")


class InvalidRequest(ValueError):
    """The run's input cannot be served; the execution fails (ReprocessFailed says why)."""


@dataclass(frozen=True)
class ReprocessRequest:
    status: ImageStatus | None
    prefix: str | None
    sizes: tuple[int, ...] | None
    objects: tuple[tuple[str, str], ...] | None = None  # (bucket, key)

    @classmethod
    def parse(cls, request: Mapping[str, Any]) -> ReprocessRequest:
        unknown = set(request) - {*_SELECTORS, "sizes"}
        if unknown:
            raise InvalidRequest(f"unknown fields {sorted(unknown)}; expected status, prefix or objects, and sizes")
        if sum(selector in request for selector in _SELECTORS) != 1:
            raise InvalidRequest(
                'give exactly one of {"status": "FAILED"}, {"prefix": "uploads/..."} or {"objects": [...]}'
            )
        status = None
        if "status" in request:
            try:
                status = ImageStatus(str(request["status"]))
            except ValueError:
                raise InvalidRequest(f"status must be one of {[s.value for s in ImageStatus]}") from None
        prefix = request.get("prefix")
        if prefix is not None and (not isinstance(prefix, str) or not prefix):
            raise InvalidRequest("prefix must be a non-empty string")
        sizes = None
        if request.get("sizes") is not None:
            try:
                sizes = parse_sizes(",".join(str(size) for size in request["sizes"]))
            except (TypeError, ValueError) as error:
                raise InvalidRequest(f"sizes: {error}") from None
        return cls(status, prefix, sizes, _objects(request["objects"]) if "objects" in request else None)


def _objects(objects: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(objects, list) or not 1 <= len(objects) <= MAX_OBJECTS:
        raise InvalidRequest(f"objects must be a list of 1 to {MAX_OBJECTS} {{bucket, key}} objects")
    parsed = []
    for entry in objects:
        if not (isinstance(entry, dict) and set(entry) == {"bucket", "key"}) or not all(
            isinstance(value, str) and value for value in entry.values()
        ):
            raise InvalidRequest(f"each object is {{bucket, key}} with non-empty strings, not {entry!r}")
        parsed.append((entry["bucket"], entry["key"]))
    return tuple(dict.fromkeys(parsed))


def select_images(
    repository: ImagesRepository, request: ReprocessRequest, *, listed_before: str, page_size: int
) -> list[dict[str, Any]]:
    """Every image the request selects, as the items of the run's manifest: the object to
    re-render and the version listed (RecordFailures may fail the item only while it still
    describes it).

    By status, only items last updated before the run started: an image that fails again gets a
    newer updated_at. A prefix is a Scan, read page by page (a page may hold no match).
    """
    if request.objects is not None:
        return [_object_image(repository, bucket, key, request) for bucket, key in request.objects]
    images: list[dict[str, Any]] = []
    start_key: Mapping[str, Any] | None = None
    while True:
        if request.status is not None:
            page = repository.status_page(
                request.status, updated_before=listed_before, start_key=start_key, limit=page_size
            )
        else:
            page = repository.scan_page(start_key, page_size, key_prefix=request.prefix)
        for record in page.records:
            version = (record.source.etag, record.source.sequencer)
            images.append(_image(record.image_id, record.bucket, record.key, version, request))
        if page.next_key is None:
            return images
        start_key = page.next_key


def _image(image_id: str, bucket: str, key: str, version: tuple[str, str], request: ReprocessRequest) -> dict[str, Any]:
    """One manifest item: the object ThumbnailFunction renders, and the version (etag, sequencer)
    RecordFailure may fail."""
    image: dict[str, Any] = {
        "image_id": image_id,
        "bucket": bucket,
        "key": key,
        "source_etag": version[0],
        "source_sequencer": version[1],
    }
    if request.sizes:
        image["sizes"] = list(request.sizes)
    return image


def _object_image(repository: ImagesRepository, bucket: str, key: str, request: ReprocessRequest) -> dict[str, Any]:
    """An object a replay names: its item's version if it has one (no item: nothing to fail)."""
    image_id = image_id_for(bucket, key)
    record = repository.get(image_id)
    version = (record.source.etag, record.source.sequencer) if record else ("", "")
    return _image(image_id, bucket, key, version, request)
