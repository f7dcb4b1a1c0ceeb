"""Lambda invocations inside moto go to in-process handlers, errors shaped as Lambda shapes them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from image_pipeline.errors import TransientError
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
