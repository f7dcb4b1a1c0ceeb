"""Where moto's Step Functions executor departs from AWS in a way this project's workflows meet.

moto 5's port of LocalStack's executor dropped the step that maps a service integration's
parameters and result onto the API's member names. Step Functions' own integration
(`arn:aws:states:::states:startExecution`) takes `StateMachineArn`, `Input`, `Name` and returns
`ExecutionArn`, `StartDate`, as on AWS, but the Step Functions API spells them `stateMachineArn`,
..., `executionArn`: without the mapping the executor fails the state with States.Runtime
('StateMachineArn'). While `step_functions_like_aws()` is active, both mappings are done again,
by the executor's own helpers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any
from unittest import mock

import botocore.session


@cache
def _operation(service: str, action: str) -> Any:
    name = action[:1].upper() + action[1:]  # the ASL's "startExecution" is the API's "StartExecution"
    return botocore.session.get_session().get_service_model(service).operation_model(name)


@contextmanager
def step_functions_like_aws() -> Iterator[None]:
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
