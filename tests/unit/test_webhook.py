"""WebhookFunction against a real HTTP server on 127.0.0.1 that verifies every signature."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from hypothesis import given
from hypothesis import strategies as st

from image_pipeline.backoff import SQS_MAX_VISIBILITY_SECONDS, Backoff
from image_pipeline.config import ConfigError, WebhookSettings
from image_pipeline.events import event_for_record
from image_pipeline.webhook import (
    SignatureError,
    WebhookDeliveryError,
    WebhookSender,
    compute_signature,
    signature_header,
    verify_signature,
)
from pipeline_cli.twin.runtime import load_handler
from pipeline_cli.webhook_receiver import HANG, WebhookServer
from tests.conftest import lambda_context
from tests.consumers import (
    FanoutStack,
    event_source,
    events_from_sample,
    handler_module,
    lambda_sqs_record,
)
from tests.stack import TestStack
from tests.unit.test_fanout import item

PROCESSED, FAILED = events_from_sample("sqs-image-events-batch.json")
PROCESSED_ID = json.loads(PROCESSED)["event_id"]
FAILED_ID = json.loads(FAILED)["event_id"]

Invoke = Callable[..., dict[str, Any]]


@pytest.fixture
def fanout(stack: TestStack, monkeypatch: pytest.MonkeyPatch) -> FanoutStack:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # the receiver is local whatever the shell says
    return FanoutStack.of(stack)


@pytest.fixture
def server(fanout: FanoutStack) -> Iterator[WebhookServer]:
    with WebhookServer(fanout.signing_secret) as running:
        yield running


def webhook_handler(fanout: FanoutStack, url: str, **env: str) -> Callable[[dict[str, Any], Any], Any]:
    handler = load_handler("functions/webhook", "app.lambda_handler", fanout.webhook_env(url, **env))
    handler_module(handler).clients = fanout.clients
    return handler


@pytest.fixture
def invoke(fanout: FanoutStack, server: WebhookServer) -> Invoke:
    """Invoke one container of WebhookFunction with records made from message bodies."""
    handler = webhook_handler(fanout, server.url)

    def call(*bodies: str, ids: tuple[str, ...] = ()) -> dict[str, Any]:
        message_ids = ids or tuple(f"message-{index}" for index in range(len(bodies)))
        event = {
            "Records": [lambda_sqs_record(body, message_id=mid) for body, mid in zip(bodies, message_ids, strict=True)]
        }
        response: dict[str, Any] = handler(event, lambda_context("WebhookFunction"))
        return response

    return call


def test_an_event_is_posted_as_the_exact_body_with_a_verified_signature(server: WebhookServer, invoke: Invoke) -> None:
    response = invoke(PROCESSED)

    assert response == {"batchItemFailures": []}
    [request] = server.requests
    assert request.signature_error is None
    assert request.body == PROCESSED.encode()
    assert request.path == "/hooks/images"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Pipeline-Event-Id"] == PROCESSED_ID
    assert request.headers["X-Pipeline-Event-Type"] == "ImageProcessed"


def test_a_500_fails_only_that_record_and_its_retry_delivers_it(server: WebhookServer, invoke: Invoke) -> None:
    server.script(FAILED_ID, 500)

    first = invoke(PROCESSED, FAILED, ids=("ok-message", "bad-message"))

    assert first == {"batchItemFailures": [{"itemIdentifier": "bad-message"}]}
    assert len(server.delivered(PROCESSED_ID)) == 1
    assert server.delivered(FAILED_ID) == []

    # SQS redelivers the whole batch's failures; the delivered event must not be sent again.
    second = invoke(PROCESSED, FAILED, ids=("ok-message", "bad-message"))

    assert second == {"batchItemFailures": []}
    assert len(server.delivered(PROCESSED_ID)) == 1
    assert len(server.delivered(FAILED_ID)) == 1


def test_a_timeout_fails_the_record_and_releases_it_for_the_retry(fanout: FanoutStack, server: WebhookServer) -> None:
    handler = webhook_handler(fanout, server.url, WEBHOOK_TIMEOUT_SECONDS="0.2")
    server.script(PROCESSED_ID, HANG)
    event = {"Records": [lambda_sqs_record(PROCESSED, message_id="slow"), lambda_sqs_record(FAILED, message_id="fast")]}

    assert handler(event, lambda_context("WebhookFunction")) == {"batchItemFailures": [{"itemIdentifier": "slow"}]}
    assert server.delivered(PROCESSED_ID) == []

    assert handler(event, lambda_context("WebhookFunction")) == {"batchItemFailures": []}
    assert len(server.delivered(PROCESSED_ID)) == 1
    assert len(server.delivered(FAILED_ID)) == 1


def test_when_every_record_fails_the_invocation_fails(fanout: FanoutStack, server: WebhookServer) -> None:
    """Powertools raises so the Errors alarm sees an endpoint that fails everything; SQS retries the batch."""
    handler = webhook_handler(fanout, server.url)
    server.script(PROCESSED_ID, 503)
    event = {"Records": [lambda_sqs_record(PROCESSED, message_id="only")]}

    with pytest.raises(BatchProcessingError, match="All records failed"):
        handler(event, lambda_context("WebhookFunction"))

    assert handler(event, lambda_context("WebhookFunction")) == {"batchItemFailures": []}
    assert [request.status for request in server.requests] == [503, 200]


def test_the_same_event_delivered_twice_reaches_the_server_once(
    fanout: FanoutStack, server: WebhookServer, invoke: Invoke
) -> None:
    invoke(PROCESSED, ids=("first-copy",))
    response = invoke(PROCESSED, PROCESSED, ids=("second-copy", "third-copy"))  # SNS/SQS duplicates

    assert response == {"batchItemFailures": []}
    assert len(server.requests) == 1
    items = fanout.clients.dynamodb.scan(TableName=fanout.idempotency_table)["Items"]
    assert [(item["id"]["S"].split("#")[0], item["status"]["S"]) for item in items] == [
        ("webhook-delivery", "COMPLETED")
    ]


def test_a_receiver_with_another_secret_rejects_the_request_and_the_record_fails(fanout: FanoutStack) -> None:
    with WebhookServer("not-the-shared-secret") as strict:
        handler = webhook_handler(fanout, strict.url)
        event = {"Records": [lambda_sqs_record(PROCESSED, message_id="a"), lambda_sqs_record(FAILED, message_id="b")]}

        with pytest.raises(BatchProcessingError, match="All records failed"):
            handler(event, lambda_context("WebhookFunction"))

    assert {request.signature_error for request in strict.requests} == {"signature does not match the body"}
    assert [request.status for request in strict.requests] == [401, 401]


def test_a_redirect_is_not_followed_and_fails_the_record(server: WebhookServer, invoke: Invoke) -> None:
    server.script(PROCESSED_ID, 302)

    response = invoke(PROCESSED, FAILED)

    assert response == {"batchItemFailures": [{"itemIdentifier": "message-0"}]}
    assert [request.event_id for request in server.requests] == [PROCESSED_ID, FAILED_ID]  # nothing followed it


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        json.dumps({"event_type": "ImageProcessed"}),
        json.dumps({**json.loads(PROCESSED), "event_id": ""}),
    ],
    ids=["not-json", "json-array", "no-event-id", "empty-event-id"],
)
def test_a_malformed_message_fails_alone_and_is_never_posted(server: WebhookServer, invoke: Invoke, body: str) -> None:
    response = invoke(body, PROCESSED, ids=("poison", "fine"))

    assert response == {"batchItemFailures": [{"itemIdentifier": "poison"}]}
    assert [request.event_id for request in server.requests] == [PROCESSED_ID]


def test_the_signing_secret_is_read_once_per_container(
    fanout: FanoutStack, server: WebhookServer, invoke: Invoke
) -> None:
    reads: list[str] = []
    fanout.clients.secretsmanager.meta.events.register(
        "before-parameter-build.secrets-manager.GetSecretValue",
        lambda **kwargs: reads.append(kwargs["params"]["SecretId"]),
    )

    invoke(PROCESSED)
    invoke(FAILED)

    assert reads == [fanout.secret_arn]
    assert len(server.delivered(PROCESSED_ID)) == len(server.delivered(FAILED_ID)) == 1


@given(secret=st.text(min_size=1, max_size=64), body=st.binary(max_size=2048), timestamp=st.integers(0, 2**40))
def test_signatures_verify_and_any_change_is_rejected(secret: str, body: bytes, timestamp: int) -> None:
    header = signature_header(secret, body, timestamp)

    assert verify_signature(secret, body, header, now=timestamp) == timestamp
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(secret, body + b" ", header, now=timestamp)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(secret + "x", body, header, now=timestamp)
    with pytest.raises(SignatureError, match="tolerance"):
        verify_signature(secret, body, header, now=timestamp + 301)
    resigned = f"t={timestamp + 1},v1={compute_signature(secret, timestamp, body)}"  # replayed under a new time
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(secret, body, resigned, now=timestamp)


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=123", "t=abc,v1=def", "garbage"])
def test_malformed_signature_headers_are_rejected(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_signature("secret", b"{}", header, now=123)


def test_any_of_several_signatures_may_match_during_a_rotation() -> None:
    header = f"t=100,v1={compute_signature('old', 100, b'{}')},v1={compute_signature('new', 100, b'{}')}"

    assert verify_signature("new", b"{}", header, now=100) == 100
    assert verify_signature("old", b"{}", header, now=100) == 100


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "example.com/hook", "https://"])
def test_a_webhook_url_that_is_not_http_is_a_config_error(url: str) -> None:
    environ = {"WEBHOOK_URL": url, "WEBHOOK_SECRET_ARN": "arn", "IDEMPOTENCY_TABLE": "table"}

    with pytest.raises(ConfigError, match="WEBHOOK_URL"):
        WebhookSettings.from_env(environ)


def test_missing_webhook_settings_are_all_named_at_once() -> None:
    with pytest.raises(ConfigError) as error:
        WebhookSettings.from_env({"WEBHOOK_TIMEOUT_SECONDS": "0"})

    for name in ("WEBHOOK_URL", "WEBHOOK_SECRET_ARN", "IDEMPOTENCY_TABLE", "WEBHOOK_TIMEOUT_SECONDS"):
        assert name in str(error.value)


# ----------------------------------------------------------------------------- deadline and backoff


class SlowLoris:
    """A receiver on 127.0.0.1 that reads the request, then trickles a never-ending header one
    byte every 0.1 s: every single read succeeds well within any per-read timeout."""

    def __init__(self, trickle_seconds: float = 30.0) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._trickle_seconds = trickle_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/hooks/images"

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection:
            connection.recv(65536)
            trickle = itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000)
            started = time.monotonic()
            while not self._stop.is_set() and time.monotonic() - started < self._trickle_seconds:
                try:
                    connection.send(bytes([next(trickle)]))
                except OSError:
                    return  # the sender hung up: what the deadline is for
                self._stop.wait(0.1)

    def __enter__(self) -> SlowLoris:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


def test_a_slow_loris_receiver_cannot_hold_a_send_past_its_total_deadline() -> None:
    """The deadline covers the whole request: a receiver answering one byte at a time (which
    resets a per-read timeout forever; it held a 1 s urllib send for 20 s) is cut off."""
    with SlowLoris(trickle_seconds=30) as loris:
        sender = WebhookSender(loris.url, lambda: "any-signing-secret", timeout_seconds=1.0)
        started = time.monotonic()
        with pytest.raises(WebhookDeliveryError, match=r"within the 1 s deadline"):
            sender.send(PROCESSED.encode(), event_id=PROCESSED_ID, event_type="ImageProcessed")
        elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed  # a correctness bound (the loris would go on for 30 s), not a speed target


@given(receive_count=st.integers(min_value=1, max_value=1000), fraction=st.floats(min_value=0, max_value=1))
def test_each_retry_waits_between_half_and_all_of_an_exponentially_growing_capped_delay(
    receive_count: int, fraction: float
) -> None:
    backoff = Backoff(base_seconds=60, max_seconds=3600)
    ceiling = min(3600, 60 * 2 ** min(receive_count - 1, 32))
    delay = backoff.delay_seconds(receive_count, uniform=lambda low, high: low + fraction * (high - low))
    assert ceiling / 2 - 1 <= delay <= ceiling + 1
    assert backoff.ceiling(receive_count + 1) >= backoff.ceiling(receive_count)  # never shrinks
    assert backoff.ceiling(receive_count) <= SQS_MAX_VISIBILITY_SECONDS


@dataclass
class OutageRun:
    delivered_after_seconds: float | None  # simulated time of the successful delivery
    receives: int
    dead_lettered: bool


def ride_out_outage(
    fanout: FanoutStack, server: WebhookServer, outage_seconds: float, uniform: Callable[[float, float], float]
) -> OutageRun:
    """One event through WebhookQueue (its template RedrivePolicy) and the real handler with the
    template's backoff, the receiver answering 500 until `outage_seconds` of simulated time.

    Time is simulated: each poll happens when the visibility the handler set (recorded from its
    ChangeMessageVisibility call) has passed; the harness then makes the message visible at once."""
    parameters = fanout.parameters
    env = {
        "WEBHOOK_RETRY_BASE_SECONDS": parameters["WebhookRetryBaseSeconds"],
        "WEBHOOK_RETRY_MAX_SECONDS": parameters["WebhookRetryMaxSeconds"],
    }
    handler = webhook_handler(fanout, server.url, **env)
    handler_module(handler).processor.jitter = uniform  # type: ignore[attr-defined]
    delays: list[int] = []

    def record_delay(params: dict[str, Any], **_: Any) -> None:
        delays.append(int(params["VisibilityTimeout"]))

    sqs = fanout.clients.sqs
    sqs.meta.events.register("provide-client-params.sqs.ChangeMessageVisibility", record_delay)
    fanout.publish(event_for_record(item("outage")))
    now, receives = 0.0, 0
    mapping = event_source(fanout, "WebhookFunction", handler, lambda_context("WebhookFunction"))
    queue = fanout.queues("WebhookFunction")
    while True:
        server.fail_event_types = {"ImageProcessed"} if now < outage_seconds else set()
        messages = sqs.receive_message(
            QueueUrl=fanout.queues("WebhookFunction").url,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return OutageRun(None, receives, fanout.queue_depth(queue.dlq_url) == 1)
        receives += 1
        failed = mapping.invoke(messages).failed  # a batch of one that failed fails the invocation: all of it
        if not failed:
            sqs.delete_message(
                QueueUrl=fanout.queues("WebhookFunction").url, ReceiptHandle=messages[0]["ReceiptHandle"]
            )
            return OutageRun(now, receives, False)
        now += delays[-1]  # the wait SQS would impose...
        sqs.change_message_visibility(  # ...fast-forwarded
            QueueUrl=fanout.queues("WebhookFunction").url,
            ReceiptHandle=messages[0]["ReceiptHandle"],
            VisibilityTimeout=0,
        )


OUTAGE_SURVIVED_HOURS = 9  # docs/reliability.md: what the template's defaults always ride out


def test_the_template_backoff_rides_out_a_nine_hour_receiver_outage_without_loss(
    fanout: FanoutStack, server: WebhookServer
) -> None:
    """With the jitter at its shortest (every wait at half its ceiling): the event is delivered
    once, after the outage, and never dead-lettered; 420 s x 5 gave up after 35 minutes."""
    parameters = fanout.parameters
    backoff = Backoff(int(parameters["WebhookRetryBaseSeconds"]), int(parameters["WebhookRetryMaxSeconds"]))
    max_receives = int(parameters["WebhookMaxReceiveCount"])
    assert backoff.min_window_seconds(max_receives) >= OUTAGE_SURVIVED_HOURS * 3600

    run = ride_out_outage(fanout, server, OUTAGE_SURVIVED_HOURS * 3600, uniform=lambda low, high: low)

    assert not run.dead_lettered
    assert run.delivered_after_seconds is not None
    assert run.delivered_after_seconds >= OUTAGE_SURVIVED_HOURS * 3600
    assert run.receives <= max_receives
    [delivered] = [r for r in server.requests if 200 <= r.status < 300]
    assert delivered.signature_error is None
    assert len(server.requests) == run.receives  # one POST per receive: nothing else was sent


def test_an_outage_longer_than_the_retry_window_dead_letters_the_event_for_redrive(
    fanout: FanoutStack, server: WebhookServer
) -> None:
    """Past the window, the event is not lost either: it waits in the DLQ (`pipeline redrive`)."""
    parameters = fanout.parameters
    max_receives = int(parameters["WebhookMaxReceiveCount"])
    longest = Backoff(int(parameters["WebhookRetryBaseSeconds"]), int(parameters["WebhookRetryMaxSeconds"]))

    run = ride_out_outage(fanout, server, longest.max_window_seconds(max_receives) + 1, uniform=lambda lo, hi: hi)

    assert run.dead_lettered
    assert run.receives == max_receives
    assert all(request.status == 500 for request in server.requests)
