"""ImageEventsTopic -> SQS -> consumers, wired from template.yaml in moto, driven like Lambda's SQS poller."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from image_pipeline.events import event_for_record
from image_pipeline.record import FailureReason, ImageRecord, ImageStatus, SourceImage, SourceVersion
from pipeline_cli.__main__ import main as pipeline
from pipeline_cli.project import PROJECT_ROOT
from pipeline_cli.twin.runtime import load_handler
from pipeline_cli.twin.template import load_template, resolve, resource
from pipeline_cli.webhook_receiver import WebhookServer
from tests.conftest import lambda_context
from tests.consumers import FanoutStack, consumers_of, event_source, handler_module, webhook_mapping
from tests.stack import TestStack, deployed_stack

# Every consumer of ImageEventsTopic, found in template.yaml: a new one is checked here without edits.
CONSUMERS = tuple(consumer.function.removesuffix("Function") for consumer in consumers_of("ImageEventsTopic"))
FOURTEEN_DAYS = 14 * 24 * 3600


def item(name: str, status: str = "SUCCEEDED") -> ImageRecord:
    succeeded = status == "SUCCEEDED"
    return ImageRecord(
        image_id=f"id-{name}",
        bucket="ingest",
        key=f"uploads/{name}.jpg",
        status=ImageStatus(status),
        source=SourceVersion(etag=f"etag-{name}", sequencer="0055AED6DCD90281E5"),
        created_at="2026-11-25T09:30:01.907Z",
        updated_at="2026-11-25T09:30:02.481Z",
        attempts=1,
        image=SourceImage(width=640, height=480, format="JPEG", bytes=1234, sha256="ab" * 32) if succeeded else None,
        error=None if succeeded else FailureReason("not_an_image", "cannot identify image file"),
    )


@pytest.fixture
def fanout(stack: TestStack) -> FanoutStack:
    return FanoutStack.of(stack)


@pytest.fixture
def server(fanout: FanoutStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with WebhookServer(fanout.signing_secret) as running:
        yield running


# ---------------------------------------------------------------- the template's promises


def _parameter_max(value: Any) -> int:
    return int(load_template()["Parameters"][value["Ref"]]["MaxValue"]) if isinstance(value, dict) else int(value)


def _named(value: Any) -> Any:
    """`value` with each reference replaced by what it names, however written (a loop writes
    `!Sub "${X.Arn}"` where a block writes `!GetAtt X.Arn`): a resource's Ref as "X", an
    attribute as "X.Attribute", a parameter as its name."""
    template = load_template()
    names = {name: name for name in [*template["Parameters"], *template["Resources"]]}
    attributes = {
        f"{logical_id}.{attribute}" for logical_id in template["Resources"] for attribute in ("Arn", "QueueName")
    }
    return resolve(value, names | {attribute: attribute for attribute in attributes})


def test_the_consumers_are_found_in_the_template() -> None:
    # Each consumer found is a handler directory and its own test file (the recipe in docs/add-a-consumer.md).
    assert len(CONSUMERS) >= 2
    for consumer in CONSUMERS:
        code = resource(f"{consumer}Function")["Properties"]["CodeUri"]
        assert (PROJECT_ROOT / code / "app.py").is_file()
        assert (PROJECT_ROOT / "tests" / "unit" / f"test_{Path(code).name}.py").is_file()


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_each_consumer_queue_is_encrypted_dead_lettered_and_outlives_its_function(consumer: str) -> None:
    queue = resource(f"{consumer}Queue")["Properties"]
    dead_letter = resource(f"{consumer}DeadLetterQueue")["Properties"]
    function = resource(f"{consumer}Function")["Properties"]
    [source] = function["Events"].values()

    assert queue["SqsManagedSseEnabled"] is True
    assert dead_letter["SqsManagedSseEnabled"] is True
    assert dead_letter["MessageRetentionPeriod"] == FOURTEEN_DAYS
    assert queue["MessageRetentionPeriod"] < dead_letter["MessageRetentionPeriod"]
    assert _named(queue["RedrivePolicy"]) == {
        "deadLetterTargetArn": f"{consumer}DeadLetterQueue.Arn",
        "maxReceiveCount": f"{consumer}MaxReceiveCount",
    }
    window = _parameter_max(source["Properties"]["MaximumBatchingWindowInSeconds"])
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"] + window
    assert source["Type"] == "SQS"
    assert source["Properties"]["Queue"] == {"Fn::GetAtt": [f"{consumer}Queue", "Arn"]}
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_only_the_image_events_topic_may_send_to_a_consumer_queue(consumer: str) -> None:
    policy = resource(f"{consumer}QueuePolicy")["Properties"]
    [allow] = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    subscription = resource(f"{consumer}Subscription")["Properties"]

    assert _named(policy["Queues"]) == [f"{consumer}Queue"]
    assert _named(allow["Resource"]) == f"{consumer}Queue.Arn"
    assert allow["Principal"] == {"Service": "sns.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "ImageEventsTopic"}}}
    assert subscription["TopicArn"] == {"Ref": "ImageEventsTopic"}
    assert subscription["RawMessageDelivery"] is True


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_a_consumer_function_can_reach_only_its_own_queue_and_the_idempotency_table(consumer: str) -> None:
    statements = [
        statement
        for policy in resource(f"{consumer}Function")["Properties"]["Policies"]
        for statement in policy.get("Statement", [])
    ]
    [deny] = [statement for statement in statements if statement["Effect"] == "Deny"]
    [dynamodb] = [statement for statement in statements if str(statement["Action"]).startswith("['dynamodb:")]

    assert deny["NotResource"] == {"Fn::GetAtt": [f"{consumer}Queue", "Arn"]}
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= set(deny["Action"])
    assert dynamodb["Resource"] == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
    assert all("*" not in json.dumps(statement.get("Action")) for statement in statements)


def test_every_dead_letter_queue_and_function_has_an_alarm_on_the_alarm_topic() -> None:
    resources = load_template()["Resources"]
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    watched = {(alarm["MetricName"], _named(alarm["Dimensions"][0]["Value"])) for alarm in alarms}
    # Every queue no function reads (the ones with a RedrivePolicy are event sources): the dead-letter
    # and failure queues, where a message means something failed for good.
    holding_queues = [
        name
        for name, r in resources.items()
        if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" not in r.get("Properties", {})
    ]
    assert len(holding_queues) >= 4
    for queue in holding_queues:
        assert ("ApproximateNumberOfMessagesVisible", f"{queue}.QueueName") in watched, f"no alarm on {queue}"
    functions = [name for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"]
    for function in functions:
        for metric in ("Errors", "Throttles"):
            assert (metric, function) in watched, f"no {metric} alarm for {function}"
    assert all(alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] for alarm in alarms)
    assert resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}


def test_each_alarm_exists_exactly_when_what_it_watches_does() -> None:
    resources = load_template()["Resources"]
    for name, spec in resources.items():
        if spec["Type"] == "AWS::CloudWatch::Alarm":
            watched = str(_named(spec["Properties"]["Dimensions"][0]["Value"])).split(".")[0]
            assert spec.get("Condition") == resources[watched].get("Condition"), name


def test_the_webhook_acts_only_when_a_url_is_configured() -> None:
    resources = load_template()["Resources"]
    # Its queues (every consumer's, from one loop) stay without a URL, idle: nothing subscribes them.
    idle = {"WebhookDeadLetterQueue", "WebhookQueue", "WebhookQueuePolicy", "WebhookDeadLetterQueueAlarm"}
    acting = [name for name in resources if name.startswith("Webhook") and name not in idle]

    assert idle <= set(resources)
    assert {"WebhookSubscription", "WebhookFunction", "WebhookSigningSecret", "WebhookLogGroup"} <= set(acting)
    assert all(resources[name].get("Condition") == "HasWebhook" for name in acting)
    assert load_template()["Conditions"]["HasWebhook"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "WebhookUrl"}, ""]}]}


# ---------------------------------------------------------------- delivery through SNS and SQS


def test_each_queue_gets_the_raw_event_its_filter_policy_admits() -> None:
    processed, failed = event_for_record(item("ok")), event_for_record(item("bad", "FAILED"))
    with deployed_stack(WebhookEventTypes="ImageFailed") as stack:
        fanout = FanoutStack.of(stack)
        fanout.publish(processed)
        fanout.publish(failed)

        def bodies(url: str) -> list[dict[str, Any]]:
            messages = stack.clients.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            )
            return [
                json.loads(m["Body"]) | {"_type": m["MessageAttributes"]["event_type"]["StringValue"]}
                for m in messages["Messages"]
            ]

        webhook, audit = bodies(fanout.queues("WebhookFunction").url), bodies(fanout.queues("AuditFunction").url)
    assert webhook == [failed.to_message() | {"_type": "ImageFailed"}]
    assert sorted(audit, key=lambda m: m["event_type"]) == [
        failed.to_message() | {"_type": "ImageFailed"},
        processed.to_message() | {"_type": "ImageProcessed"},
    ]


def test_one_failing_message_in_a_real_batch_is_the_only_batch_item_failure(
    fanout: FanoutStack, server: WebhookServer
) -> None:
    events = [event_for_record(item(f"image-{n}")) for n in range(3)]
    for event in events:
        fanout.publish(event)
    server.script(events[1].event_id, 500)

    poll = webhook_mapping(fanout, server.url).poll()

    assert len(poll.received) == 3
    [failed_id] = poll.failed
    remaining = fanout.clients.sqs.receive_message(
        QueueUrl=fanout.queues("WebhookFunction").url, MaxNumberOfMessages=10
    )["Messages"]
    assert [(m["MessageId"], json.loads(m["Body"])["event_id"]) for m in remaining] == [(failed_id, events[1].event_id)]
    delivered = {request.event_id for request in server.requests if request.status == 200}
    assert delivered == {events[0].event_id, events[2].event_id}


def test_a_poison_message_is_dead_lettered_redriven_and_then_delivered_once(
    fanout: FanoutStack, server: WebhookServer, capsys: pytest.CaptureFixture[str]
) -> None:
    max_receives = int(fanout.parameters["WebhookMaxReceiveCount"])
    poison, healthy = event_for_record(item("poison")), event_for_record(item("healthy"))
    server.script(poison.event_id, *[500] * max_receives)  # the receiver is down for this event
    fanout.publish(poison)
    fanout.publish(healthy)
    mapping = webhook_mapping(fanout, server.url)

    mapping.drain()

    assert fanout.queue_depth(fanout.queues("WebhookFunction").url) == 0
    assert fanout.queue_depth(fanout.queues("WebhookFunction").dlq_url) == 1
    assert [r.status for r in server.requests if r.event_id == poison.event_id] == [500] * max_receives
    assert len(server.delivered(healthy.event_id)) == 1

    # The receiver is back: redrive the DLQ (by name) with the project's CLI.
    assert pipeline(["redrive", "--dlq", fanout.queues("WebhookFunction").dlq_name]) == 0
    output = capsys.readouterr().out
    assert "moved 1 messages with receive/send/delete" in output
    assert fanout.queue_depth(fanout.queues("WebhookFunction").dlq_url) == 0

    mapping.drain()
    fanout.publish(poison)  # and a late duplicate of the same outcome changes nothing
    mapping.drain()

    assert fanout.queue_depth(fanout.queues("WebhookFunction").url) == 0
    assert len(server.delivered(poison.event_id)) == 1
    assert len(server.delivered(healthy.event_id)) == 1


def test_the_audit_trail_archives_every_event_once_through_the_queue(fanout: FanoutStack) -> None:
    handler = load_handler("functions/audit", "app.lambda_handler", fanout.audit_env())
    handler_module(handler).clients = fanout.clients
    mapping = event_source(fanout, "AuditFunction", handler, lambda_context("AuditFunction"))
    events = [event_for_record(item(f"image-{n}", "SUCCEEDED" if n % 2 else "FAILED")) for n in range(5)]
    for event in events + events[:2]:  # two outcomes published twice (a retried thumbnailer)
        fanout.publish(event)

    mapping.drain()

    lines = [json.loads(line) for body in fanout.archive_objects().values() for line in body.decode().splitlines()]
    assert sorted(line["event_id"] for line in lines) == sorted(event.event_id for event in events)
    assert fanout.queue_depth(fanout.queues("AuditFunction").url) == 0
