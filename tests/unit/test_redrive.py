"""`pipeline redrive`: DLQ -> source queue, by move task where it exists, else receive/send/delete."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.stub import Stubber

from image_pipeline.clients import AwsClients
from pipeline_cli.__main__ import main as pipeline
from pipeline_cli.commands.redrive import (
    LOOP,
    MOVE_TASK,
    MoveCounts,
    RedriveError,
    describe,
    find_source_queue,
    redrive,
)

Queues = dict[str, str]


def make_queue(aws: AwsClients, name: str, dead_letter_arn: str | None = None, **attributes: str) -> tuple[str, str]:
    if dead_letter_arn:
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": 1})
    url = aws.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


@pytest.fixture
def queues(aws: AwsClients) -> Queues:
    dlq_url, dlq_arn = make_queue(aws, "orders-dlq")
    source_url, source_arn = make_queue(aws, "orders", dlq_arn)
    return {"dlq_url": dlq_url, "dlq_arn": dlq_arn, "source_url": source_url, "source_arn": source_arn}


def dead_letter(aws: AwsClients, queues: Queues, count: int) -> list[str]:
    """Put `count` messages into the DLQ the way SQS does: fail them past maxReceiveCount."""
    bodies = [json.dumps({"event_id": f"e{n}", "note": "ünïcode ✓"}) for n in range(count)]
    for index, body in enumerate(bodies):
        aws.sqs.send_message(
            QueueUrl=queues["source_url"],
            MessageBody=body,
            MessageAttributes={
                "event_type": {"DataType": "String", "StringValue": "ImageFailed"},
                "attempt": {"DataType": "Number", "StringValue": str(index)},
                "blob": {"DataType": "Binary", "BinaryValue": bytes([index, 255])},
            },
        )
    for _ in range(count + 2):
        aws.sqs.receive_message(QueueUrl=queues["source_url"], MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert depth(aws, queues["dlq_url"]) == count
    return bodies


def depth(aws: AwsClients, url: str) -> int:
    attributes = aws.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def drain(aws: AwsClients, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while batch := aws.sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    ).get("Messages", []):
        messages += batch
        for message in batch:
            aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return messages


def test_the_loop_moves_every_message_with_its_body_and_attributes(aws: AwsClients, queues: Queues) -> None:
    bodies = dead_letter(aws, queues, 23)

    report = redrive(aws.sqs, queues["dlq_url"])

    assert (report.method, report.moved, report.loop) == (LOOP, 23, MoveCounts(moved=23))
    assert report.source_queue_url == queues["source_url"]
    assert depth(aws, queues["dlq_url"]) == 0
    moved = drain(aws, queues["source_url"])
    assert sorted(m["Body"] for m in moved) == sorted(bodies)
    for message in moved:
        index = int(message["MessageAttributes"]["attempt"]["StringValue"])
        assert message["MessageAttributes"] == {
            "event_type": {"DataType": "String", "StringValue": "ImageFailed"},
            "attempt": {"DataType": "Number", "StringValue": str(index)},
            "blob": {"DataType": "Binary", "BinaryValue": bytes([index, 255])},
        }
        assert message["Attributes"]["ApproximateReceiveCount"] == "1"  # a fresh start in the source queue


def test_a_dry_run_counts_and_changes_nothing(
    aws: AwsClients, queues: Queues, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letter(aws, queues, 3)

    assert pipeline(["redrive", "--dlq", queues["dlq_arn"], "--dry-run"]) == 0

    output = capsys.readouterr().out
    assert "(3 messages visible)" in output
    assert f"source queue:      {queues['source_url']}" in output
    assert "would move about 3 messages" in output
    assert depth(aws, queues["source_url"]) == 0
    attributes = aws.sqs.get_queue_attributes(QueueUrl=queues["dlq_url"], AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "3",
        "0",
    )


def test_max_moves_at_most_n(aws: AwsClients, queues: Queues, capsys: pytest.CaptureFixture[str]) -> None:
    dead_letter(aws, queues, 15)

    assert pipeline(["redrive", "--dlq", "orders-dlq", "--max", "12"]) == 0

    assert "moved 12 messages with receive/send/delete" in capsys.readouterr().out
    assert depth(aws, queues["source_url"]) == 12
    assert depth(aws, queues["dlq_url"]) == 3


def test_an_interrupted_redrive_loses_nothing(aws: AwsClients, queues: Queues, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = dead_letter(aws, queues, 4)

    def crash(**_: Any) -> None:
        raise KeyboardInterrupt  # killed between the send and the delete

    monkeypatch.setattr(aws.sqs, "delete_message_batch", crash)
    with pytest.raises(KeyboardInterrupt):
        redrive(aws.sqs, queues["dlq_url"])

    # Sent before the crash, and still in the DLQ (invisible until the receive's visibility timeout ends).
    assert sorted(m["Body"] for m in drain(aws, queues["source_url"])) == sorted(bodies)
    attributes = aws.sqs.get_queue_attributes(QueueUrl=queues["dlq_url"], AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "4"


def test_sends_the_source_rejects_stay_in_the_dlq_and_fail_the_command(
    aws: AwsClients, queues: Queues, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letter(aws, queues, 2)
    small_url, _ = make_queue(aws, "small", MaximumMessageSize="1024")
    aws.sqs.send_message(QueueUrl=queues["dlq_url"], MessageBody="x" * 2000)  # too big for "small"

    assert pipeline(["redrive", "--dlq", "orders-dlq", "--to", small_url]) == 1

    output = capsys.readouterr().out
    assert "moved 2 messages" in output
    assert "1 messages were rejected by the destination and stay in the DLQ (first: " in output
    assert "shorter than 1024 bytes" in output
    assert depth(aws, small_url) == 2
    assert depth(aws, queues["dlq_url"]) == 1


def test_the_source_comes_from_the_redrive_allow_policy_when_it_names_one_queue(aws: AwsClients) -> None:
    # moto ignores RedriveAllowPolicy, so SQS's answers are stubbed here.
    other_url, other_arn = make_queue(aws, "other")
    policy = json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [other_arn]})
    stubber = Stubber(aws.sqs)
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"RedriveAllowPolicy": policy}},
        {"QueueUrl": "https://dlq.example/allow-dlq", "AttributeNames": ["All"]},
    )
    stubber.add_response(
        "get_queue_url", {"QueueUrl": other_url}, {"QueueName": "other", "QueueOwnerAWSAccountId": "123456789012"}
    )

    with stubber:
        assert find_source_queue(aws.sqs, "https://dlq.example/allow-dlq") == other_url


def test_an_ambiguous_or_orphan_dlq_needs_to(aws: AwsClients, capsys: pytest.CaptureFixture[str]) -> None:
    _, shared_arn = make_queue(aws, "shared-dlq")
    make_queue(aws, "first", shared_arn)
    make_queue(aws, "second", shared_arn)
    make_queue(aws, "orphan-dlq")

    assert pipeline(["redrive", "--dlq", "shared-dlq"]) == 1
    assert "several queues dead-letter into" in capsys.readouterr().err
    with pytest.raises(RedriveError, match="pass --to"):
        redrive(aws.sqs, "orphan-dlq")
    with pytest.raises(RedriveError, match="not found"):
        redrive(aws.sqs, "no-such-queue")
    with pytest.raises(SystemExit):
        pipeline(["redrive", "--dlq", "shared-dlq", "--max", "0"])


def test_the_move_task_is_used_where_the_api_exists(aws: AwsClients, queues: Queues) -> None:
    sqs = aws.sqs
    stubber = Stubber(sqs)
    dlq, source = {"QueueUrl": queues["dlq_url"]}, {"QueueUrl": queues["source_url"]}
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"ApproximateNumberOfMessages": "7"}},
        dlq | {"AttributeNames": ["ApproximateNumberOfMessages"]},
    )
    stubber.add_response(
        "get_queue_attributes", {"Attributes": {"QueueArn": queues["dlq_arn"]}}, dlq | {"AttributeNames": ["QueueArn"]}
    )
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": queues["source_arn"]}},
        source | {"AttributeNames": ["QueueArn"]},
    )
    stubber.add_response(
        "start_message_move_task",
        {"TaskHandle": "task-1"},
        {"SourceArn": queues["dlq_arn"], "DestinationArn": queues["source_arn"]},
    )
    for status, moved in (("RUNNING", 3), ("COMPLETED", 7)):
        stubber.add_response(
            "list_message_move_tasks",
            {
                "Results": [
                    {"Status": status, "ApproximateNumberOfMessagesMoved": moved, "SourceArn": queues["dlq_arn"]}
                ]
            },
            {"SourceArn": queues["dlq_arn"], "MaxResults": 1},
        )
    sleeps: list[float] = []

    with stubber:
        report = redrive(sqs, queues["dlq_url"], queues["source_url"], sleep=sleeps.append)

    stubber.assert_no_pending_responses()
    assert (report.method, report.moved, report.task_handle, report.visible_before) == (MOVE_TASK, 7, "task-1", 7)
    assert sleeps == [2.0]


def test_a_failed_move_task_is_an_error_not_a_fallback(aws: AwsClients, queues: Queues) -> None:
    stubber = Stubber(aws.sqs)
    stubber.add_response("get_queue_attributes", {"Attributes": {"ApproximateNumberOfMessages": "1"}})
    stubber.add_response("get_queue_attributes", {"Attributes": {"QueueArn": queues["dlq_arn"]}})
    stubber.add_response("get_queue_attributes", {"Attributes": {"QueueArn": queues["source_arn"]}})
    stubber.add_client_error("start_message_move_task", service_error_code="AccessDenied", http_status_code=403)

    with stubber, pytest.raises(Exception, match="AccessDenied"):
        redrive(aws.sqs, queues["dlq_url"], queues["source_url"])


def test_where_the_move_task_api_is_missing_auto_falls_back_and_move_task_refuses(
    aws: AwsClients, queues: Queues
) -> None:
    dead_letter(aws, queues, 1)

    with pytest.raises(NotImplementedError):  # moto has no StartMessageMoveTask
        redrive(aws.sqs, queues["dlq_url"], method="move-task")
    assert redrive(aws.sqs, queues["dlq_url"], method="auto").method == LOOP
    assert depth(aws, queues["source_url"]) == 1


def test_without_waiting_the_move_task_is_reported_as_started(aws: AwsClients, queues: Queues) -> None:
    stubber = Stubber(aws.sqs)
    stubber.add_response("get_queue_attributes", {"Attributes": {"ApproximateNumberOfMessages": "4"}})
    stubber.add_response("get_queue_attributes", {"Attributes": {"QueueArn": queues["dlq_arn"]}})
    stubber.add_response("get_queue_attributes", {"Attributes": {"QueueArn": queues["source_arn"]}})
    stubber.add_response("start_message_move_task", {"TaskHandle": "task-2"})

    with stubber:
        report = redrive(aws.sqs, queues["dlq_url"], queues["source_url"], wait=False)

    stubber.assert_no_pending_responses()
    assert "started move task task-2" in describe(report)
    assert "moved" not in describe(report)
