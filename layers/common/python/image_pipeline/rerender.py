"""Re-render requests, for backfill and reprocess runs (BackfillStateMachine): a batch, or one image.

ThumbnailFunction's direct request names objects by bucket and key; it renders each object's
current version with the configured spec (or `sizes`), unless the image is already rendered at
that spec (outcome CURRENT: a second backfill renders nothing).

- a batch (a child of the Distributed Map, from Step Functions' ItemBatcher): {"images": [...],
  "bucket"?: ..., "keys_url_encoded"?: bool, "sizes"?: [...]} -> {"results": [...], "counts": {...}}.
  Each image is {"bucket"/"Bucket": ..., "key"/"Key": ...} (an S3 Inventory row, a ListObjectsV2
  entry, whose bucket is the batch's, or a reprocess manifest's item). Inventory reports URL-encode
  keys: `keys_url_encoded` says so;
- one image (an operator's direct invocation): {"bucket": ..., "key": ..., "sizes"?: [...]} -> that
  image's result.

A batch renders every image it can; a transient failure (throttling, a timeout) of some images
raises TransientError after the others are done, so the workflow's Retry runs the batch again
and only those are rendered (the rest are CURRENT). An image that cannot be rendered is FAILED
on its item, with the reason, and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from image_pipeline.config import parse_sizes
from image_pipeline.errors import ImageRejected, TransientError
from image_pipeline.keys import image_id_for
from image_pipeline.thumbnailer import Outcome, Result, Thumbnailer

# A batch's results as a backfill run's summary counts them: CURRENT is already at the spec;
# STALE and IGNORED (gone since listed, not the ingest bucket's) are skipped.
BATCH_COUNTS = ("rendered", "current", "failed", "skipped")
_COUNT_OF = {Outcome.SUCCEEDED: "rendered", Outcome.CURRENT: "current", Outcome.FAILED: "failed"}


class InvalidRenderRequest(ValueError):
    """A direct request ThumbnailFunction cannot read (a workflow bug, not an image's fault)."""


@dataclass(frozen=True)
class RenderRequest:
    objects: tuple[tuple[str, str], ...]  # (bucket, key)
    sizes: tuple[int, ...] | None
    batch: bool

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> RenderRequest:
        try:
            sizes = parse_sizes(",".join(map(str, event["sizes"]))) if event.get("sizes") else None
        except ValueError as error:
            raise InvalidRenderRequest(f"sizes: {error}") from None
        if "images" not in event:
            if not event.get("bucket") or not event.get("key"):
                raise InvalidRenderRequest('expected {"bucket": ..., "key": ...} or {"images": [...]}')
            return cls(((str(event["bucket"]), str(event["key"])),), sizes, batch=False)
        images = event["images"]
        if not isinstance(images, list):
            raise InvalidRenderRequest("images must be a list")
        decode: Callable[[str], str] = unquote_plus if event.get("keys_url_encoded") else str
        objects = []
        for image in images:
            bucket = image.get("bucket") or image.get("Bucket") or event.get("bucket")
            key = image.get("key") or image.get("Key")
            if not bucket or not key:
                raise InvalidRenderRequest(f"an image without bucket and key: {image!r}")
            objects.append((str(bucket), decode(str(key))))
        return cls(tuple(objects), sizes, batch=True)


def render(
    thumbnailer: Thumbnailer, request: RenderRequest, record: Callable[[Result], None] = lambda result: None
) -> dict[str, Any]:
    """Serve a direct request; `record` sees every result (the handler's logs and metrics)."""
    if not request.batch:
        [(bucket, key)] = request.objects
        # A gone object raises ImageRejected: the caller hears why.
        result = thumbnailer.reprocess(bucket, key, sizes=request.sizes)
        record(result)
        return result.to_dict()
    results: list[dict[str, Any]] = []
    transient: list[str] = []
    for bucket, key in request.objects:
        try:
            result = thumbnailer.reprocess(bucket, key, sizes=request.sizes)
        except ImageRejected as rejection:  # gone since it was listed: nothing to render, say why
            result = Result(Outcome.IGNORED, image_id_for(bucket, key), key, rejection.reason.value, rejection.detail)
        except TransientError as error:
            transient.append(f"{key}: {error}")
            continue
        record(result)
        results.append(result.to_dict())
    if transient:
        raise TransientError(f"{len(transient)} of {len(request.objects)} images to retry: " + "; ".join(transient))
    return {"results": results, "counts": count(results)}


def count(results: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many images of a batch were rendered, already current, failed, or skipped (gone, stale)."""
    counts = dict.fromkeys(BATCH_COUNTS, 0)
    for result in results:
        counts[_COUNT_OF.get(Outcome(result["outcome"]), "skipped")] += 1
    return counts
