"""The deployed functions, run in this process the way the Lambda runtime runs them.

Each function's app.py is imported once (a cold start) with the environment the template
gives it, then invoked per event with a fresh context; what it prints (Powertools' JSON logs
and EMF metrics) is kept per invocation, like CloudWatch Logs, instead of flooding the console.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from pipeline_cli.lambda_runtime import Handler, LambdaContext, lambda_error_payload, load_handler
from pipeline_cli.local.deploy import DeployedStack, FunctionSpec


@dataclass
class Invocation:
    function: str  # logical id
    event: Any
    trigger: str  # what delivered it: s3, sqs, schedule, stepfunctions, cli
    result: Any = None
    duration_ms: float = 0.0
    logs: str = ""
    request_id: str = ""
    exception: Exception | None = field(default=None, repr=False)  # what the handler raised

    @property
    def failed(self) -> bool:
        return self.exception is not None

    @property
    def error_type(self) -> str | None:
        return type(self.exception).__name__ if self.exception is not None else None

    @property
    def error_message(self) -> str | None:
        return str(self.exception) if self.exception is not None else None

    @property
    def error_payload(self) -> dict[str, Any]:
        """The payload Lambda returns for an unhandled exception."""
        return lambda_error_payload(self.exception) if self.exception is not None else {}


class _InvocationOutput(io.TextIOBase):
    """sys.stdout while the runner is active: each thread's writes go to its invocation's buffer."""

    def __init__(self, console: TextIO) -> None:
        self.console = console
        self._local = threading.local()

    @contextmanager
    def capture(self) -> Iterator[io.StringIO]:
        buffer = io.StringIO()
        previous = getattr(self._local, "buffer", None)
        self._local.buffer = buffer
        try:
            yield buffer
        finally:
            self._local.buffer = previous

    def write(self, text: str) -> int:
        target = getattr(self._local, "buffer", None) or self.console
        return target.write(text)

    def flush(self) -> None:
        self.console.flush()


class LocalFunctions:
    """Imports and invokes the stack's functions; records every invocation."""

    def __init__(self, stack: DeployedStack, log_dir: Path | None = None) -> None:
        self.stack = stack
        self.invocations: list[Invocation] = []
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._log_dir = log_dir
        self._output: _InvocationOutput | None = None

    @contextmanager
    def active(self) -> Iterator[LocalFunctions]:
        """Route prints of handler code to per-invocation logs while the block runs."""
        console = sys.stdout
        self._output = _InvocationOutput(console)
        sys.stdout = self._output
        try:
            yield self
        finally:
            sys.stdout = console
            self._output = None

    def update_environment(self, function: str, changes: dict[str, str]) -> None:
        """UpdateFunctionConfiguration: new variables, and the next invocation is a cold start."""
        spec = self.stack.functions[function]
        environment = {**spec.environment, **changes}
        self.stack.endpoint.client("lambda").update_function_configuration(
            FunctionName=spec.name, Environment={"Variables": environment}
        )
        self.stack.functions[function] = replace(spec, environment=environment)
        with self._lock:
            self._handlers.pop(function, None)

    def module(self, function: str) -> ModuleType:
        """The function's loaded app module (its `clients` are what a fault-injection test hooks)."""
        handler = self._handler(self.stack.functions[function])
        return sys.modules[handler.__module__]

    def _handler(self, spec: FunctionSpec) -> Handler:
        with self._lock:
            if spec.logical_id not in self._handlers:
                runtime_env = {
                    **spec.environment,
                    "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                    # No X-Ray daemon here; `sam local invoke` does the same.
                    "POWERTOOLS_TRACE_DISABLED": "true",
                }
                with self._captured() as cold_start_output:
                    self._handlers[spec.logical_id] = load_handler(spec.code_dir, spec.handler, runtime_env)
                self._write_log(spec.logical_id, cold_start_output.getvalue())
            return self._handlers[spec.logical_id]

    @contextmanager
    def _captured(self) -> Iterator[io.StringIO]:
        if self._output is None:  # not active: output goes to the console as usual
            yield io.StringIO()
        else:
            with self._output.capture() as buffer:
                yield buffer

    def invoke(self, function: str, event: Any, trigger: str) -> Invocation:
        """Run one invocation; an exception becomes the invocation's error, as in Lambda."""
        spec = (
            self.stack.function_by_name(function)
            if function not in self.stack.functions
            else self.stack.functions[function]
        )
        handler = self._handler(spec)
        context = LambdaContext(
            function_name=spec.name, memory_limit_in_mb=spec.memory_mb, timeout_seconds=spec.timeout_seconds
        )
        invocation = Invocation(
            function=spec.logical_id, event=event, trigger=trigger, request_id=context.aws_request_id
        )
        started = time.perf_counter()
        with self._captured() as output:
            try:
                invocation.result = handler(event, context)
            except Exception as error:  # the runtime's boundary: every error is the invocation's result
                invocation.exception = error
        invocation.duration_ms = (time.perf_counter() - started) * 1000
        invocation.logs = output.getvalue()
        self._write_log(spec.logical_id, invocation.logs)
        with self._lock:
            self.invocations.append(invocation)
        return invocation

    def _write_log(self, function: str, text: str) -> None:
        if self._log_dir is None or not text:
            return
        self._log_dir.mkdir(parents=True, exist_ok=True)
        with (self._log_dir / f"{function}.log").open("a", encoding="utf-8") as log:
            log.write(text)
