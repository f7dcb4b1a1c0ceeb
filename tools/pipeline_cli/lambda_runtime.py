"""Load and call handlers the way the Lambda Python runtime does, in this process.

Used by the local runner, `pipeline invoke` and the tests, so all of them run the very code
that is deployed: functions/<name>/app.py with the layer package importable.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LAYER_PATH = PROJECT_ROOT / "layers" / "common" / "python"

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


def lambda_error_payload(exception: BaseException) -> dict[str, Any]:
    """What Lambda returns for an unhandled exception; Step Functions names the error after errorType."""
    return {
        "errorType": type(exception).__name__,
        "errorMessage": str(exception),
        "stackTrace": traceback.format_tb(exception.__traceback__),
    }
