"""The stack unit tests run against: template.yaml deployed by the twin, as `make demo` and
`make up` deploy it (pipeline_cli.twin.deploy), into moto's in-process backends.

A deployment takes seconds, so it is made once per process and set of parameters; each test
then starts from a copy of that deployed account (moto_compat.AccountSnapshot): tests are as
isolated as with a deployment of their own. Handlers are loaded by the test (tests/conftest.py)
with the environment the deployment gave their function.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from moto import mock_aws
from moto.core.config import DefaultConfig

from image_pipeline.cleanup import Cleanup
from image_pipeline.clients import AwsClients
from image_pipeline.config import CleanupSettings
from image_pipeline.repository import ImagesRepository
from pipeline_cli.twin.deploy import DeployedStack, deploy
from pipeline_cli.twin.moto_compat import AccountSnapshot, distributed_map_like_aws, route_s3_notifications
from pipeline_cli.twin.server import Endpoint

STACK_NAME = "test"
# Every part of the template deployed: the webhook consumer exists only with a URL (a test
# points its function at a receiver of its own through the environment).
TEST_PARAMETERS = {"WebhookUrl": "https://webhook.invalid/images"}
EVENTS_TAP = "test-image-events-tap"
# As the twin's server runs it (pipeline_cli.twin.server): Step Functions executes definitions,
# Distributed Map as on AWS (CreateStateMachine parses the definition).
MOTO_CONFIG: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}}


@dataclass
class TestStack:
    __test__ = False  # a fixture's value, not a test class

    clients: AwsClients
    deployed: DeployedStack
    events_queue_url: str  # a test's tap: raw-delivery subscription to the topic, everything published
    # (function ARN, event) S3 sent to Lambda, held: a unit test invokes the handler itself
    s3_notifications: list[tuple[str, Any]] = field(default_factory=list)

    def resource(self, logical_id: str) -> str:
        """A resource's physical id (its Ref): name, URL or ARN by type."""
        return self.deployed.physical_ids[logical_id]

    @property
    def ingest_bucket(self) -> str:
        return self.resource("IngestBucket")

    @property
    def renditions_bucket(self) -> str:
        return self.resource("RenditionsBucket")

    @property
    def images_table(self) -> str:
        return self.resource("ImagesTable")

    @property
    def events_topic_arn(self) -> str:
        return self.resource("ImageEventsTopic")

    @property
    def parameters(self) -> dict[str, str]:
        """Every template parameter's value in this deployment."""
        return self.deployed.parameters

    def env(self, function: str, **overrides: str) -> dict[str, str]:
        """The function's environment as deployed (template.yaml's, resolved), with overrides."""
        return self.deployed.functions[function].environment | overrides

    def thumbnail_env(self, **overrides: str) -> dict[str, str]:
        return self.env("ThumbnailFunction", **overrides)

    def put_upload(self, key: str, body: bytes) -> dict[str, Any]:
        """Upload like a client would; returns what an S3 event would carry about it."""
        response = self.clients.s3.put_object(Bucket=self.ingest_bucket, Key=key, Body=body)
        return {"etag": response["ETag"].strip('"'), "version_id": response.get("VersionId"), "size": len(body)}

    def item(self, image_id: str) -> dict[str, Any] | None:
        """The image's item as stored, attribute by attribute (read through its typed record)."""
        record = ImagesRepository(self.clients.dynamodb, self.images_table).get(image_id)
        return record.to_dict() if record else None

    def published_events(self) -> list[dict[str, Any]]:
        """Drain the tap: every message published to the topic, in arrival order."""
        messages: list[dict[str, Any]] = []
        while True:
            response = self.clients.sqs.receive_message(
                QueueUrl=self.events_queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            )
            batch = response.get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                body = json.loads(message["Body"])
                body["_attributes"] = {
                    name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()
                }
                messages.append(body)
                self.clients.sqs.delete_message(QueueUrl=self.events_queue_url, ReceiptHandle=message["ReceiptHandle"])

    def rendition_keys(self) -> list[str]:
        response = self.clients.s3.list_objects_v2(Bucket=self.renditions_bucket)
        return sorted(obj["Key"] for obj in response.get("Contents", []))


def _tap(endpoint: Endpoint, topic_arn: str) -> str:
    """A queue that receives everything published to the topic: what the tests observe it by."""
    sqs = endpoint.client("sqs")
    url: str = sqs.create_queue(QueueName=EVENTS_TAP)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    endpoint.client("sns").subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    return url


@functools.cache
def _deployment(parameters: tuple[tuple[str, str], ...]) -> tuple[DeployedStack, str, AccountSnapshot]:
    with mock_aws(config=MOTO_CONFIG), distributed_map_like_aws():
        endpoint = Endpoint("")  # no URL: boto3's own endpoints, which mock_aws answers in-process
        deployed = deploy(endpoint, STACK_NAME, dict(parameters))
        tap = _tap(endpoint, deployed.physical_ids["ImageEventsTopic"])
        return deployed, tap, AccountSnapshot.take()


@contextmanager
def deployed_stack(**parameters: str) -> Iterator[TestStack]:
    """template.yaml deployed (TEST_PARAMETERS, then `parameters`) in a mocked account of its own,
    for the duration of the block."""
    deployed, tap, snapshot = _deployment(tuple(sorted((TEST_PARAMETERS | parameters).items())))
    stack = TestStack(AwsClients(), deployed, tap)

    def hold(function_arn: str, event: Any) -> None:
        stack.s3_notifications.append((function_arn, event))

    with mock_aws(config=MOTO_CONFIG), distributed_map_like_aws(), route_s3_notifications(hold):
        snapshot.restore()
        yield stack


def cleanup_settings_for(stack: TestStack, **changes: Any) -> CleanupSettings:
    settings = CleanupSettings(
        images_table=stack.images_table,
        renditions_bucket=stack.renditions_bucket,
        stuck_after_minutes=30,
        orphan_grace_minutes=30,
        max_items_per_run=5000,
        dry_run=False,
    )
    return replace(settings, **changes)


def cleanup_for(stack: TestStack, *, at: datetime, **changes: Any) -> Cleanup:
    """The cleanup job over the stack, running at `at` (default thresholds: 30 minutes)."""
    repository = ImagesRepository(stack.clients.dynamodb, stack.images_table)
    return Cleanup(cleanup_settings_for(stack, **changes), s3=stack.clients.s3, repository=repository, clock=lambda: at)
