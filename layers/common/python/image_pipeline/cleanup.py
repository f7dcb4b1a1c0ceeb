"""The scheduled cleanup: what the event-driven path can leave behind, removed.

- An item whose original object is gone: its renditions and the item are deleted.
- An item PROCESSING for longer than the threshold (the attempt died and its retries are
  spent): FAILED with reason "timed out", so the next reprocess run picks it up.
- An item whose original cannot be read (access denied): skipped and reported, never a
  reason to stop the run.
- Rendition objects no item references (the image is gone, or they belong to a superseded
  version an interrupted attempt left behind): deleted, once older than a grace period, so
  an attempt still in flight keeps its files.

A cycle walks the whole table, then the whole renditions prefix. Each run does at most
`max_items_per_run` units of work (or less, near the function's timeout) and saves a cursor,
so a large table is cleaned over several runs. Every change is conditional on what was seen,
and a second run finds nothing left to do. In dry-run mode it only counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from image_pipeline.keys import RENDITIONS_PREFIX
from image_pipeline.record import ImageRecord, ImageStatus
from image_pipeline.repository import ImagesRepository

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from image_pipeline.config import CleanupSettings

STATE_KEY = "cleanup/state.json"  # in the renditions bucket, outside renditions/
_GONE_CODES = {"404", "NoSuchKey", "NotFound"}
# The original exists but this role may not read it (an item for a foreign bucket, a changed
# bucket policy): skip the item and report it, so one unreadable item cannot stop every run.
_UNREADABLE_CODES = {"403", "AccessDenied", "AllAccessDisabled", "NoSuchBucket"}
_REPORTED_UNREADABLE = 20  # the report names this many; the count covers all
_DELETE_BATCH = 1000  # DeleteObjects limit
logger = Logger(child=True)


@dataclass
class CleanupReport:
    dry_run: bool
    items_checked: int = 0
    timed_out: int = 0
    originals_gone: int = 0
    renditions_deleted: int = 0
    orphans_deleted: int = 0
    objects_listed: int = 0
    unreadable: int = 0  # items whose original could not be read: skipped, left as they are
    unreadable_items: list[str] = field(default_factory=list)  # "image_id s3://bucket/key (code)"
    cycle_complete: bool = False
    stopped_early: bool = False  # the budget or the clock ran out: the next run resumes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Cursor:
    """Where the current cycle is: the table scan, then the renditions listing."""

    phase: str = "items"
    items_start_key: dict[str, Any] | None = None
    renditions_token: str | None = None
    cycle_started_at: str = ""


class _Unreadable(Exception):
    """HEAD of an original was refused: the error code."""


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Cleanup:
    def __init__(
        self,
        settings: CleanupSettings,
        *,
        s3: S3Client,
        repository: ImagesRepository,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self._s3 = s3
        self._repository = repository
        self._clock = clock

    def run(self, *, dry_run: bool | None = None, out_of_time: Callable[[], bool] = lambda: False) -> CleanupReport:
        report = CleanupReport(dry_run=self.settings.dry_run if dry_run is None else dry_run)
        now = self._clock()
        cursor = self._load_cursor()
        if not cursor.cycle_started_at:
            cursor.cycle_started_at = _iso(now)
        budget = self.settings.max_items_per_run

        def exhausted() -> bool:
            return report.items_checked + report.objects_listed >= budget or out_of_time()

        if cursor.phase == "items":
            self._clean_items(cursor, report, now, exhausted)
        if cursor.phase == "renditions":
            self._clean_renditions(cursor, report, now, exhausted)
        report.cycle_complete = cursor.phase == "done"
        report.stopped_early = not report.cycle_complete
        if not report.dry_run:
            self._save_cursor(None if report.cycle_complete else cursor)
        return report

    # -- items ----------------------------------------------------------------------------------

    def _clean_items(
        self, cursor: _Cursor, report: CleanupReport, now: datetime, exhausted: Callable[[], bool]
    ) -> None:
        stuck_before = _iso(now - timedelta(minutes=self.settings.stuck_after_minutes))
        while not exhausted():
            limit = max(1, min(100, self.settings.max_items_per_run - report.items_checked - report.objects_listed))
            page = self._repository.scan_page(cursor.items_start_key, limit)
            for record in page.records:
                report.items_checked += 1
                self._clean_item(record, report, now, stuck_before)
            cursor.items_start_key = page.next_key
            if page.next_key is None:
                cursor.phase = "renditions"
                return

    def _clean_item(self, record: ImageRecord, report: CleanupReport, now: datetime, stuck_before: str) -> None:
        try:
            gone = self._original_gone(record)
        except _Unreadable as unreadable:
            original = f"s3://{record.bucket}/{record.key}"
            report.unreadable += 1
            if len(report.unreadable_items) < _REPORTED_UNREADABLE:
                report.unreadable_items.append(f"{record.image_id} {original} ({unreadable})")
            logger.warning(
                "original unreadable: item skipped",
                extra={"image_id": record.image_id, "object": original, "code": str(unreadable)},
            )
            return
        if gone:
            report.originals_gone += 1
            keys = self._rendition_keys(record.image_id)
            if report.dry_run:
                report.renditions_deleted += len(keys)
            elif self._repository.delete(record):
                report.renditions_deleted += self._delete_keys(keys)
            return
        if record.status is ImageStatus.PROCESSING and record.updated_at < stuck_before:
            detail = f"PROCESSING since {record.updated_at}, longer than {self.settings.stuck_after_minutes} min"
            if report.dry_run or self._repository.mark_timed_out(record, _iso(now), detail):
                report.timed_out += 1

    def _original_gone(self, record: ImageRecord) -> bool:
        try:
            self._s3.head_object(Bucket=record.bucket, Key=record.key)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _GONE_CODES:
                return True
            if code in _UNREADABLE_CODES:
                raise _Unreadable(code) from error
            raise
        return False

    def _rendition_keys(self, image_id: str) -> list[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.settings.renditions_bucket, Prefix=f"{RENDITIONS_PREFIX}{image_id}/")
        return [entry["Key"] for page in pages for entry in page.get("Contents", [])]

    # -- orphan renditions ----------------------------------------------------------------------

    def _clean_renditions(
        self, cursor: _Cursor, report: CleanupReport, now: datetime, exhausted: Callable[[], bool]
    ) -> None:
        grace_before = now - timedelta(minutes=self.settings.orphan_grace_minutes)
        kept: dict[str, tuple[str, ...]] = {}  # image id -> keys and key prefixes that are not orphans
        while not exhausted():
            request: dict[str, Any] = {"Bucket": self.settings.renditions_bucket, "Prefix": RENDITIONS_PREFIX}
            request["MaxKeys"] = max(1, min(1000, self.settings.max_items_per_run - report.objects_listed))
            if cursor.renditions_token:
                request["ContinuationToken"] = cursor.renditions_token
            page = self._s3.list_objects_v2(**request)
            orphans = []
            for entry in page.get("Contents", []):
                report.objects_listed += 1
                image_id = entry["Key"][len(RENDITIONS_PREFIX) :].partition("/")[0]
                if image_id not in kept:
                    kept[image_id] = self._kept_keys(image_id)
                if not entry["Key"].startswith(kept[image_id]) and entry["LastModified"] < grace_before:
                    orphans.append(entry["Key"])
            report.orphans_deleted += len(orphans) if report.dry_run else self._delete_keys(orphans)
            cursor.renditions_token = page.get("NextContinuationToken")
            if not cursor.renditions_token:
                cursor.phase = "done"
                return

    def _kept_keys(self, image_id: str) -> tuple[str, ...]:
        """The renditions the item references, and the version an attempt may be writing now."""
        record = self._repository.get(image_id)
        if record is None:
            return ()
        kept = tuple(rendition.key for rendition in record.renditions)
        if record.status is ImageStatus.PROCESSING:
            kept += (f"{RENDITIONS_PREFIX}{image_id}/{record.source.etag}/",)
        return kept

    # -- S3 helpers -----------------------------------------------------------------------------

    def _delete_keys(self, keys: list[str]) -> int:
        deleted = 0
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            response = self._s3.delete_objects(
                Bucket=self.settings.renditions_bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            deleted += len(batch) - len(response.get("Errors", []))
        return deleted

    def _load_cursor(self) -> _Cursor:
        try:
            body = self._s3.get_object(Bucket=self.settings.renditions_bucket, Key=STATE_KEY)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code", "") in _GONE_CODES:
                return _Cursor()
            raise
        return _Cursor(**json.loads(body))

    def _save_cursor(self, cursor: _Cursor | None) -> None:
        if cursor is None:
            self._s3.delete_object(Bucket=self.settings.renditions_bucket, Key=STATE_KEY)
        else:
            body = json.dumps(asdict(cursor)).encode()
            self._s3.put_object(Bucket=self.settings.renditions_bucket, Key=STATE_KEY, Body=body)
