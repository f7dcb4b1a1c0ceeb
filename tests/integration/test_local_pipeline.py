"""The whole pipeline through the local runner: template.yaml deployed to an embedded moto
server, every event delivered to the real handlers (S3 -> thumbnailer -> table, renditions,
SNS -> SQS -> webhook + audit), DLQ and redrive, the reprocess workflow."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from urllib.parse import unquote_plus

import pytest
from PIL import Image

from pipeline_cli.__main__ import main as pipeline_command
from pipeline_cli.commands.redrive import redrive
from pipeline_cli.imagefactory import make_jpeg, make_png
from pipeline_cli.twin.deploy import DeployError, verify
from pipeline_cli.twin.session import LocalPipeline, local_pipeline
from pipeline_cli.webhook_receiver import WebhookServer

pytestmark = pytest.mark.slow

SIZES = (1024, 512, 128)


@pytest.fixture
def receiver() -> Iterator[WebhookServer]:
    with WebhookServer(secret="") as server:
        yield server


@pytest.fixture
def pipeline(receiver: WebhookServer) -> Iterator[LocalPipeline]:
    parameters = {"WebhookUrl": receiver.url, "WebhookMaxReceiveCount": "3", "WebhookRetryBaseSeconds": "0"}
    with local_pipeline(parameters) as deployed:
        secrets = deployed.endpoint.client("secretsmanager")
        receiver.secret = secrets.get_secret_value(SecretId=deployed.output("WebhookSigningSecretArn"))["SecretString"]
        yield deployed


def _items_by_key(pipeline: LocalPipeline) -> dict[str, dict]:
    return {item["key"]: item for item in pipeline.items()}


def test_every_resource_of_the_template_exists_after_deploy(pipeline: LocalPipeline) -> None:
    template = pipeline.stack.template["Resources"]
    inactive = set(template) - pipeline.stack.active
    assert "AlarmEmailSubscription" in inactive  # AlarmEmail is empty
    assert all("Condition" in template[logical_id] for logical_id in inactive)
    assert pipeline.stack.active - set(pipeline.stack.physical_ids) == set()
    notification = pipeline.s3.get_bucket_notification_configuration(Bucket=pipeline.output("IngestBucketName"))
    (trigger,) = notification["LambdaFunctionConfigurations"]
    # The alias: a published version, what SnapStart restores.
    function = pipeline.stack.functions["ThumbnailFunction"]
    assert trigger["LambdaFunctionArn"] == f"{function.arn}:live"
    alias = pipeline.stack.endpoint.client("lambda").get_alias(FunctionName=function.name, Name="live")
    assert alias["FunctionVersion"] != "$LATEST"
    assert trigger["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "uploads/"}]
    versioning = pipeline.s3.get_bucket_versioning(Bucket=pipeline.output("IngestBucketName"))
    assert versioning["Status"] == "Enabled"
    topic = pipeline.output("ImageEventsTopicArn")
    subscriptions = pipeline.endpoint.client("sns").list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert len(subscriptions) == 2
    ttl = pipeline.dynamodb.describe_time_to_live(TableName=pipeline.output("IdempotencyTableName"))
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"


def test_images_in_items_renditions_and_events_out(pipeline: LocalPipeline, receiver: WebhookServer) -> None:
    uploads = {
        "uploads/it/rotated photo.jpg": make_jpeg(3000, 2000, orientation=6),
        "uploads/it/ünïcödé.png": make_png(800, 600, mode="RGBA"),
        "uploads/it/progressive.jpg": make_jpeg(2000, 1500, progressive=True),
    }
    for key, body in uploads.items():
        pipeline.upload(key, body)
    pipeline.router.drain()

    items = _items_by_key(pipeline)
    assert set(items) == set(uploads)
    for key, item in items.items():
        assert item["status"] == "SUCCEEDED", (key, item.get("error"))
        assert [rendition["size"] for rendition in item["renditions"]] == list(SIZES)
        for rendition in item["renditions"]:
            with Image.open(io.BytesIO(pipeline.read("RenditionsBucketName", rendition["key"]))) as image:
                assert (image.width, image.height) == (rendition["width"], rendition["height"])
                # fit within the size, never upscaled
                assert max(image.size) == min(rendition["size"], max(item["width"], item["height"]))
    # orientation 6 stores the photo on its side; the rendition is upright (portrait)
    rotated = items["uploads/it/rotated photo.jpg"]["renditions"][0]
    assert (rotated["width"], rotated["height"]) == (1024, 683)

    archived = pipeline.archived_events()
    assert sorted(event["image"]["key"] for event in archived) == sorted(uploads)
    assert {event["event_type"] for event in archived} == {"ImageProcessed"}
    delivered = {request.event_id for request in receiver.requests if request.signature_error is None}
    assert delivered == {event["event_id"] for event in archived}
    assert all(stats.in_dlq == 0 for stats in pipeline.router.queue_stats.values())


def test_a_poison_image_is_failed_with_a_reason_and_its_event_reaches_both_consumers(
    pipeline: LocalPipeline, receiver: WebhookServer
) -> None:
    pipeline.upload("uploads/it/poison.jpg", make_jpeg(1200, 900)[:5000])
    pipeline.upload("uploads/it/fine.jpg", make_jpeg(1200, 900))
    pipeline.router.drain()

    items = _items_by_key(pipeline)
    assert items["uploads/it/poison.jpg"]["status"] == "FAILED"
    assert items["uploads/it/poison.jpg"]["error"]["reason"] == "truncated"
    assert items["uploads/it/fine.jpg"]["status"] == "SUCCEEDED"
    failed_events = [event for event in pipeline.archived_events() if event["event_type"] == "ImageFailed"]
    assert [event["image"]["key"] for event in failed_events] == ["uploads/it/poison.jpg"]
    assert [request.event_id for request in receiver.requests if request.status == 200].count(
        failed_events[0]["event_id"]
    ) == 1
    # a bad image is data, not an error: no retries, nothing on the failure queue
    thumbnail_calls = [call for call in pipeline.functions.invocations if call.function == "ThumbnailFunction"]
    assert len(thumbnail_calls) == 2
    assert pipeline.queue_depth("ThumbnailFailuresQueueUrl") == 0


def test_a_failing_webhook_fills_its_dlq_and_the_redrive_delivers_each_event_once(
    pipeline: LocalPipeline, receiver: WebhookServer
) -> None:
    receiver.fail_event_types.add("ImageProcessed")
    pipeline.upload("uploads/it/a.jpg", make_jpeg(800, 600))
    pipeline.upload("uploads/it/b.jpg", make_jpeg(600, 800))
    pipeline.router.drain()

    assert pipeline.queue_depth("WebhookDeadLetterQueueUrl") == 2
    webhook_stats = next(s for s in pipeline.router.queue_stats.values() if s.source.function == "WebhookFunction")
    assert webhook_stats.failed == 2 * 3  # WebhookMaxReceiveCount receives each, then the DLQ
    assert webhook_stats.in_dlq == 2
    assert len(pipeline.archived_events()) == 2  # the audit consumer is unaffected

    receiver.fail_event_types.clear()
    report = redrive(pipeline.sqs, pipeline.output("WebhookDeadLetterQueueUrl"), method="loop")
    assert report.moved == 2
    pipeline.router.drain()

    assert pipeline.queue_depth("WebhookDeadLetterQueueUrl") == 0
    assert pipeline.queue_depth("WebhookQueueUrl") == 0
    accepted = [request.event_id for request in receiver.requests if request.status == 200]
    assert sorted(accepted) == sorted(event["event_id"] for event in pipeline.archived_events())


def test_an_aws_failure_is_retried_then_the_event_goes_to_the_on_failure_queue(pipeline: LocalPipeline) -> None:
    # The renditions bucket disappears: every attempt fails with a transient (AWS) error.
    pipeline.s3.delete_bucket(Bucket=pipeline.output("RenditionsBucketName"))
    pipeline.upload("uploads/it/unlucky.jpg", make_jpeg(640, 480))
    pipeline.router.drain()

    attempts = [call for call in pipeline.functions.invocations if call.function == "ThumbnailFunction"]
    assert [call.error_type for call in attempts] == ["TransientError"] * 3  # 1 + MaximumRetryAttempts (2)
    messages = pipeline.sqs.receive_message(QueueUrl=pipeline.output("ThumbnailFailuresQueueUrl"))["Messages"]
    (record,) = [json.loads(message["Body"]) for message in messages]
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert unquote_plus(record["requestPayload"]["Records"][0]["s3"]["object"]["key"]) == "uploads/it/unlucky.jpg"
    assert record["responsePayload"]["errorType"] == "TransientError"
    # the item is left PROCESSING, never SUCCEEDED without renditions (the cleanup job times it out)
    (item,) = pipeline.items()
    assert item["status"] == "PROCESSING"


def test_verification_asks_the_service_not_the_stack_listing(pipeline: LocalPipeline) -> None:
    # moto once reported a state machine its backend had failed to create: presence in the
    # stack's resource list proves nothing, so every resource is looked up where it lives.
    pipeline.sqs.delete_queue(QueueUrl=pipeline.output("AuditDeadLetterQueueUrl"))
    resources = {logical_id: pipeline.stack.template["Resources"][logical_id] for logical_id in pipeline.stack.active}

    with pytest.raises(DeployError, match=r"AuditDeadLetterQueue \(AWS::SQS::Queue\): reported as"):
        verify(pipeline.stack, resources)


def test_an_upload_lost_before_its_claim_is_rendered_after_replay(
    pipeline: LocalPipeline, receiver: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB unavailable through every asynchronous attempt: no item exists, so neither the
    cleanup nor the reprocess workflow can see the upload; its destination record is all there
    is, and `pipeline replay` renders it once the table is back."""
    dynamodb, table = pipeline.dynamodb, pipeline.output("ImagesTableName")
    schema = dynamodb.describe_table(TableName=table)["Table"]
    dynamodb.update_table(TableName=table, DeletionProtectionEnabled=False)
    dynamodb.delete_table(TableName=table)  # the outage
    key = pipeline.upload("uploads/it/lost in the outage.jpg", make_jpeg(800, 600))
    pipeline.router.drain()

    attempts = [call for call in pipeline.functions.invocations if call.function == "ThumbnailFunction"]
    assert [call.error_type for call in attempts] == ["TransientError"] * 3
    assert pipeline.queue_depth("ThumbnailFailuresQueueUrl") == 1
    dynamodb.create_table(  # the table is back (restored), still without an item for the upload
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=schema["AttributeDefinitions"],
        KeySchema=schema["KeySchema"],
        GlobalSecondaryIndexes=[
            {name: index[name] for name in ("IndexName", "KeySchema", "Projection")}
            for index in schema["GlobalSecondaryIndexes"]
        ],
    )
    assert pipeline.items() == []

    for name, value in pipeline.endpoint.environment.items():
        monkeypatch.setenv(name, value)
    assert pipeline_command(["replay", "--queue", pipeline.output("ThumbnailFailuresQueueUrl")]) == 0
    pipeline.router.drain()

    [item] = pipeline.items()
    assert (item["key"], item["status"], len(item["renditions"])) == (key, "SUCCEEDED", len(SIZES))
    assert pipeline.queue_depth("ThumbnailFailuresQueueUrl") == 0
    [archived] = pipeline.archived_events()
    assert (archived["event_type"], archived["image"]["key"]) == ("ImageProcessed", key)
    assert [r.event_id for r in receiver.requests if r.status == 200] == [archived["event_id"]]


def test_with_snapstart_the_runner_restores_a_warmed_thumbnailer_that_still_processes_uploads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botocore.loaders import JSONFileLoader

    with local_pipeline({"EnableSnapStart": "true"}) as snapstarted:
        assert snapstarted.stack.functions["ThumbnailFunction"].snap_start
        module = snapstarted.functions.module("ThumbnailFunction")  # the cold start: import, then the hooks
        # The thumbnailer's own loader (the other functions' clients read their models as usual).
        thumbnailer_files = module.clients.session._session.get_component("data_loader").file_loader
        read: list[str] = []
        original = JSONFileLoader.load_file

        def recording(self: JSONFileLoader, file_path: str) -> object:
            if self is thumbnailer_files:
                read.append(file_path)
            return original(self, file_path)

        monkeypatch.setattr(JSONFileLoader, "load_file", recording)
        snapstarted.upload("uploads/it/restored.jpg", make_jpeg(1200, 900))
        snapstarted.router.drain()
        (item,) = snapstarted.items()
        assert item["status"] == "SUCCEEDED", item.get("error")
        assert [rendition["size"] for rendition in item["renditions"]] == list(SIZES)
        assert read == []  # parsed before the snapshot: the restored clients read nothing from disk
        assert {"s3", "dynamodb", "sns"} <= set(vars(module.clients))  # ... and were created after the restore
