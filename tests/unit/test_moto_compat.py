"""Every patch in pipeline_cli.twin.moto_compat: that moto still needs it, and that it works.

A `test_moto_still_...` test pins the moto behaviour a patch exists for; when an upgrade of moto
changes that behaviour (or moves the internals a patch reaches), it fails, and the patch can be
dropped or moved. The other tests check the behaviour the twin relies on, with the patch active.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
import yaml
from moto import mock_aws

from image_pipeline.errors import TransientError
from pipeline_cli.twin import moto_compat
from pipeline_cli.twin.moto_compat import route_lambda_invocations
from tests.statemachine import create_function, create_role


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        role = create_role(boto3.client("iam"), "fn")
        functions = boto3.client("lambda")
        for name in ("Echo", "Flaky"):
            create_function(functions, name, role, timeout=3)
        yield {"lambda": functions, "sfn": boto3.client("stepfunctions"), "role": role}


def test_moto_still_runs_function_code_only_in_docker(aws: dict[str, Any]) -> None:
    response = aws["lambda"].invoke(FunctionName="Echo", Payload=b"{}")
    assert response["FunctionError"] == "Handled"
    assert b"docker" in response["Payload"].read()


def test_an_invoke_runs_the_python_handler_with_a_lambda_context(aws: dict[str, Any]) -> None:
    def echo(event: Any, context: Any) -> dict[str, Any]:
        return {"got": event, "function": context.function_name, "remaining_ms": context.get_remaining_time_in_millis()}

    with route_lambda_invocations({"Echo": echo, "Flaky": echo}) as invocations:
        response = aws["lambda"].invoke(FunctionName="Echo", Payload=json.dumps({"a": 1}))
    body = json.loads(response["Payload"].read())
    assert body["got"] == {"a": 1}
    assert body["function"] == "Echo"
    assert 0 < body["remaining_ms"] <= 3000  # the function's configured timeout (3 s default)
    assert "FunctionError" not in response
    assert [(call.function, call.error) for call in invocations] == [("Echo", None)]


def test_an_exception_becomes_lambdas_error_payload(aws: dict[str, Any]) -> None:
    def broken(event: Any, context: Any) -> None:
        raise TransientError("DynamoDB throttled")

    with route_lambda_invocations({"Echo": broken, "Flaky": broken}):
        response = aws["lambda"].invoke(FunctionName="Echo", Payload=b"{}")
    assert response["FunctionError"] == "Handled"
    body = json.loads(response["Payload"].read())
    assert body["errorType"] == "TransientError"
    assert body["errorMessage"] == "DynamoDB throttled"
    assert body["stackTrace"]


def test_a_function_without_a_handler_is_an_error_not_an_echo(aws: dict[str, Any]) -> None:
    with route_lambda_invocations({"Echo": lambda event, context: event}), pytest.raises(Exception, match="Flaky"):
        aws["lambda"].invoke(FunctionName="Flaky", Payload=b"{}")


def task(style: str, arn: str) -> dict[str, Any]:
    """A Task invoking `arn`: through the Lambda service integration, or by the function's ARN."""
    if style == "integration":
        return {
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": arn, "Payload.$": "$"},
            "OutputPath": "$.Payload",
        }
    return {"Resource": arn}


# Both styles name a function error after its errorType, in moto as on AWS; the workflow uses
# the integration, whose Lambda.* service errors are what its Retry lists (moto names a Lambda
# API failure behind a bare function ARN just "Exception").
@pytest.mark.parametrize("style", ["integration", "function-arn"])
def test_step_functions_retries_on_the_handlers_error_type(aws: dict[str, Any], style: str) -> None:
    calls: list[Any] = []

    def flaky(event: Any, context: Any) -> dict[str, Any]:
        calls.append(event)
        if len(calls) == 1:
            raise TransientError("first call fails")
        return {"done": event["n"]}

    arn = aws["lambda"].get_function(FunctionName="Flaky")["Configuration"]["FunctionArn"]
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                **task(style, arn),
                "Retry": [{"ErrorEquals": ["TransientError"], "IntervalSeconds": 1, "MaxAttempts": 2}],
                "End": True,
            }
        },
    }
    machine = aws["sfn"].create_state_machine(name=style, definition=json.dumps(definition), roleArn=aws["role"])
    with route_lambda_invocations({"Flaky": flaky, "Echo": flaky}):
        execution = aws["sfn"].start_execution(
            stateMachineArn=machine["stateMachineArn"], name="run", input=json.dumps({"n": 7})
        )
        for _ in range(200):
            description = aws["sfn"].describe_execution(executionArn=execution["executionArn"])
            if description["status"] != "RUNNING":
                break
            time.sleep(0.05)
    assert description["status"] == "SUCCEEDED"
    assert json.loads(description["output"]) == {"done": 7}
    assert len(calls) == 2


# -- S3 notifications -------------------------------------------------------------------------


def _notify_echo_on_upload(aws: dict[str, Any]) -> str:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="uploads")
    arn = aws["lambda"].get_function(FunctionName="Echo")["Configuration"]["FunctionArn"]
    s3.put_bucket_notification_configuration(
        Bucket="uploads",
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    return arn


def test_moto_still_invokes_a_notified_function_synchronously_inside_put_object(aws: dict[str, Any]) -> None:
    _notify_echo_on_upload(aws)
    with route_lambda_invocations({"Echo": lambda event, context: None}) as invocations:
        boto3.client("s3").put_object(Bucket="uploads", Key="a.jpg", Body=b"x")
        assert [call.event["Records"][0]["s3"]["object"]["key"] for call in invocations] == ["a.jpg"]


def test_s3_notifications_go_to_the_twin_with_the_event_instead(aws: dict[str, Any]) -> None:
    arn = _notify_echo_on_upload(aws)
    delivered: list[tuple[str, Any]] = []
    with (
        route_lambda_invocations({"Echo": lambda event, context: None}) as invocations,
        moto_compat.route_s3_notifications(lambda function_arn, event: delivered.append((function_arn, event))),
    ):
        boto3.client("s3").put_object(Bucket="uploads", Key="b.jpg", Body=b"x")
    assert invocations == []
    [(function_arn, event)] = delivered
    assert function_arn == arn
    assert event["Records"][0]["eventName"].startswith("ObjectCreated")
    assert event["Records"][0]["s3"]["object"]["key"] == "b.jpg"


# -- SQS event source mappings ----------------------------------------------------------------


def _queue_mapped_to_echo(aws: dict[str, Any]) -> tuple[str, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws["lambda"].create_event_source_mapping(EventSourceArn=arn, FunctionName="Echo", BatchSize=10)
    return url, arn


def test_moto_still_invokes_a_mapped_function_inside_send_message(aws: dict[str, Any]) -> None:
    url, _ = _queue_mapped_to_echo(aws)
    with route_lambda_invocations({"Echo": lambda event, context: None}) as invocations:
        boto3.client("sqs").send_message(QueueUrl=url, MessageBody="hello")
        assert [call.event["Records"][0]["body"] for call in invocations] == ["hello"]


def test_a_detached_queue_keeps_its_messages_for_the_twins_poller(aws: dict[str, Any]) -> None:
    url, arn = _queue_mapped_to_echo(aws)
    moto_compat.detach_sqs_event_sources(arn)
    sqs = boto3.client("sqs")
    with route_lambda_invocations({"Echo": lambda event, context: None}) as invocations:
        sqs.send_message(QueueUrl=url, MessageBody="hello")
    assert invocations == []
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["hello"]


# -- Step Functions: the startExecution integration -------------------------------------------


def _run_start_execution(aws: dict[str, Any]) -> dict[str, Any]:
    sfn = aws["sfn"]
    child = sfn.create_state_machine(
        name="child",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn=aws["role"],
    )["stateMachineArn"]
    parent = {
        "StartAt": "Start",
        "States": {
            "Start": {
                "Type": "Task",
                "Resource": "arn:aws:states:::states:startExecution",
                "Parameters": {"StateMachineArn": child, "Input": {"n": 1}},
                "ResultSelector": {"arn.$": "$.ExecutionArn"},
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(name="parent", definition=json.dumps(parent), roleArn=aws["role"])
    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input="{}")
    for _ in range(200):
        description: dict[str, Any] = sfn.describe_execution(executionArn=execution["executionArn"])
        if description["status"] != "RUNNING":
            return description
        time.sleep(0.05)
    raise AssertionError("the execution did not end")


def test_moto_still_passes_the_integrations_member_names_to_the_api_unmapped(aws: dict[str, Any]) -> None:
    description = _run_start_execution(aws)
    assert description["status"] == "FAILED"
    assert "StateMachineArn" in description.get("cause", "") + description.get("error", "")


def test_the_start_execution_integration_takes_and_returns_aws_member_names(aws: dict[str, Any]) -> None:
    with moto_compat.step_functions_like_aws():
        description = _run_start_execution(aws)
    assert description["status"] == "SUCCEEDED", description
    assert ":execution:child:" in json.loads(description["output"])["arn"]


# -- CloudFormation ---------------------------------------------------------------------------

_STACK = {
    "Resources": {
        "Topic": {"Type": "AWS::SNS::Topic"},
        "Queue": {"Type": "AWS::SQS::Queue"},
        "Subscription": {
            "Type": "AWS::SNS::Subscription",
            "Properties": {
                "TopicArn": {"Ref": "Topic"},
                "Protocol": "sqs",
                "Endpoint": {"Fn::GetAtt": ["Queue", "Arn"]},
            },
        },
    }
}


def test_moto_still_skips_resource_types_it_has_no_cloudformation_support_for(aws: dict[str, Any]) -> None:
    boto3.client("cloudformation").create_stack(StackName="s", TemplateBody=json.dumps(_STACK))
    assert boto3.client("sns").list_subscriptions()["Subscriptions"] == []


def test_a_resource_the_twin_creates_resolves_in_the_stacks_intrinsics(aws: dict[str, Any]) -> None:
    boto3.client("cloudformation").create_stack(StackName="s", TemplateBody=json.dumps(_STACK))
    stack = moto_compat.CloudFormationStack("s", "123456789012", "us-east-1")
    stack.register("Subscription", "arn:aws:sns:us-east-1:123456789012:sub", {"Id": "sub"})
    assert stack.resolve({"Ref": "Subscription"}) == "arn:aws:sns:us-east-1:123456789012:sub"
    assert stack.resolve({"Fn::GetAtt": ["Subscription", "Id"]}) == "sub"
    assert stack.resolve({"Ref": "Topic"}).startswith("arn:aws:sns:us-east-1:123456789012:")


# -- requests ---------------------------------------------------------------------------------


def _answer_put_object_with_an_error(s3: Any) -> Any:
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    def hook(request: Any, **_: Any) -> AWSResponse:
        request.headers["x-answered"] = "1"
        body = "<Error><Code>SlowDown</Code><Message>slow</Message></Error>"
        return AWSResponse(request.url, 503, {}, MockRawResponse(body))  # type: ignore[arg-type]

    s3.meta.events.register_first("before-send.s3.PutObject", hook)
    return hook


def test_moto_still_performs_a_request_another_hook_answered(aws: dict[str, Any]) -> None:
    s3 = boto3.client("s3", config=botocore_config())
    s3.create_bucket(Bucket="answered")
    _answer_put_object_with_an_error(s3)
    with pytest.raises(s3.exceptions.ClientError):
        s3.put_object(Bucket="answered", Key="k", Body=b"x")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="answered")["Contents"]] == ["k"]


def test_a_request_answered_by_a_fault_hook_has_no_effect(aws: dict[str, Any]) -> None:
    s3 = boto3.client("s3", config=botocore_config())
    s3.create_bucket(Bucket="answered")
    _answer_put_object_with_an_error(s3)
    with (
        moto_compat.skip_answered_requests(lambda request: bool(request.headers.get("x-answered"))),
        pytest.raises(s3.exceptions.ClientError),
    ):
        s3.put_object(Bucket="answered", Key="k", Body=b"x")
    assert "Contents" not in s3.list_objects_v2(Bucket="answered")


def test_atomic_requests_serialize_moto_without_changing_results(aws: dict[str, Any]) -> None:
    from moto.core.botocore_stubber import BotocoreStubber

    unpatched = BotocoreStubber.process_request
    with moto_compat.atomic_requests():
        assert BotocoreStubber.process_request is not unpatched
        assert aws["lambda"].get_function(FunctionName="Echo")["Configuration"]["FunctionName"] == "Echo"
    assert BotocoreStubber.process_request is unpatched


def botocore_config() -> Any:
    from botocore.config import Config

    return Config(retries={"max_attempts": 1, "mode": "standard"})


# -- account snapshots ------------------------------------------------------------------------


def test_moto_still_keeps_an_sqs_queue_lock_that_cannot_be_copied(aws: dict[str, Any]) -> None:
    from moto.sqs.models import sqs_backends

    boto3.client("sqs").create_queue(QueueName="locked")
    queue = sqs_backends[moto_compat.DEFAULT_ACCOUNT_ID]["us-east-1"].queues["locked"]
    with pytest.raises(TypeError, match="pickle"):
        copy.deepcopy(queue)


def test_each_restore_of_a_snapshot_is_the_account_as_taken() -> None:
    with mock_aws():
        s3, sqs = boto3.client("s3"), boto3.client("sqs")
        s3.create_bucket(Bucket="kept")
        s3.put_object(Bucket="kept", Key="before", Body=b"taken")
        url = sqs.create_queue(QueueName="kept")["QueueUrl"]
        snapshot = moto_compat.AccountSnapshot.take()
    for _ in range(2):
        with mock_aws():
            assert boto3.client("s3").list_buckets()["Buckets"] == []  # mock_aws starts empty
            snapshot.restore()
            s3, sqs = boto3.client("s3"), boto3.client("sqs")
            assert [o["Key"] for o in s3.list_objects_v2(Bucket="kept")["Contents"]] == ["before"]
            assert s3.get_object(Bucket="kept", Key="before")["Body"].read() == b"taken"
            sqs.send_message(QueueUrl=url, MessageBody="after")  # the restored queue works, lock included
            assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["after"]
            s3.put_object(Bucket="kept", Key="after", Body=b"changed")  # not in the next restore


# -- CloudFormation templates -----------------------------------------------------------------

_JSON_TEMPLATE = json.dumps({"Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"DelaySeconds": 5}}}})


def test_moto_still_parses_a_json_template_with_its_yaml_parser() -> None:
    from moto.cloudformation.models import Stack

    with mock.patch("moto.cloudformation.models.yaml.load", wraps=yaml.load) as load:
        assert Stack.parse_template(_JSON_TEMPLATE) == json.loads(_JSON_TEMPLATE)
    assert load.called


def test_a_json_template_is_read_as_json_and_a_yaml_one_still_as_yaml() -> None:
    from moto.cloudformation.models import Stack

    yaml_template = "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties: {DelaySeconds: 5}\n"
    with moto_compat.json_templates_read_as_json():
        with mock.patch("moto.cloudformation.models.yaml.load", wraps=yaml.load) as load:
            assert Stack.parse_template(_JSON_TEMPLATE) == json.loads(_JSON_TEMPLATE)
        assert not load.called
        assert Stack.parse_template(yaml_template) == json.loads(_JSON_TEMPLATE)
