"""S3 notification events for tests, made from the samples in events/ (the real shape).

`s3_put_event(stack, key, body)` uploads the object to the test stack's ingest bucket and
returns the event S3 would send for it: URL-encoded key, etag, versionId and a sequencer.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from tests.stack import TestStack

SAMPLE = Path(__file__).resolve().parents[1] / "events" / "s3-put.json"
_sequencers = itertools.count(0x0055AED6DCD9028200)


def next_sequencer() -> str:
    """Increasing like S3's: later uploads of a key get larger sequencers."""
    return f"{next(_sequencers):018X}"


def s3_event_for(
    bucket: str,
    key: str,
    *,
    etag: str,
    version_id: str | None,
    size: int,
    sequencer: str | None = None,
    request_id: str = "C3D13FE58DE4C810",
) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(json.loads(SAMPLE.read_text(encoding="utf-8")))
    record = event["Records"][0]
    record["responseElements"]["x-amz-request-id"] = request_id
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    obj = record["s3"]["object"]
    obj.update(key=quote_plus(key, safe="/"), eTag=etag, size=size, sequencer=sequencer or next_sequencer())
    if version_id:
        obj["versionId"] = version_id
    else:
        obj.pop("versionId", None)
    return event


def s3_put_event(stack: TestStack, key: str, body: bytes, **overrides: Any) -> dict[str, Any]:
    """Upload `body` to the ingest bucket at `key` and return its ObjectCreated event."""
    uploaded = stack.put_upload(key, body)
    return s3_event_for(
        stack.ingest_bucket,
        key,
        etag=uploaded["etag"],
        version_id=uploaded["version_id"],
        size=uploaded["size"],
        **overrides,
    )
