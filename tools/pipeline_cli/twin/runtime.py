"""The Lambda runtime, in this process: load handlers and invoke them the way Lambda does.

Each function's app.py is imported once (a cold start) with the environment the template
gives it, the layer's package importable, then invoked per event with a fresh context; an
unhandled exception becomes the invocation's error, shaped as Lambda returns it. What a
handler prints (Powertools' JSON logs and EMF metrics) is kept per invocation, like CloudWatch
Logs, instead of flooding the console. The local stack, `pipeline invoke`, the benchmarks and
the tests all run the very code that is deployed through this module.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

from pipeline_cli.project import LAYER_PATH, PROJECT_ROOT

if TYPE_CHECKING:
    from pipeline_cli.twin.deploy import DeployedStack, FunctionSpec

Handler = Callable[[Any, Any], Any]


@dataclass
class LambdaContext:
    """The attributes of the runtime's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 128
    timeout_seconds: float = 30.0
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = "us-east-1"
    account_id: str = "123456789012"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.invoked_function_arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of an import or an invocation."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update({name: str(value) for name, value in variables.items()})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_handler(code_uri: str | Path, handler: str, env: Mapping[str, str] | None = None) -> Handler:
    """Import `handler` ("app.lambda_handler") from code_uri as its own module.

    Each function gets a unique module name, so several functions' app.py live side by side;
    env is set while importing, because handlers validate their settings at import time.
    """
    module_file, _, attribute = handler.rpartition(".")
    directory = (PROJECT_ROOT / code_uri).resolve()
    path = directory / f"{module_file.replace('.', '/')}.py"
    if not path.is_file():
        raise FileNotFoundError(f"handler module {path} not found (CodeUri={code_uri}, Handler={handler})")
    if str(LAYER_PATH) not in sys.path:
        sys.path.insert(0, str(LAYER_PATH))
    module_name = f"lambda_{directory.name}_{module_file.replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    with environment(env or {}):
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
    function: Handler = getattr(module, attribute)
    return function


def load_with_snapstart(code_uri: str | Path, handler: str, env: Mapping[str, str] | None = None) -> Handler:
    """SnapStart's initialisation, in this process: import the handler, run the before-snapshot
    hooks that importing it registered, then, as a restore would, its after-restore hooks."""
    from snapshot_restore_py import get_after_restore, get_before_snapshot

    known_before, known_after = len(get_before_snapshot()), len(get_after_restore())
    function = load_handler(code_uri, handler, env)
    with environment(env or {}):
        # Entries are (hook, args, kwargs), as the runtime calls them.
        for hook, args, kwargs in [*get_before_snapshot()[known_before:], *get_after_restore()[known_after:]]:
            hook(*args, **kwargs)
    return function


def lambda_error_payload(exception: BaseException) -> dict[str, Any]:
    """What Lambda returns for an unhandled exception; Step Functions names the error after errorType."""
    return {
        "errorType": type(exception).__name__,
        "errorMessage": str(exception),
        "stackTrace": traceback.format_tb(exception.__traceback__),
    }


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
    def error(self) -> dict[str, Any] | None:
        """The payload Lambda returns for an unhandled exception; None when the handler returned."""
        return lambda_error_payload(self.exception) if self.exception is not None else None


def run_handler(handler: Handler, event: Any, context: LambdaContext, *, function: str, trigger: str) -> Invocation:
    """One invocation at the runtime's boundary: whatever the handler raises is its result."""
    invocation = Invocation(function=function, event=event, trigger=trigger, request_id=context.aws_request_id)
    started = time.perf_counter()
    try:
        invocation.result = handler(event, context)
    except Exception as error:  # the runtime's boundary: every error is the invocation's result
        invocation.exception = error
    invocation.duration_ms = (time.perf_counter() - started) * 1000
    return invocation


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
                load = load_with_snapstart if spec.snap_start else load_handler
                with self._captured() as cold_start_output:
                    self._handlers[spec.logical_id] = load(spec.code_dir, spec.handler, runtime_env)
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
        with self._captured() as output:
            invocation = run_handler(handler, event, context, function=spec.logical_id, trigger=trigger)
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
