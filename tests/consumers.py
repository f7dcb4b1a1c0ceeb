"""The fan-out half of the stack in moto, built FROM template.yaml, and the twin's SQS poller on it.

`create_fanout_stack` makes the queues of every consumer of ImageEventsTopic with their DLQs, queue
attributes, subscriptions (raw delivery, filter policy) and IdempotencyTable exactly as the
template declares them. `event_source` is the twin's SQS poller (Lambda's event source
mapping, with the template's BatchSize and FunctionResponseTypes) for a consumer's queue.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from image_pipeline.clients import AwsClients
from image_pipeline.events import ImageEvent
from pipeline_cli.twin.delivery import SqsPoller
from pipeline_cli.twin.deploy import QueueEventSource, subscribe
from pipeline_cli.twin.runtime import Invocation, LambdaContext, load_handler, run_handler
from pipeline_cli.twin.template import function_variables, load_template, parameter_values, resolve, resource
from tests.conftest import lambda_context
from tests.stack import REGION, create_table_from_template

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"
SQS_SAMPLE = EVENTS_DIR / "sqs-image-event.json"
WEBHOOK_SECRET = "test-signing-secret-0123456789abcdefghijklmnop"

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
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

    clients: AwsClients
    topic_arn: str
    consumers: dict[str, ConsumerQueues]  # function logical id -> its queue and DLQ
    values: dict[str, Any]  # what Ref/GetAtt give for the resources made here, and the parameters
    parameters: dict[str, str] = field(default_factory=dict)

    def queues(self, function: str) -> ConsumerQueues:
        return self.consumers[function]

    def resource(self, logical_id: str) -> str:
        return str(self.values[logical_id])

    def env(self, function: str, **overrides: str) -> dict[str, str]:
        """The function's environment as template.yaml declares it, resolved against this stack."""
        variables = resolve(function_variables(load_template(), function), self.values)
        return {name: str(value) for name, value in variables.items()} | overrides

    @property
    def archive_bucket(self) -> str:
        return self.resource("ArchiveBucket")

    @property
    def idempotency_table(self) -> str:
        return self.resource("IdempotencyTable")

    @property
    def secret_arn(self) -> str:
        return self.resource("WebhookSigningSecret")

    def webhook_env(self, url: str, **overrides: str) -> dict[str, str]:
        # WEBHOOK_RETRY_BASE_SECONDS 0: retry at once, tests poll without waiting
        test_settings = {"WEBHOOK_URL": url, "WEBHOOK_TIMEOUT_SECONDS": "2", "WEBHOOK_RETRY_BASE_SECONDS": "0"}
        return self.env("WebhookFunction", **{**test_settings, **overrides})

    def audit_env(self, **overrides: str) -> dict[str, str]:
        return self.env("AuditFunction", **overrides)

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


def _queue_attributes(properties: Mapping[str, Any]) -> dict[str, str]:
    attributes = {}
    for name in ("VisibilityTimeout", "MessageRetentionPeriod", "SqsManagedSseEnabled"):
        if name in properties:
            attributes[name] = (
                str(properties[name]).lower() if isinstance(properties[name], bool) else str(properties[name])
            )
    return attributes


def _create_queue(clients: AwsClients, logical_id: str, known: dict[str, Any]) -> None:
    properties = resolve(resource(logical_id)["Properties"], known)
    attributes = _queue_attributes(properties)
    if "RedrivePolicy" in properties:
        attributes["RedrivePolicy"] = json.dumps(properties["RedrivePolicy"])
    url = clients.sqs.create_queue(QueueName=f"test-{logical_id}", Attributes=attributes)["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    known[logical_id] = url
    known[f"{logical_id}.Arn"] = arn
    known[f"{logical_id}.QueueName"] = f"test-{logical_id}"


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


def _create_referenced(clients: AwsClients, logical_id: str, known: dict[str, Any]) -> None:
    """A resource a consumer's environment names, made the way its type needs."""
    kind = load_template()["Resources"][logical_id]["Type"]
    name = f"test-{logical_id.lower()}"
    if kind == "AWS::DynamoDB::Table":
        known[logical_id] = create_table_from_template(clients, logical_id, name)
    elif kind == "AWS::S3::Bucket":
        clients.s3.create_bucket(Bucket=name)
        known[logical_id] = name
    elif kind == "AWS::SecretsManager::Secret":
        known[logical_id] = clients.secretsmanager.create_secret(Name=name, SecretString=WEBHOOK_SECRET)["ARN"]
    else:
        raise NotImplementedError(f"{logical_id}: the fan-out fixture does not make {kind} resources yet")


def create_fanout_stack(clients: AwsClients, **parameter_overrides: str) -> FanoutStack:
    template = load_template()
    parameters = {
        name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()
    } | parameter_overrides
    known: dict[str, Any] = parameter_values(template, parameter_overrides)
    known["ImageEventsTopic"] = clients.sns.create_topic(Name="test-image-events")["TopicArn"]
    consumers = consumers_of("ImageEventsTopic")
    for consumer in consumers:
        _create_queue(clients, consumer.dead_letter_queue, known)
        _create_queue(clients, consumer.queue, known)
        subscribe(clients.sns, resolve(resource(consumer.subscription)["Properties"], known))
        variables = template["Resources"][consumer.function]["Properties"].get("Environment", {}).get("Variables", {})
        for value in variables.values():
            if isinstance(value, dict) and "Ref" in value and value["Ref"] not in known:
                _create_referenced(clients, value["Ref"], known)

    def queues(consumer: Consumer) -> ConsumerQueues:
        return ConsumerQueues(
            url=known[consumer.queue],
            arn=known[f"{consumer.queue}.Arn"],
            name=known[f"{consumer.queue}.QueueName"],
            dlq_url=known[consumer.dead_letter_queue],
            dlq_arn=known[f"{consumer.dead_letter_queue}.Arn"],
            dlq_name=known[f"{consumer.dead_letter_queue}.QueueName"],
        )

    return FanoutStack(
        clients=clients,
        topic_arn=known["ImageEventsTopic"],
        consumers={consumer.function: queues(consumer) for consumer in consumers},
        values=known,
        parameters=parameters,
    )


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
    """The twin's poller for `function`'s SQS event source, configured as template.yaml declares it
    (BatchSize, FunctionResponseTypes), on the fan-out stack's queue for that function."""
    mapping = next(iter(resource(function)["Properties"]["Events"].values()))["Properties"]
    queues = fanout.queues(function)
    batch_size = resolve(mapping.get("BatchSize", 10), {**fanout.parameters})
    source = QueueEventSource(
        function=function,
        queue_arn=queues.arn,
        queue_url=queues.url,
        batch_size=int(batch_size),
        report_batch_item_failures="ReportBatchItemFailures" in mapping.get("FunctionResponseTypes", []),
    )

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
