"""X-Ray tracing that costs nothing when it is off.

Powertools' Tracer imports the X-Ray SDK even when disabled, and that import alone is ~150 ms
of a cold start (`make bench`). Handlers decorate with `trace_lambda_handler` instead: with
tracing on (deployed, `Tracing: Active`) it is exactly `Tracer().capture_lambda_handler`; off
(POWERTOOLS_TRACE_DISABLED, outside Lambda, `sam local`) the SDK is never imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools.shared import constants
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

Handler = TypeVar("Handler", bound=Callable[..., Any])


def tracing_disabled() -> bool:
    """Powertools' own rule (Tracer._is_tracer_disabled), without importing the Tracer."""
    if resolve_truthy_env_var_choice(env=os.getenv(constants.TRACER_DISABLED_ENV, "false")):
        return True
    in_lambda = os.getenv(constants.LAMBDA_TASK_ROOT_ENV)
    emulated = os.getenv(constants.SAM_LOCAL_ENV) or os.getenv(constants.CHALICE_LOCAL_ENV)
    return not in_lambda or bool(emulated)


def trace_lambda_handler(handler: Handler) -> Handler:
    if tracing_disabled():
        return handler
    from aws_lambda_powertools import Tracer

    return cast("Handler", Tracer().capture_lambda_handler(handler))
