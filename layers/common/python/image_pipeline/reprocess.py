"""The steps of the reprocess workflow that are code: list the images, count the outcomes.

The state machine (statemachines/reprocess.asl.json) pages through `list_images`, re-renders
each image with ThumbnailFunction in a Map, and folds each page's results into the counts
with `tally`. Requests: {"status": "FAILED"} or {"prefix": "uploads/2026/"}, optionally with
"sizes": [1024, 256] to render other sizes than the configured ones.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from image_pipeline.config import parse_sizes
from image_pipeline.record import ImageStatus

if TYPE_CHECKING:
    from image_pipeline.repository import ImagesRepository

# What one Map iteration reports (ThumbnailFunction's outcome, or ERROR when the task was caught).
OUTCOME_COUNTS = {"SUCCEEDED": "succeeded", "FAILED": "failed", "ERROR": "errors"}
COUNT_NAMES = ("succeeded", "failed", "errors", "skipped")
_SCAN_PAGES_PER_CALL = 20  # a prefix filter may leave scan pages empty: read a few per call


class InvalidRequest(ValueError):
    """The workflow's input cannot be served; the execution fails (top-level Catch)."""


@dataclass(frozen=True)
class ReprocessRequest:
    status: ImageStatus | None
    prefix: str | None
    sizes: tuple[int, ...] | None

    @classmethod
    def parse(cls, request: Mapping[str, Any]) -> ReprocessRequest:
        unknown = set(request) - {"status", "prefix", "sizes"}
        if unknown:
            raise InvalidRequest(f"unknown fields {sorted(unknown)}; expected status or prefix, and sizes")
        if ("status" in request) == ("prefix" in request):
            raise InvalidRequest('give exactly one of {"status": "FAILED"} or {"prefix": "uploads/..."}')
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
        return cls(status, prefix, sizes)


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
        image: dict[str, Any] = {
            "image_id": record.image_id,
            "bucket": record.bucket,
            "key": record.key,
            "source_etag": record.source.etag,
            "source_sequencer": record.source.sequencer,
        }
        if request.sizes:
            image["sizes"] = list(request.sizes)
        images.append(image)
    return {"images": images, "next_token": _encode_token(page.next_key)}


def tally(counts: Mapping[str, int], results: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """The counts so far plus one page of Map results."""
    total = {name: int(counts.get(name, 0)) for name in COUNT_NAMES}
    for result in results:
        total[OUTCOME_COUNTS.get(str(result.get("outcome")), "skipped")] += 1
    return total
