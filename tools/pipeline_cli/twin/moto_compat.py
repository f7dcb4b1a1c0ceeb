"""Every place the twin reaches into moto's internals, and why: the one module to read when moto changes.

moto is the AWS account here, but it leaves gaps the pipeline meets. Each function below closes
one, and tests/unit/test_moto_compat.py holds, per gap, a test that moto still behaves the way
the patch assumes (it fails when a moto upgrade closes the gap or moves the internals, so the
patch can go) and a test of the patched behaviour.

- Lambda runs function code only in Docker: `route_lambda_invocations` hands an Invoke (from
  boto3, moto's Step Functions executor, an in-process server) to a Python handler instead.
- S3 notifications call Lambda synchronously inside PutObject and swallow every error:
  `route_s3_notifications` hands the event to the twin, which invokes asynchronously as S3 does.
- An SQS event source mapping makes moto invoke the function inside SendMessage, whole batches,
  ignoring partial batch responses: `detach_sqs_event_sources` leaves delivery to the twin's poller.
- Step Functions' `states:startExecution` integration lost the mapping of its parameters and
  result onto the API's member names in moto 5's executor: `step_functions_like_aws` restores it.
- CloudFormation: the twin creates the resource types moto's CloudFormation skips and needs
  Ref/GetAtt/Conditions to resolve against them: `CloudFormationStack`.
- Request handling in the same process: `skip_answered_requests` lets a fault-injection hook
  answer a request instead of moto; `atomic_requests` makes each request atomic, as AWS's are.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any
from unittest import mock

import botocore.session

from pipeline_cli.twin.runtime import Handler, Invocation, LambdaContext, run_handler

DEFAULT_ACCOUNT_ID = "123456789012"


class UnroutedFunctionError(LookupError):
    """An invoked function has no handler in this process (moto would only have echoed)."""


# -- Lambda -------------------------------------------------------------------------------------


@contextmanager
def route_lambda_invocations(handlers: Mapping[str, Handler]) -> Iterator[list[Invocation]]:
    """While active, moto runs an invoked function by calling `handlers[name]` with the event and
    a Lambda-like context; yields the invocations. An exception becomes Lambda's error payload and
    `FunctionError`, so Step Functions names the error after the exception class (Retry/Catch on
    "TransientError" match) for both Task styles, `arn:aws:states:::lambda:invoke` and a bare ARN.
    """
    from moto.awslambda.models import LambdaFunction

    invocations: list[Invocation] = []
    lock = threading.Lock()

    def invoke(function: Any, event: Any = None) -> tuple[str, bool, str]:
        name = function.function_name
        if name not in handlers:
            raise UnroutedFunctionError(f"no in-process handler for Lambda function {name!r}")
        payload = json.loads(event) if isinstance(event, str | bytes) else (event or {})
        context = LambdaContext(
            function_name=name, memory_limit_in_mb=int(function.memory_size), timeout_seconds=float(function.timeout)
        )
        invocation = run_handler(handlers[name], payload, context, function=name, trigger="lambda:Invoke")
        with lock:
            invocations.append(invocation)
        # (response body, errored, logs) is what moto's Docker runner returns
        body = invocation.error if invocation.failed else invocation.result
        return json.dumps(body, default=str), invocation.failed, ""

    with mock.patch.object(LambdaFunction, "_invoke_lambda", invoke):
        yield invocations


# -- S3 notifications -------------------------------------------------------------------------

S3NotificationTarget = Callable[[str, Any], None]  # (function ARN, event)


@contextmanager
def route_s3_notifications(deliver: S3NotificationTarget) -> Iterator[None]:
    """While active, an S3 notification to a Lambda function goes to `deliver(function_arn, event)`
    (called inside PutObject, with the event moto built from the bucket's configuration)."""

    def notify(account_id: str, event_body: Any, fn_arn: str, region_name: str) -> None:
        deliver(fn_arn, event_body)

    with mock.patch("moto.s3.notifications._invoke_awslambda", notify):
        yield


# -- SQS event source mappings ----------------------------------------------------------------


def detach_sqs_event_sources(queue_arn: str) -> None:
    """Stop moto invoking functions from inside SendMessage for this queue (the twin polls it)."""
    from moto.sqs.models import sqs_backends

    _, _, _, region, account, name = queue_arn.split(":")
    sqs_backends[account][region].queues[name].lambda_event_source_mappings.clear()


# -- Step Functions ---------------------------------------------------------------------------


@cache
def _operation(service: str, action: str) -> Any:
    name = action[:1].upper() + action[1:]  # the ASL's "startExecution" is the API's "StartExecution"
    return botocore.session.get_session().get_service_model(service).operation_model(name)


@contextmanager
def step_functions_like_aws() -> Iterator[None]:
    """`arn:aws:states:::states:startExecution` takes `StateMachineArn`, `Input`, `Name` and returns
    `ExecutionArn`, `StartDate`, as on AWS; the API spells them `stateMachineArn`, ... Without the
    mapping moto's executor fails the state with States.Runtime ('StateMachineArn'). While active,
    both mappings are done again, by the executor's own helpers."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
        StateTaskServiceSfn,
    )

    normalise = StateTaskServiceSfn._normalise_parameters
    normalise_result = StateTaskServiceSfn._normalise_response

    def normalise_to_api_members(
        self: Any,
        parameters: dict[str, Any],
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        normalise(self, parameters, boto_service_name, service_action_name)  # Input to a JSON string
        if service_action_name is None:  # the request, not a sync-pattern poll of describe_execution
            self._to_boto_request(parameters, _operation("stepfunctions", self.resource.api_action).input_shape)

    def normalise_to_sfn_members(
        self: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
    ) -> None:
        normalise_result(self, response, boto_service_name, service_action_name)
        if service_action_name is None:
            self._from_boto_response(response, _operation("stepfunctions", self.resource.api_action).output_shape)

    with (
        mock.patch.object(StateTaskServiceSfn, "_normalise_parameters", normalise_to_api_members),
        mock.patch.object(StateTaskServiceSfn, "_normalise_response", normalise_to_sfn_members),
    ):
        yield


# -- CloudFormation ---------------------------------------------------------------------------


class _TwinResource:
    """Stands in moto's resource map for a resource the twin created, so Ref/GetAtt resolve."""

    def __init__(self, physical_id: str, attributes: Mapping[str, str]) -> None:
        self.physical_resource_id = physical_id
        self._attributes = dict(attributes)

    def get_cfn_attribute(self, name: str) -> str:
        if name not in self._attributes:
            raise KeyError(f"attribute {name} of {self.physical_resource_id} is not known to the local twin")
        return self._attributes[name]


class CloudFormationStack:
    """A stack moto's CloudFormation created: its intrinsics, Conditions and resource map.

    moto resolves `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::If` ... against the resources it made;
    `register` adds the ones the twin made, so later properties that name them resolve too.
    """

    def __init__(self, name: str, account_id: str, region: str) -> None:
        from moto.cloudformation.models import cloudformation_backends

        self._resource_map = cloudformation_backends[account_id][region].get_stack(name).resource_map

    def resolve(self, value: Any) -> Any:
        from moto.cloudformation.parsing import clean_json

        return clean_json(copy.deepcopy(value), self._resource_map)

    def condition_holds(self, condition: str) -> bool:
        return bool(self._resource_map.lazy_condition_map[condition])

    def register(self, logical_id: str, physical_id: str, attributes: Mapping[str, str]) -> None:
        self._resource_map._parsed_resources[logical_id] = _TwinResource(physical_id, attributes)


# -- requests ---------------------------------------------------------------------------------


@contextmanager
def skip_answered_requests(answered: Callable[[Any], bool]) -> Iterator[None]:
    """While active, moto leaves alone the requests for which `answered(request)` is true.

    botocore calls every `before-send` handler, moto's too: a hook that answered a request with
    an error response (fault injection) must keep moto from also performing it.
    """
    from moto.core.botocore_stubber import BotocoreStubber

    moto_handles = BotocoreStubber.__call__

    def moto_skips_answered(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        return None if answered(request) else moto_handles(self, event_name, request, **kwargs)

    with mock.patch.object(BotocoreStubber, "__call__", moto_skips_answered):
        yield


@contextmanager
def atomic_requests() -> Iterator[None]:
    """Each request is atomic, as the services guarantee (a DynamoDB conditional write checks and
    writes as one step); moto's in-process backends are not, so its requests are serialized.
    Requests from different threads still interleave with each other freely."""
    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.Lock()
    process_request = BotocoreStubber.process_request

    def atomic(self: Any, request: Any) -> Any:
        with lock:
            return process_request(self, request)

    with mock.patch.object(BotocoreStubber, "process_request", atomic):
        yield
