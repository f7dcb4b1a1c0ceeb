"""The thumbnailing use case: one object version in, renditions + item + event out.

Order matters for the promises in docs/reliability.md: claim the version (conditional), read
it, render, upload every rendition, only then mark SUCCEEDED (conditional), then publish. A
crash anywhere leaves PROCESSING (retried by Lambda, or timed out by the cleanup job), never a
SUCCEEDED item without its renditions. Bad images end FAILED with a reason and are not retried;
AWS failures surface as TransientError so Lambda / Step Functions retry.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from image_pipeline import imaging
from image_pipeline.errors import ImageRejected, RejectReason, TransientError
from image_pipeline.events import EventPublisher, event_for_record
from image_pipeline.keys import ObjectRef, image_id_for, rendition_key
from image_pipeline.record import SourceImage, StoredRendition
from image_pipeline.repository import ClaimOutcome, ImagesRepository

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from image_pipeline.config import ThumbnailSettings

logger = Logger(child=True)

_MISSING_SOURCE_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
# Renditions live under a per-version path, so they never change: let caches keep them.
_RENDITION_CACHE_CONTROL = "public, max-age=31536000, immutable"


class Outcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    DUPLICATE = "DUPLICATE"  # this version was already done; its event was re-published
    STALE = "STALE"  # a newer version of the key is (being) processed
    IGNORED = "IGNORED"  # not the ingest bucket, or outside the upload prefix
    CURRENT = "CURRENT"  # a re-render request, and this version is already rendered at this spec


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    image_id: str
    key: str
    reason: str | None = None
    detail: str | None = None
    renditions: int = 0
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "image_id": self.image_id,
            "key": self.key,
            "reason": self.reason,
            "detail": self.detail,
            "renditions": self.renditions,
            "duration_ms": round(self.duration_ms, 1),
        }


def rendition_spec(settings: ThumbnailSettings, sizes: tuple[int, ...] | None = None) -> imaging.RenditionSpec:
    """What the handler renders with these settings (`make bench` measures the same)."""
    return imaging.RenditionSpec(
        sizes=sizes or settings.rendition_sizes,
        format=settings.rendition_format,
        quality=settings.rendition_quality,
        max_pixels=settings.max_pixels,
    )


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def _aws_errors_are_transient(action: str) -> Iterator[None]:
    """botocore has already retried with backoff; what still fails is for Lambda to retry."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise TransientError(f"{action} failed: {error}") from error


@contextmanager
def _missing_source_is_rejected(action: str) -> Iterator[None]:
    """A gone object can never be processed (no retry brings it back); other failures can."""
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in _MISSING_SOURCE_CODES:
            raise ImageRejected(RejectReason.SOURCE_MISSING, f"the object is gone ({code})") from error
        raise TransientError(f"{action} failed: {error}") from error
    except BotoCoreError as error:
        raise TransientError(f"{action} failed: {error}") from error


class Thumbnailer:
    def __init__(
        self,
        settings: ThumbnailSettings,
        s3: S3Client,
        repository: ImagesRepository,
        publisher: EventPublisher,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.settings = settings
        self._s3 = s3
        self._repository = repository
        self._publisher = publisher
        self._clock = clock

    def spec(self, sizes: tuple[int, ...] | None = None) -> imaging.RenditionSpec:
        return rendition_spec(self.settings, sizes)

    def current_version(self, bucket: str, key: str) -> ObjectRef:
        """The object's current version, for a request that names only bucket and key (reprocess).

        Raises ImageRejected (source_missing) when it is gone, TransientError on other failures.
        """
        with _missing_source_is_rejected(f"reading the metadata of s3://{bucket}/{key}"):
            head = self._s3.head_object(Bucket=bucket, Key=key)
        return ObjectRef(
            bucket=bucket, key=key, etag=head["ETag"].strip('"'), sequencer="", version_id=head.get("VersionId")
        )

    def reprocess(self, bucket: str, key: str, *, sizes: tuple[int, ...] | None = None) -> Result:
        """Re-render the object's current version (a direct request), even if it was done before,
        unless it is already rendered at the spec asked for (CURRENT)."""
        if ignored := self._not_ours(bucket, key):
            return ignored
        return self.process(self.current_version(bucket, key), force=True, sizes=sizes)

    def _not_ours(self, bucket: str, key: str) -> Result | None:
        """Only the ingest bucket's uploads are ours: a foreign bucket's objects must not create
        items (the cleanup job cannot read their originals) or renditions."""
        if bucket != self.settings.ingest_bucket:
            logger.warning("object in a foreign bucket ignored", extra={"bucket": bucket, "key": key})
            return Result(Outcome.IGNORED, image_id_for(bucket, key), key, reason="foreign_bucket", detail=bucket)
        if not key.startswith(self.settings.upload_prefix):
            return Result(
                Outcome.IGNORED, image_id_for(bucket, key), key, detail=f"not under {self.settings.upload_prefix}"
            )
        return None

    def process(self, ref: ObjectRef, *, force: bool = False, sizes: tuple[int, ...] | None = None) -> Result:
        started = time.perf_counter()
        if ignored := self._not_ours(ref.bucket, ref.key):
            return ignored
        spec = self.spec(sizes)
        current_spec = spec.version if force else None  # a re-render request skips what is current
        with _aws_errors_are_transient("claiming the image item"):
            claim = self._repository.claim(ref, self._clock(), force=force, spec_version=current_spec)
        not_claimed = {
            ClaimOutcome.CURRENT: (Outcome.CURRENT, f"already rendered at spec {spec.version}"),
            ClaimOutcome.STALE: (Outcome.STALE, "a newer version is recorded"),
        }
        if claim.outcome in not_claimed:
            outcome, detail = not_claimed[claim.outcome]
            return Result(outcome, ref.image_id, ref.key, detail=detail)
        if claim.outcome is ClaimOutcome.DUPLICATE:
            # Re-publish the recorded outcome: heals a crash between the item write and publish;
            # the event id is the same, so idempotent consumers deliver it once.
            if claim.previous is not None:
                with _aws_errors_are_transient("re-publishing the image event"):
                    self._publisher.publish(event_for_record(claim.previous))
            return Result(Outcome.DUPLICATE, ref.image_id, ref.key, detail="this version was already processed")

        previous_renditions = claim.previous.rendition_keys if claim.previous else frozenset()
        try:
            data, ref = self._read_source(ref)
            rendered = imaging.make_renditions(data, spec)
        except ImageRejected as rejection:
            return self._fail(ref, rejection, started)

        uploaded = self._upload(ref, spec.version, rendered.renditions)
        source = SourceImage(
            width=rendered.source.width,
            height=rendered.source.height,
            format=rendered.source.format,
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            frames=rendered.source.frames,
        )
        with _aws_errors_are_transient("recording the image item"):
            record = self._repository.mark_succeeded(ref, self._clock(), source, uploaded, spec.version)
        if record is None:
            # A newer version claimed the item while we rendered; our files are under our own
            # etag path and the cleanup job removes them as orphans.
            return Result(Outcome.STALE, ref.image_id, ref.key, detail="superseded while processing")
        with _aws_errors_are_transient("publishing the image event"):
            self._publisher.publish(event_for_record(record))
        self._delete_renditions(previous_renditions - record.rendition_keys)
        return Result(
            Outcome.SUCCEEDED,
            ref.image_id,
            ref.key,
            renditions=len(uploaded),
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    def _read_source(self, ref: ObjectRef) -> tuple[bytes, ObjectRef]:
        """The exact version the event names (when versioned), refusing what cannot fit in memory."""
        request: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.version_id:
            request["VersionId"] = ref.version_id
        with _missing_source_is_rejected(f"reading s3://{ref.bucket}/{ref.key}"):
            response = self._s3.get_object(**request)
        length = response["ContentLength"]
        if length > self.settings.max_source_bytes:
            response["Body"].close()
            raise ImageRejected(
                RejectReason.TOO_LARGE, f"{length} bytes exceeds the {self.settings.max_source_bytes} byte limit"
            )
        with _aws_errors_are_transient("reading the object body"):
            data = response["Body"].read()
        # The etag of what we actually read names the rendition path (the event's may be absent).
        return data, replace(ref, etag=ref.etag or response["ETag"].strip('"'))

    def _upload(
        self, ref: ObjectRef, spec_version: str, renditions: tuple[imaging.Rendition, ...]
    ) -> list[StoredRendition]:
        """One object per distinct body: sizes larger than the source render the same bytes, so
        they share the object named after the smallest of them (see record: renditions)."""
        keys: dict[bytes, str] = {}
        for rendition in sorted(renditions, key=lambda r: r.size):
            keys.setdefault(
                rendition.body,
                rendition_key(
                    ref.image_id, ref.etag, spec_version, rendition.size, imaging.EXTENSIONS[rendition.format]
                ),
            )
        stored = {rendition.body: rendition for rendition in renditions}

        def put(body: bytes) -> None:
            self._s3.put_object(
                Bucket=self.settings.renditions_bucket,
                Key=keys[body],
                Body=body,
                ContentType=stored[body].content_type,
                CacheControl=_RENDITION_CACHE_CONTROL,
                Metadata={"image-id": ref.image_id, "source-etag": ref.etag, "rendition-spec": spec_version},
            )

        # Uploads are I/O bound: overlap them (the CPU work is already done).
        workers = min(self.settings.upload_concurrency, len(keys)) or 1
        with _aws_errors_are_transient("uploading renditions"), ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(put, keys))
        return [
            StoredRendition(
                size=rendition.size,
                width=rendition.width,
                height=rendition.height,
                key=keys[rendition.body],
                bytes=len(rendition.body),
                content_type=rendition.content_type,
            )
            for rendition in renditions
        ]

    def _fail(self, ref: ObjectRef, rejection: ImageRejected, started: float) -> Result:
        with _aws_errors_are_transient("recording the failure"):
            record = self._repository.mark_failed(ref, self._clock(), rejection.reason.value, rejection.detail)
        if record is None:
            return Result(Outcome.STALE, ref.image_id, ref.key, detail="superseded while processing")
        with _aws_errors_are_transient("publishing the failure event"):
            self._publisher.publish(event_for_record(record))
        return Result(
            Outcome.FAILED,
            ref.image_id,
            ref.key,
            reason=rejection.reason.value,
            detail=rejection.detail,
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    def _delete_renditions(self, keys: frozenset[str]) -> None:
        """Best effort, after success: what is left behind is an orphan the cleanup job removes."""
        if not keys:
            return
        try:
            response = self._s3.delete_objects(
                Bucket=self.settings.renditions_bucket,
                Delete={"Objects": [{"Key": key} for key in sorted(keys)], "Quiet": True},
            )
        except (ClientError, BotoCoreError) as error:
            logger.warning(
                "superseded renditions not deleted; cleanup will", extra={"keys": sorted(keys), "error": str(error)}
            )
            return
        if response.get("Errors"):
            logger.warning("some superseded renditions not deleted; cleanup will", extra={"errors": response["Errors"]})
