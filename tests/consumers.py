"""The fan-out half of the deployed test stack (tests/stack.py), and the twin's SQS poller on it.

`FanoutStack` is the deployed ImageEventsTopic with every consumer template.yaml subscribes to
it, found in the template (`consumers_of`), not listed: a new consumer needs no change here.
`event_source` is the twin's SQS poller (Lambda's event source mapping, as deployed: BatchSize,
FunctionResponseTypes) for a consumer's queue.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from image_pipeline.clients import AwsClients
from image_pipeline.events import ImageEvent
from pipeline_cli.twin.delivery import SqsPoller
from pipeline_cli.twin.runtime import Invocation, LambdaContext, load_handler, run_handler
from pipeline_cli.twin.server import REGION
from pipeline_cli.twin.template import load_template
from tests.conftest import lambda_context
from tests.stack import TestStack

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"
SQS_SAMPLE = EVENTS_DIR / "sqs-image-event.json"

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class Consumer:
    """A function behind an SQS queue subscribed to ImageEventsTopic, as the template wires it."""

    function: str
    queue: str
    dead_letter_queue: str
    subscription: str


def _logical_id(reference: Any) -> str:
    """The resource a `!Ref X`, `!GetAtt X.Attr` or `!Sub "${X.Attr}"` (a Fn::ForEach loop's form) names."""
    if "Fn::Sub" in reference:
        return str(reference["Fn::Sub"]).removeprefix("${").removesuffix("}").split(".")[0]
    return str(reference["Ref"] if "Ref" in reference else reference["Fn::GetAtt"][0])


def consumers_of(topic: str) -> list[Consumer]:
    """Every consumer of `topic` in template.yaml: found, not listed, so a new one needs no change here."""
    resources = load_template()["Resources"]
    subscriptions = {
        _logical_id(spec["Properties"]["Endpoint"]): logical_id
        for logical_id, spec in resources.items()
        if spec["Type"] == "AWS::SNS::Subscription" and _logical_id(spec["Properties"]["TopicArn"]) == topic
    }
    found = []
    for logical_id, spec in resources.items():
        for event in spec.get("Properties", {}).get("Events", {}).values():
            queue = _logical_id(event["Properties"]["Queue"]) if event["Type"] == "SQS" else None
            if queue in subscriptions:
                redrive = resources[queue]["Properties"]["RedrivePolicy"]
                dlq = _logical_id(redrive["deadLetterTargetArn"])
                found.append(Consumer(logical_id, queue, dlq, subscriptions[queue]))
    return found


@dataclass(frozen=True)
class ConsumerQueues:
    url: str
    arn: str
    name: str
    dlq_url: str
    dlq_arn: str
    dlq_name: str


@dataclass
class FanoutStack:
    """ImageEventsTopic and every consumer template.yaml subscribes to it, by function logical id."""

    stack: TestStack
    consumers: dict[str, ConsumerQueues]  # function logical id -> its queue and DLQ

    @classmethod
    def of(cls, stack: TestStack) -> FanoutStack:
        def queue(logical_id: str) -> tuple[str, str, str]:
            url = stack.resource(logical_id)
            attributes = stack.clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            return url, attributes["Attributes"]["QueueArn"], url.rsplit("/", 1)[1]

        consumers = {
            consumer.function: ConsumerQueues(*queue(consumer.queue), *queue(consumer.dead_letter_queue))
            for consumer in consumers_of("ImageEventsTopic")
        }
        return cls(stack, consumers)

    @property
    def clients(self) -> AwsClients:
        return self.stack.clients

    @property
    def topic_arn(self) -> str:
        return self.stack.events_topic_arn

    @property
    def parameters(self) -> dict[str, str]:
        return self.stack.parameters

    def queues(self, function: str) -> ConsumerQueues:
        return self.consumers[function]

    @property
    def archive_bucket(self) -> str:
        return self.stack.resource("ArchiveBucket")

    @property
    def idempotency_table(self) -> str:
        return self.stack.resource("IdempotencyTable")

    @property
    def secret_arn(self) -> str:
        return self.stack.resource("WebhookSigningSecret")

    @property
    def signing_secret(self) -> str:
        """The webhook's signing secret, as the deployment generated it."""
        secret: str = self.clients.secretsmanager.get_secret_value(SecretId=self.secret_arn)["SecretString"]
        return secret

    def webhook_env(self, url: str, **overrides: str) -> dict[str, str]:
        # WEBHOOK_RETRY_BASE_SECONDS 0: retry at once, tests poll without waiting
        test_settings = {"WEBHOOK_URL": url, "WEBHOOK_TIMEOUT_SECONDS": "2", "WEBHOOK_RETRY_BASE_SECONDS": "0"}
        return self.stack.env("WebhookFunction", **{**test_settings, **overrides})

    def audit_env(self, **overrides: str) -> dict[str, str]:
        return self.stack.env("AuditFunction", **overrides)

    def publish(self, event: ImageEvent) -> str:
        from image_pipeline.events import EventPublisher

        return EventPublisher(self.clients.sns, self.topic_arn).publish(event)

    def archive_objects(self) -> dict[str, bytes]:
        listing = self.clients.s3.list_objects_v2(Bucket=self.archive_bucket)
        return {
            obj["Key"]: self.clients.s3.get_object(Bucket=self.archive_bucket, Key=obj["Key"])["Body"].read()
            for obj in listing.get("Contents", [])
        }

    def queue_depth(self, url: str) -> int:
        attributes = self.clients.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def lambda_sqs_record(
    body: str,
    *,
    message_id: str,
    receipt_handle: str = "",
    queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:test-AuditQueue",
    attributes: Mapping[str, str] | None = None,
    receive_count: int = 1,
    md5_of_body: str = "",
) -> dict[str, Any]:
    """One record in the shape Lambda's SQS event source delivers (from events/sqs-image-event.json)."""
    record: dict[str, Any] = copy.deepcopy(json.loads(SQS_SAMPLE.read_text(encoding="utf-8"))["Records"][0])
    record.update(
        messageId=message_id,
        receiptHandle=receipt_handle or f"receipt-{message_id}",
        body=body,
        eventSourceARN=queue_arn,
        awsRegion=REGION,
        md5OfBody=md5_of_body or record["md5OfBody"],
    )
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    if attributes is not None:
        record["messageAttributes"] = {
            name: {"stringValue": value, "stringListValues": [], "binaryListValues": [], "dataType": "String"}
            for name, value in attributes.items()
        }
    return record


def events_from_sample(name: str) -> list[str]:
    """The message bodies in an events/ sample."""
    return [record["body"] for record in json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))["Records"]]


def event_source(fanout: FanoutStack, function: str, handler: Handler, context: LambdaContext) -> SqsPoller:
    """The twin's poller for `function`'s SQS event source as deployed (BatchSize, FunctionResponseTypes)."""
    source = next(source for source in fanout.stack.deployed.queue_sources if source.function == function)

    def invoke(event: dict[str, Any]) -> Invocation:
        return run_handler(handler, event, context, function=function, trigger="sqs")

    return SqsPoller(fanout.clients.sqs, source, invoke)


def handler_module(handler: Handler) -> ModuleType:
    return sys.modules[handler.__module__]


def webhook_mapping(fanout: FanoutStack, url: str) -> SqsPoller:
    """WebhookFunction (one container) behind WebhookQueue, posting to `url`."""
    handler = load_handler("functions/webhook", "app.lambda_handler", fanout.webhook_env(url))
    handler_module(handler).clients = fanout.clients  # type: ignore[attr-defined]
    return event_source(fanout, "WebhookFunction", handler, lambda_context("WebhookFunction"))
