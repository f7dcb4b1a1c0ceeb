"""Synchronous Lambda invocations inside moto, handed to Python handlers in this process.

moto runs function code only in Docker. While `route_lambda_invocations` is active, an Invoke
of a function named in `handlers` (from boto3, from moto's Step Functions executor, under
`mock_aws` or an in-process moto server) calls that handler with the event and a Lambda-like
context. A raised exception becomes what Lambda returns for an unhandled error: the
`FunctionError` flag and `{"errorType", "errorMessage", "stackTrace"}`, so Step Functions
names the error after the exception class (Retry/Catch on "TransientError" match). It does so
for both Task styles, `arn:aws:states:::lambda:invoke` and a bare function ARN, in moto's
executor as on AWS; only the integration names Lambda's own failures `Lambda.<Exception>`
(moto calls them "Exception" behind a bare ARN), so the project's ASL uses the integration.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from pipeline_cli.lambda_runtime import LambdaContext, lambda_error_payload

Handler = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Invocation:
    function: str
    event: Any
    result: Any
    error: dict[str, Any] | None  # Lambda's error payload, None when the handler returned
    duration_ms: float


class UnroutedFunctionError(LookupError):
    """An invoked function has no handler in this process (moto would only have echoed)."""


@contextmanager
def route_lambda_invocations(handlers: Mapping[str, Handler]) -> Iterator[list[Invocation]]:
    """Patch moto's function execution for the duration of the block; yields the invocations."""
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
        started = time.perf_counter()
        error: dict[str, Any] | None = None
        result: Any = None
        try:
            result = handlers[name](payload, context)
        except Exception as exception:  # the Lambda runtime's boundary
            error = lambda_error_payload(exception)
        with lock:
            invocations.append(Invocation(name, payload, result, error, (time.perf_counter() - started) * 1000))
        # (response body, errored, logs) is what moto's Docker runner returns
        return json.dumps(error if error is not None else result, default=str), error is not None, ""

    with mock.patch.object(LambdaFunction, "_invoke_lambda", invoke):
        yield invocations
