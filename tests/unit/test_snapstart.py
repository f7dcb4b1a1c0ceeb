"""SnapStart: what the before-snapshot hook loads, what it keeps out, and how it is deployed."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from botocore.loaders import JSONFileLoader

from image_pipeline.clients import AwsClients
from image_pipeline.imaging import RenditionSpec
from image_pipeline.snapstart import reseed, warm
from pipeline_cli.twin.runtime import load_handler, load_with_snapstart
from pipeline_cli.twin.template import load_template
from pipeline_cli.twin.translate import translate_template

SERVICES = ("s3", "dynamodb", "sns")


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nowhere to find credentials: what the snapshot is taken without."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.mark.usefixtures("no_credentials")
def test_the_snapshot_holds_parsed_models_and_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    clients = AwsClients()
    warm(clients, SERVICES, RenditionSpec(sizes=(64, 32)))
    assert clients.session.get_credentials() is None  # nothing to resolve, and nothing was needed
    read: list[str] = []
    original = JSONFileLoader.load_file

    def recording(self: JSONFileLoader, file_path: str) -> Any:
        read.append(file_path)
        return original(self, file_path)

    monkeypatch.setattr(JSONFileLoader, "load_file", recording)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "restored")  # after the restore: the environment's own
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "restored")
    for service in SERVICES:
        getattr(clients, service)
    assert not [path for path in read if "service-2" in path or "endpoint-rule-set" in path]
    assert clients.s3._request_signer._credentials.access_key == "restored"


def test_each_restore_draws_its_own_random_sequence() -> None:
    random.seed(7)
    from_the_snapshot = random.random()
    random.seed(7)
    reseed()
    assert random.random() != from_the_snapshot


def test_the_runner_runs_the_hooks_a_snapstart_handler_registers(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "from snapshot_restore_py import register_after_restore, register_before_snapshot\n"
        "calls = []\n"
        "register_before_snapshot(calls.append, 'before snapshot')\n"
        "register_after_restore(calls.append, 'after restore')\n"
        "def handler(event, context):\n"
        "    return calls\n",
        encoding="utf-8",
    )
    assert load_with_snapstart(tmp_path, "app.handler")(None, None) == ["before snapshot", "after restore"]
    assert load_handler(tmp_path, "app.handler")(None, None) == []  # without SnapStart: never called


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_s3_invokes_the_alias_and_the_parameter_republishes_the_version(enabled: str) -> None:
    resources = translate_template(load_template(), {"EnableSnapStart": enabled})["Resources"]
    function = resources["ThumbnailFunction"]["Properties"]
    assert function["SnapStart"]["ApplyOn"] == {"Fn::If": ["SnapStartEnabled", "PublishedVersions", "None"]}
    alias = resources["ThumbnailFunctionAliaslive"]
    notification = resources["IngestBucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert [target["Function"] for target in notification] == [{"Ref": "ThumbnailFunctionAliaslive"}]
    assert resources["ThumbnailFunctionUploadPermission"]["Properties"]["FunctionName"] == {
        "Ref": "ThumbnailFunctionAliaslive"
    }
    version = resources[alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]]
    # An immutable property that names the setting: changing the parameter publishes a new version.
    assert version["Properties"]["Description"] == {"Fn::Sub": "SnapStart ${EnableSnapStart}"}
