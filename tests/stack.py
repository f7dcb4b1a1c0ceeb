"""A moto-backed copy of the stack's data plane for unit tests, built FROM template.yaml.

The table schema (keys, index, TTL) is read from the template so tests cannot drift from what
is deployed. The whole-stack deployment (SAM translation, subscriptions, policies) is the local
runner's job; unit tests need only the buckets, the table, the topic and a queue that sees events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from image_pipeline.cleanup import Cleanup
from image_pipeline.clients import AwsClients
from image_pipeline.config import CleanupSettings
from image_pipeline.repository import ImagesRepository
from pipeline_cli.twin.template import resource

REGION = "us-east-1"


def create_table_from_template(clients: AwsClients, logical_id: str, table_name: str) -> str:
    properties = resource(logical_id)["Properties"]
    request: dict[str, Any] = {
        "TableName": table_name,
        "BillingMode": properties["BillingMode"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
    }
    if "GlobalSecondaryIndexes" in properties:
        request["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    clients.dynamodb.create_table(**request)
    ttl = properties.get("TimeToLiveSpecification")
    if ttl:
        clients.dynamodb.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)
    return table_name


@dataclass
class TestStack:
    __test__ = False  # a fixture's value, not a test class

    clients: AwsClients
    ingest_bucket: str
    renditions_bucket: str
    images_table: str
    events_topic_arn: str
    events_queue_url: str  # raw-delivery subscription to the topic: what consumers would see

    def thumbnail_env(self, **overrides: str) -> dict[str, str]:
        env = {
            "INGEST_BUCKET": self.ingest_bucket,
            "RENDITIONS_BUCKET": self.renditions_bucket,
            "IMAGES_TABLE": self.images_table,
            "EVENTS_TOPIC_ARN": self.events_topic_arn,
            "UPLOAD_PREFIX": "uploads/",
            "RENDITION_SIZES": "1024,512,128",
            "RENDITION_FORMAT": "JPEG",
            "RENDITION_QUALITY": "82",
            "POWERTOOLS_SERVICE_NAME": "image-pipeline",
            "POWERTOOLS_METRICS_NAMESPACE": "ImagePipeline",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        env.update(overrides)
        return env

    def put_upload(self, key: str, body: bytes) -> dict[str, Any]:
        """Upload like a client would; returns what an S3 event would carry about it."""
        response = self.clients.s3.put_object(Bucket=self.ingest_bucket, Key=key, Body=body)
        return {"etag": response["ETag"].strip('"'), "version_id": response.get("VersionId"), "size": len(body)}

    def item(self, image_id: str) -> dict[str, Any] | None:
        """The image's item as stored, attribute by attribute (read through its typed record)."""
        record = ImagesRepository(self.clients.dynamodb, self.images_table).get(image_id)
        return record.to_dict() if record else None

    def published_events(self) -> list[dict[str, Any]]:
        """Drain the capture queue: every message published to the topic, in arrival order."""
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


def create_test_stack(clients: AwsClients) -> TestStack:
    ingest, renditions = "test-ingest", "test-renditions"
    clients.s3.create_bucket(Bucket=ingest)
    clients.s3.put_bucket_versioning(Bucket=ingest, VersioningConfiguration={"Status": "Enabled"})
    clients.s3.create_bucket(Bucket=renditions)
    table = create_table_from_template(clients, "ImagesTable", "test-images")
    topic_arn = clients.sns.create_topic(Name="test-image-events")["TopicArn"]
    queue_url = clients.sqs.create_queue(QueueName="test-image-events-capture")["QueueUrl"]
    queue_arn = clients.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    clients.sns.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    return TestStack(clients, ingest, renditions, table, topic_arn, queue_url)


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
