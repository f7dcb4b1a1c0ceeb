"""The audit archive: image events as JSON lines in S3, partitioned by the day they occurred.

Key: {prefix}dt=YYYY-MM-DD/{HHMMSS of the earliest event}-{digest of the event ids}.jsonl,
one object per SQS batch and per day. Partitioning by the event's `occurred_at` (UTC), not
by the receive date, keeps a late or redriven event in the partition of the day it happened,
so `WHERE dt = ...` in Athena finds every event of that day. The key is derived from the
events it holds, so rewriting the same batch overwrites the same object.

Each line is the event message exactly as published (image_pipeline.events), one JSON
object per line, sorted by (occurred_at, event_id). Idempotency is per event: each event
is claimed before the write and completed after it (subscriber.EventClaims), so an event
already archived is skipped when its message comes back in a different batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import groupby
from typing import TYPE_CHECKING, Any

from image_pipeline.subscriber import DeliveredEvent, EventClaims, MalformedEventError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONTENT_TYPE = "application/x-ndjson"
IDEMPOTENCY_KEY_PREFIX = "audit-archive"
_DIGEST_CHARS = 16


def occurred_at(delivered: DeliveredEvent) -> datetime:
    """The event's occurred_at as an aware UTC datetime (MalformedEventError if unusable)."""
    raw = delivered.event.occurred_at
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise MalformedEventError(f"occurred_at {raw!r} is not an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        raise MalformedEventError(f"occurred_at {raw!r} has no time zone")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class ArchiveEntry:
    event_id: str
    occurred_at: datetime
    line: str

    @classmethod
    def of(cls, delivered: DeliveredEvent) -> ArchiveEntry:
        line = json.dumps(delivered.message, separators=(",", ":"), ensure_ascii=False)
        return cls(event_id=delivered.event_id, occurred_at=occurred_at(delivered), line=line)

    @property
    def day(self) -> date:
        return self.occurred_at.date()


@dataclass(frozen=True)
class ArchiveObject:
    key: str
    body: bytes
    event_ids: tuple[str, ...]


def archive_objects(prefix: str, entries: Iterable[ArchiveEntry]) -> list[ArchiveObject]:
    """One object per partition day, its key and content determined by the entries alone."""
    ordered = sorted(entries, key=lambda entry: (entry.occurred_at, entry.event_id))
    objects = []
    for day, group in groupby(ordered, key=lambda entry: entry.day):
        day_entries = list(group)
        event_ids = tuple(entry.event_id for entry in day_entries)
        digest = hashlib.sha256("\n".join(sorted(event_ids)).encode()).hexdigest()[:_DIGEST_CHARS]
        key = f"{prefix}dt={day.isoformat()}/{day_entries[0].occurred_at:%H%M%S}-{digest}.jsonl"
        body = "".join(f"{entry.line}\n" for entry in day_entries).encode()
        objects.append(ArchiveObject(key=key, body=body, event_ids=event_ids))
    return objects


def read_archive_lines(body: bytes) -> list[dict[str, Any]]:
    """Parse an archive object back into event messages (what Athena's JSON SerDe reads)."""
    return [json.loads(line) for line in body.decode().splitlines() if line]


class ArchiveBatch:
    """The events of one SQS batch on their way into the archive: stage each, then flush once."""

    def __init__(
        self, s3: S3Client, bucket: str, prefix: str, claims: EventClaims, remaining_millis: Callable[[], int]
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._claims = claims
        self._remaining_millis = remaining_millis
        self._staged: dict[str, tuple[DeliveredEvent, ArchiveEntry]] = {}

    def stage(self, delivered: DeliveredEvent) -> bool:
        """Claim the event for this batch. False: nothing to write (archived before, or already staged).

        Raises MalformedEventError for an unusable event and EventInProgressError when another
        invocation holds it; either fails only this message.
        """
        if delivered.event_id in self._staged:  # the same event twice in one batch
            return False
        entry = ArchiveEntry.of(delivered)
        if not self._claims.claim(delivered.message, self._remaining_millis()):
            return False
        self._staged[delivered.event_id] = (delivered, entry)
        return True

    def flush(self) -> Sequence[ArchiveObject]:
        """Write the staged events, then complete their claims; on a failed write release them and raise."""
        objects = archive_objects(self._prefix, (entry for _, entry in self._staged.values()))
        try:
            for archive_object in objects:
                self._s3.put_object(
                    Bucket=self._bucket,
                    Key=archive_object.key,
                    Body=archive_object.body,
                    ContentType=CONTENT_TYPE,
                )
        except Exception as error:
            for delivered, _ in self._staged.values():
                self._claims.release(delivered.message, error)
            raise
        for archive_object in objects:
            for event_id in archive_object.event_ids:
                delivered, _ = self._staged[event_id]
                self._claims.complete(delivered.message, {"object_key": archive_object.key})
        self._staged.clear()
        return objects
