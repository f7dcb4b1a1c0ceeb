"""Throttling, 5xx, timeouts and crashes at every AWS call the thumbnailer makes.

Faults are injected below botocore's retry logic (tests.faults), so the retries are the real
ones: transient errors are retried with backoff, then surface as TransientError for Lambda to
retry; the item never says SUCCEEDED unless every rendition is stored; and re-running the same
event (Lambda's retry) heals whatever an outage or a crash left half done, without an event
reaching a consumer twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSPreparedRequest
from botocore.exceptions import ReadTimeoutError

from image_pipeline.clients import BOTO_CONFIG
from image_pipeline.errors import TransientError
from image_pipeline.keys import image_id_for
from pipeline_cli.imagefactory import make_jpeg
from pipeline_cli.twin.template import resource
from pipeline_cli.webhook_receiver import WebhookServer
from tests.consumers import FanoutStack, webhook_mapping
from tests.faults import SERVER_ERROR, THROTTLED, BackoffRecorder, Fault, crash_after, inject
from tests.s3events import s3_put_event
from tests.stack import TestStack, cleanup_for

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
# botocore's `max_attempts` counts retries after the first try (`total_max_attempts` would count all).
MAX_ATTEMPTS = 1 + BOTO_CONFIG.retries["max_attempts"]  # type: ignore[attr-defined]
LATER = timedelta(hours=2)


class LambdaTimeout(BaseException):
    """The runtime stopping the function mid-call: no `except Exception` may swallow it."""


def read_timeout() -> BaseException:
    return ReadTimeoutError(endpoint_url="https://fault.injected")


FAULT_KINDS: dict[str, Callable[[str], Fault | Callable[[], BaseException]]] = {
    "throttled": THROTTLED.__getitem__,
    "5xx": SERVER_ERROR.__getitem__,
    "read timeout": lambda service: read_timeout,
}


@dataclass(frozen=True)
class Step:
    """One AWS call of the thumbnailer, and the state an outage there must leave behind."""

    service: str
    operation: str
    matches: Callable[[TestStack, AWSPreparedRequest], bool]
    status_after_outage: str | None  # the item's status (None: no item) when this call keeps failing
    renditions_after_outage: bool  # whether every rendition is stored by then

    def client(self, stack: TestStack) -> Any:
        return getattr(stack.clients, self.service)


def _body(request: AWSPreparedRequest) -> bytes:
    return request.body if isinstance(request.body, bytes) else b""


STEPS = {
    "read the original": Step("s3", "GetObject", lambda s, r: s.ingest_bucket in r.url, "PROCESSING", False),
    "upload a rendition": Step("s3", "PutObject", lambda s, r: s.renditions_bucket in r.url, "PROCESSING", False),
    "claim the item": Step("dynamodb", "UpdateItem", lambda s, r: b'":processing"' in _body(r), None, False),
    "record the success": Step("dynamodb", "UpdateItem", lambda s, r: b'":status"' in _body(r), "PROCESSING", True),
    "publish the event": Step("sns", "Publish", lambda s, r: True, "SUCCEEDED", True),
}

_keys = itertools.count()


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> BackoffRecorder:
    """botocore sleeps between retries through botocore.endpoint's `time`: record, don't sleep."""
    recorder = BackoffRecorder()
    monkeypatch.setattr("botocore.endpoint.time", recorder)
    return recorder


def upload(stack: TestStack) -> tuple[dict[str, Any], str]:
    key = f"uploads/faults/{next(_keys)}.jpg"
    return s3_put_event(stack, key, make_jpeg(640, 480)), image_id_for(stack.ingest_bucket, key)


def assert_no_success_without_renditions(stack: TestStack, image_id: str) -> dict[str, Any] | None:
    item = stack.item(image_id)
    if item is not None and item["status"] == "SUCCEEDED":
        stored = set(stack.rendition_keys())
        assert {r["key"] for r in item["renditions"]} <= stored
    return item


def assert_healed(stack: TestStack, image_id: str) -> dict[str, Any]:
    """SUCCEEDED, exactly its renditions stored, and exactly one ImageProcessed event."""
    item = stack.item(image_id)
    assert item is not None
    assert item["status"] == "SUCCEEDED"
    assert len(item["renditions"]) == 3
    assert [key for key in stack.rendition_keys() if image_id in key] == sorted({r["key"] for r in item["renditions"]})
    [event] = stack.published_events()
    assert event["event_type"] == "ImageProcessed"
    assert event["image"]["renditions"] == item["renditions"]
    return item


# ----------------------------------------------------------------------------- transient faults


@pytest.mark.parametrize("kind", FAULT_KINDS)
@pytest.mark.parametrize("step", STEPS)
def test_a_transient_fault_is_retried_with_backoff_and_the_image_succeeds(
    stack: TestStack, invoke_thumbnail: Invoke, backoff: BackoffRecorder, step: str, kind: str
) -> None:
    event, image_id = upload(stack)
    call = STEPS[step]
    fault = FAULT_KINDS[kind](call.service)

    with inject(call.client(stack), call.operation, fault, times=2, when=lambda r: call.matches(stack, r)) as injected:
        response = invoke_thumbnail(event)

    assert response["results"][0]["outcome"] == "SUCCEEDED"
    assert injected.failed == 2
    assert injected.total_attempts == len(injected.attempts) + 2  # each failure was sent again
    assert len(backoff.delays) == 2  # ...after a backoff: jittered, capped at 2**attempt x base
    assert all(0 < delay <= 2 for delay in backoff.delays)
    assert_healed(stack, image_id)


# ----------------------------------------------------------------------------- outages


@pytest.mark.parametrize("kind", ["throttled", "5xx"])
@pytest.mark.parametrize("step", STEPS)
def test_an_outage_surfaces_as_transient_error_and_the_retried_event_heals_it(
    stack: TestStack, invoke_thumbnail: Invoke, backoff: BackoffRecorder, step: str, kind: str
) -> None:
    event, image_id = upload(stack)
    call = STEPS[step]
    fault = FAULT_KINDS[kind](call.service)

    with (
        inject(call.client(stack), call.operation, fault, when=lambda r: call.matches(stack, r)) as injected,
        pytest.raises(TransientError),  # Lambda retries the invocation (then its OnFailure destination)
    ):
        invoke_thumbnail(event)

    # botocore spent its whole retry budget on every request it sent, backing off before each retry.
    assert set(injected.attempts.values()) == {MAX_ATTEMPTS}
    assert len(backoff.delays) == (MAX_ATTEMPTS - 1) * len(injected.attempts)
    item = assert_no_success_without_renditions(stack, image_id)
    assert (item or {}).get("status") == call.status_after_outage
    stored = [key for key in stack.rendition_keys() if image_id in key]
    assert len(stored) == (3 if call.renditions_after_outage else 0)
    assert stack.published_events() == []

    retried = invoke_thumbnail(event)  # the service is back

    expected = "DUPLICATE" if call.status_after_outage == "SUCCEEDED" else "SUCCEEDED"
    assert retried["results"][0]["outcome"] == expected
    assert_healed(stack, image_id)


def test_a_throttled_call_gives_up_before_the_function_times_out() -> None:
    """A throttling outage of one call is recorded as TransientError (and retried by Lambda), not
    as a timeout: the longest botocore backs off on one call (up to 2**(n-1) s before retry n,
    capped at 20 s), plus one attempt hanging until the read timeout, fits in the function's timeout.

    That is the whole claim (README, docs/reliability.md): were every attempt of a call to hang
    until its connect and read timeouts, the invocation would time out first; Lambda then retries
    it like any failure and the cleanup times out a PROCESSING item, so nothing is lost either way."""
    worst_case_backoff = sum(min(2 ** (retry - 1), 20) for retry in range(1, MAX_ATTEMPTS))
    timeout = resource("ThumbnailFunction")["Properties"]["Timeout"]
    read_timeout = BOTO_CONFIG.read_timeout  # type: ignore[attr-defined]
    connect_timeout = BOTO_CONFIG.connect_timeout  # type: ignore[attr-defined]
    assert worst_case_backoff + read_timeout < timeout, (worst_case_backoff, read_timeout, timeout)
    every_attempt_hanging = worst_case_backoff + MAX_ATTEMPTS * (connect_timeout + read_timeout)
    assert every_attempt_hanging > timeout  # the case the claim leaves out: keep the docs honest


# ----------------------------------------------------------------------------- crashes


def test_a_crash_between_the_uploads_and_the_item_write_is_healed_by_the_retry(
    stack: TestStack, invoke_thumbnail: Invoke
) -> None:
    event, image_id = upload(stack)
    record_success = STEPS["record the success"]

    with (
        inject(stack.clients.dynamodb, "UpdateItem", LambdaTimeout, when=lambda r: record_success.matches(stack, r)),
        pytest.raises(LambdaTimeout),
    ):
        invoke_thumbnail(event)

    item = assert_no_success_without_renditions(stack, image_id)
    assert item is not None
    assert item["status"] == "PROCESSING"
    assert stack.published_events() == []

    assert invoke_thumbnail(event)["results"][0]["outcome"] == "SUCCEEDED"

    healed = assert_healed(stack, image_id)
    assert healed["attempts"] == 2


def test_a_crash_after_publishing_is_retried_without_a_consumer_seeing_the_event_twice(
    stack: TestStack, invoke_thumbnail: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    fanout = FanoutStack.of(stack)
    event, image_id = upload(stack)

    with crash_after(stack.clients.sns, "Publish", LambdaTimeout), pytest.raises(LambdaTimeout):
        invoke_thumbnail(event)  # published, then died before returning

    assert invoke_thumbnail(event)["results"][0]["outcome"] == "DUPLICATE"  # re-published

    with WebhookServer(fanout.signing_secret) as server:
        webhook_mapping(fanout, server.url).drain()
    item = stack.item(image_id)
    assert item is not None
    published = stack.published_events()
    assert len(published) == 2
    assert published[0]["event_id"] == published[1]["event_id"]
    assert [request.event_id for request in server.requests] == [published[0]["event_id"]]


def test_when_every_retry_crashes_the_cleanup_fails_the_item_and_removes_its_files(
    stack: TestStack, invoke_thumbnail: Invoke
) -> None:
    """Lambda gives up after its retries (the event goes to the OnFailure queue); the stuck
    PROCESSING item is timed out by the cleanup, so a reprocess run can pick it up."""
    event, image_id = upload(stack)
    record_success = STEPS["record the success"]
    with inject(stack.clients.dynamodb, "UpdateItem", LambdaTimeout, when=lambda r: record_success.matches(stack, r)):
        for _ in range(3):  # the first try and Lambda's two asynchronous retries
            with pytest.raises(LambdaTimeout):
                invoke_thumbnail(event)
    assert len([key for key in stack.rendition_keys() if image_id in key]) == 3  # uploaded, never recorded

    report = cleanup_for(stack, at=datetime.now(UTC) + LATER).run()

    item = stack.item(image_id)
    assert item is not None
    assert (item["status"], item["error"]["reason"]) == ("FAILED", "timed out")
    assert (report.timed_out, report.orphans_deleted) == (1, 3)
    assert [key for key in stack.rendition_keys() if image_id in key] == []
