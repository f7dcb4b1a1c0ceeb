"""Shared fixtures: fake credentials, the deployed stack in moto, handlers loaded like Lambda loads them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from moto import mock_aws

from image_pipeline.clients import AwsClients
from pipeline_cli.twin.runtime import LambdaContext, load_handler
from pipeline_cli.twin.server import REGION
from tests.stack import TestStack, deployed_stack

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real account, whatever the developer's shell has configured."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ImagePipeline")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "image-pipeline")


@pytest.fixture
def aws() -> Iterator[AwsClients]:
    with mock_aws():
        yield AwsClients()


@pytest.fixture
def stack(request: pytest.FixtureRequest) -> Iterator[TestStack]:
    """template.yaml deployed by the twin, in a mocked account of the test's own; template
    parameters for it by indirect parametrization: parametrize("stack", [{"Name": "value"}], indirect=True)."""
    with deployed_stack(**getattr(request, "param", {})) as deployed:
        yield deployed


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    return event


def lambda_context(function_name: str = "ThumbnailFunction") -> LambdaContext:
    return LambdaContext(function_name=function_name, memory_limit_in_mb=1536, timeout_seconds=60)


@pytest.fixture
def thumbnail_app(stack: TestStack) -> ModuleType:
    """functions/thumbnail/app.py, imported with the stack's environment and its clients."""
    handler = load_handler("functions/thumbnail", "app.lambda_handler", stack.thumbnail_env())
    module = sys.modules[handler.__module__]
    module.clients = stack.clients  # type: ignore[attr-defined]
    return module


@pytest.fixture
def invoke_thumbnail(thumbnail_app: ModuleType) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = thumbnail_app.lambda_handler(event, lambda_context())
        return result

    return invoke
