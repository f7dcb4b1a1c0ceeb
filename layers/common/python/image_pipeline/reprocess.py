"""The steps of the reprocess workflow that are code: list the images, count the outcomes.

The state machine (statemachines/reprocess.asl.json) pages through `list_images`, re-renders
each image with ThumbnailFunction in a Map, and folds each page's results into the counts
with `tally`. Requests: {"status": "FAILED"}, {"prefix": "uploads/2026/"} or, to replay events
the thumbnailer gave up on (image_pipeline.replay), {"objects": [{"bucket": ..., "key": ...}]};
optionally with "sizes": [1024, 256] to render other sizes than the configured ones.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from image_pipeline.config import parse_sizes
from image_pipeline.keys import image_id_for
from image_pipeline.record import ImageStatus

if TYPE_CHECKING:
    from image_pipeline.repository import ImagesRepository

# What one Map iteration reports (ThumbnailFunction's outcome, or ERROR when the task was caught).
OUTCOME_COUNTS = {"SUCCEEDED": "succeeded", "FAILED": "failed", "ERROR": "errors"}
COUNT_NAMES = ("succeeded", "failed", "errors", "skipped")
# A reprocess run on BackfillStateMachine: the batch counts (rerender.BATCH_COUNTS), and the
# images whose batch failed past its retries and were failed on their items (reprocess_failed).
REPROCESS_COUNTS = ("rendered", "current", "failed", "skipped", "errors")
_SCAN_PAGES_PER_CALL = 20  # a prefix filter may leave scan pages empty: read a few per call
MAX_OBJECTS = 200  # objects one request may name: one page of the Map (its state stays small)
_SELECTORS = ("status", "prefix", "objects")


class InvalidRequest(ValueError):
    """The workflow's input cannot be served; the execution fails (top-level Catch)."""


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


def _encode_token(key: Mapping[str, Any] | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode() if key else None


def _decode_token(token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        key: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        raise InvalidRequest("next_token is not a token this workflow issued") from None
    return key


def list_images(
    repository: ImagesRepository,
    request: ReprocessRequest,
    *,
    listed_before: str,
    next_token: str | None,
    page_size: int,
) -> dict[str, Any]:
    """One page of images to reprocess, as ThumbnailFunction's direct requests, and the next token.

    By status, only items last updated before the execution started: an image that fails
    again gets a newer updated_at, and must not come round again in a later page.
    """
    start_key = _decode_token(next_token)
    if request.objects is not None:  # one page: the request names at most MAX_OBJECTS
        return {
            "images": [_object_image(repository, bucket, key, request) for bucket, key in request.objects],
            "next_token": None,
        }
    if request.status is not None:
        page = repository.status_page(
            request.status, updated_before=listed_before, start_key=start_key, limit=page_size
        )
    else:
        page = repository.scan_page(start_key, page_size, key_prefix=request.prefix)
        for _ in range(_SCAN_PAGES_PER_CALL - 1):
            if page.records or page.next_key is None:
                break
            page = repository.scan_page(page.next_key, page_size, key_prefix=request.prefix)
    images = []
    for record in page.records:
        # The version listed: RecordFailure may only fail the item while it still describes it.
        images.append(
            _image(record.image_id, record.bucket, record.key, (record.source.etag, record.source.sequencer), request)
        )
    return {"images": images, "next_token": _encode_token(page.next_key)}


def select_images(
    repository: ImagesRepository, request: ReprocessRequest, *, listed_before: str, page_size: int
) -> list[dict[str, Any]]:
    """Every image the request selects, as the items of a reprocess run's manifest (the
    Distributed Map reads them from S3): the objects to re-render and the version listed."""
    images: list[dict[str, Any]] = []
    next_token = None
    while True:
        page = list_images(repository, request, listed_before=listed_before, next_token=next_token, page_size=page_size)
        images.extend(page["images"])
        next_token = page["next_token"]
        if next_token is None:
            return images


def _image(image_id: str, bucket: str, key: str, version: tuple[str, str], request: ReprocessRequest) -> dict[str, Any]:
    """One Map item: ThumbnailFunction's direct request, and the version (etag, sequencer)
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


def tally(counts: Mapping[str, int], results: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """The counts so far plus one page of Map results."""
    total = {name: int(counts.get(name, 0)) for name in COUNT_NAMES}
    for result in results:
        total[OUTCOME_COUNTS.get(str(result.get("outcome")), "skipped")] += 1
    return total
