"""AuditFunction: JSON-lines archive objects per batch and day, idempotent per event."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from hypothesis import given
from hypothesis import strategies as st

from image_pipeline.archive import ArchiveEntry, archive_objects, read_archive_lines
from image_pipeline.config import AuditSettings, ConfigError, IdempotencySettings
from image_pipeline.subscriber import (
    EventClaims,
    MalformedEventError,
    idempotency_config,
    idempotency_store,
    parse_delivered_event,
)
from pipeline_cli.twin.runtime import load_handler
from tests.conftest import lambda_context
from tests.consumers import FanoutStack, events_from_sample, handler_module, lambda_sqs_record
from tests.stack import TestStack

PROCESSED, FAILED = events_from_sample("sqs-image-events-batch.json")

Invoke = Callable[..., dict[str, Any]]


def event_body(event_id: str, occurred_at: str, event_type: str = "ImageProcessed") -> str:
    message = {**json.loads(PROCESSED), "event_id": event_id, "occurred_at": occurred_at, "event_type": event_type}
    return json.dumps(message, separators=(",", ":"))


@pytest.fixture
def fanout(stack: TestStack) -> FanoutStack:
    return FanoutStack.of(stack)


@pytest.fixture
def invoke(fanout: FanoutStack) -> Invoke:
    handler = load_handler("functions/audit", "app.lambda_handler", fanout.audit_env())
    handler_module(handler).clients = fanout.clients

    def call(*bodies: str, ids: tuple[str, ...] = ()) -> dict[str, Any]:
        message_ids = ids or tuple(f"message-{index}" for index in range(len(bodies)))
        records = [lambda_sqs_record(body, message_id=mid) for body, mid in zip(bodies, message_ids, strict=True)]
        response: dict[str, Any] = handler({"Records": records}, lambda_context("AuditFunction"))
        return response

    return call


def archived_lines(fanout: FanoutStack) -> list[dict[str, Any]]:
    return [line for body in fanout.archive_objects().values() for line in read_archive_lines(body)]


def test_a_batch_becomes_one_json_lines_object_in_its_day_partition(fanout: FanoutStack, invoke: Invoke) -> None:
    response = invoke(PROCESSED, FAILED)

    assert response == {"batchItemFailures": []}
    objects = fanout.archive_objects()
    [key] = objects
    assert key.startswith("archive/dt=2026-11-25/093002-")
    assert key.endswith(".jsonl")
    lines = objects[key].decode().splitlines()
    assert [json.loads(line) for line in lines] == [json.loads(PROCESSED), json.loads(FAILED)]
    head = fanout.clients.s3.head_object(Bucket=fanout.archive_bucket, Key=key)
    assert head["ContentType"] == "application/x-ndjson"


def test_events_of_different_days_go_to_their_own_partitions(fanout: FanoutStack, invoke: Invoke) -> None:
    invoke(
        event_body("e-late", "2026-11-25T23:59:59.999Z"),
        event_body("e-next", "2026-11-26T00:00:00.000Z"),
        event_body("e-tz", "2026-11-26T01:30:00.000+02:00"),  # 23:30 UTC the day before
    )

    by_day = {
        key.split("/")[1]: [m["event_id"] for m in read_archive_lines(body)]
        for key, body in fanout.archive_objects().items()
    }
    assert by_day == {"dt=2026-11-25": ["e-tz", "e-late"], "dt=2026-11-26": ["e-next"]}


def test_redelivered_events_are_not_archived_twice(fanout: FanoutStack, invoke: Invoke) -> None:
    first, second, third = (event_body(f"e{n}", f"2026-11-25T10:00:0{n}.000Z") for n in range(3))

    invoke(first, second)
    invoke(second, third, third)  # e1 again in another batch, e2 twice in this one

    assert sorted(line["event_id"] for line in archived_lines(fanout)) == ["e0", "e1", "e2"]
    assert len(fanout.archive_objects()) == 2


def test_a_malformed_record_fails_alone(fanout: FanoutStack, invoke: Invoke) -> None:
    no_timezone = event_body("e-naive", "2026-11-25T10:00:00")

    response = invoke("{not json", PROCESSED, no_timezone, ids=("garbage", "good", "naive"))

    assert response == {"batchItemFailures": [{"itemIdentifier": "garbage"}, {"itemIdentifier": "naive"}]}
    assert [line["event_id"] for line in archived_lines(fanout)] == [json.loads(PROCESSED)["event_id"]]


def test_a_failed_write_releases_every_claim_so_the_retry_archives_them(fanout: FanoutStack, invoke: Invoke) -> None:
    fanout.clients.s3.delete_bucket(Bucket=fanout.archive_bucket)  # every PutObject fails

    with pytest.raises(Exception, match="NoSuchBucket"):
        invoke(PROCESSED, FAILED)
    assert fanout.clients.dynamodb.scan(TableName=fanout.idempotency_table)["Count"] == 0

    fanout.clients.s3.create_bucket(Bucket=fanout.archive_bucket)
    assert invoke(PROCESSED, FAILED) == {"batchItemFailures": []}
    assert len(archived_lines(fanout)) == 2


def test_an_event_held_by_another_invocation_fails_only_its_record(fanout: FanoutStack, invoke: Invoke) -> None:
    settings = IdempotencySettings(table=fanout.idempotency_table, ttl_seconds=3600)
    other = EventClaims(
        idempotency_store(fanout.clients.dynamodb, settings), idempotency_config(settings), "audit-archive"
    )
    assert other.claim(json.loads(FAILED), remaining_time_in_millis=60_000)

    response = invoke(PROCESSED, FAILED, ids=("free", "held"))

    assert response == {"batchItemFailures": [{"itemIdentifier": "held"}]}
    assert [line["event_type"] for line in archived_lines(fanout)] == ["ImageProcessed"]


def test_when_every_record_fails_the_invocation_fails_and_nothing_is_written(
    fanout: FanoutStack, invoke: Invoke
) -> None:
    with pytest.raises(BatchProcessingError):
        invoke("[]", "null")

    assert fanout.archive_objects() == {}


@given(
    events=st.lists(
        st.tuples(
            st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
            st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)),
        ),
        min_size=1,
        max_size=30,
        unique_by=lambda event: event[0],
    ),
    offset_hours=st.integers(-12, 14),
)
def test_archive_objects_partition_by_utc_day_and_do_not_depend_on_batch_order(
    events: list[tuple[str, datetime]], offset_hours: int
) -> None:
    publisher_zone = timezone(timedelta(hours=offset_hours))  # occurred_at may carry any offset
    entries = [
        ArchiveEntry.of(parse_delivered_event(event_body(event_id, moment.astimezone(publisher_zone).isoformat())))
        for event_id, moment in events
    ]

    objects = archive_objects("archive/", entries)

    assert objects == archive_objects("archive/", list(reversed(entries)))
    archived = {}
    for archive_object in objects:
        day = archive_object.key.split("/")[1].removeprefix("dt=")
        lines = read_archive_lines(archive_object.body)
        assert [line["event_id"] for line in lines] == list(archive_object.event_ids)
        for line in lines:
            moment = datetime.fromisoformat(line["occurred_at"]).astimezone(UTC)
            assert moment.date().isoformat() == day
            archived[line["event_id"]] = moment
    assert archived == dict(events)
    assert len({archive_object.key for archive_object in objects}) == len(objects)


@pytest.mark.parametrize("occurred_at", ["", "yesterday", "2026-11-25T10:00:00", "2026-13-01T00:00:00Z"])
def test_an_unusable_occurred_at_is_a_malformed_event(occurred_at: str) -> None:
    with pytest.raises(MalformedEventError, match="occurred_at"):
        ArchiveEntry.of(parse_delivered_event(event_body("e", occurred_at)))


def test_the_archive_prefix_must_be_a_folder() -> None:
    with pytest.raises(ConfigError, match="ARCHIVE_PREFIX"):
        AuditSettings.from_env({"ARCHIVE_BUCKET": "b", "IDEMPOTENCY_TABLE": "t", "ARCHIVE_PREFIX": "archive"})
