"""`make up`: the stack stays up, delivers events in the background, and the docs' --endpoint-url example
works against it as written (only the port and the output folder are this test's own)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from image_pipeline.record import ImageStatus
from image_pipeline.repository import ImagesRepository
from pipeline_cli.commands.up import DEFAULT_PORT
from pipeline_cli.imagefactory import make_jpeg
from pipeline_cli.project import PROJECT_ROOT
from pipeline_cli.twin.server import free_port

pytestmark = pytest.mark.slow
PIPELINE = str(Path(sys.executable).with_name("pipeline"))


def documented_endpoint_examples() -> list[list[str]]:
    """Every `pipeline invoke ... --endpoint-url` command README.md and docs/ show."""
    pages = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
    lines = [line for page in pages for line in page.read_text(encoding="utf-8").splitlines()]
    commands = [line for line in lines if line.startswith(".venv/bin/pipeline invoke") and "--endpoint-url" in line]
    return [shlex.split(line) for line in commands]


@pytest.fixture(scope="module")
def stack_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    out = tmp_path_factory.mktemp("up")
    port = free_port()
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    process = subprocess.Popen(
        [PIPELINE, "up", "--port", str(port), "--out", str(out)],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if " up at " in line:
            break
    else:
        pytest.fail("pipeline up ended before the stack was up:\n" + "".join(lines))
    try:
        yield {"process": process, "port": port, "out": out, "banner": lines}
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            remaining, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert process.returncode == 0, remaining
        assert "stopped" in remaining


def aws_env(out: Path) -> dict[str, str]:
    exports = re.findall(r"^export (\w+)=(.*)$", (out / "aws.env").read_text(encoding="utf-8"), re.MULTILINE)
    return dict(exports)


def test_it_prints_the_endpoint_and_writes_env_files_for_it(stack_up: dict[str, Any]) -> None:
    url = f"http://localhost:{stack_up['port']}"
    assert any(f"up at {url}" in line for line in stack_up["banner"])
    env_json = json.loads((stack_up["out"] / "env.json").read_text(encoding="utf-8"))
    assert env_json["Parameters"]["AWS_ENDPOINT_URL"] == url
    outputs = json.loads((stack_up["out"] / "outputs.json").read_text(encoding="utf-8"))
    assert env_json["ThumbnailFunction"]["IMAGES_TABLE"] == outputs["ImagesTableName"]
    assert aws_env(stack_up["out"])["AWS_ENDPOINT_URL"] == url


def test_a_boto3_upload_is_processed_while_it_runs(stack_up: dict[str, Any]) -> None:
    variables = aws_env(stack_up["out"])
    session = boto3.session.Session(
        aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=variables["AWS_SESSION_TOKEN"],
        region_name=variables["AWS_DEFAULT_REGION"],
    )
    url = variables["AWS_ENDPOINT_URL"]
    outputs = json.loads((stack_up["out"] / "outputs.json").read_text(encoding="utf-8"))
    session.client("s3", endpoint_url=url).put_object(
        Bucket=outputs["IngestBucketName"], Key="uploads/script/photo.jpg", Body=make_jpeg(1200, 900)
    )
    images = ImagesRepository(session.client("dynamodb", endpoint_url=url), outputs["ImagesTableName"])
    status = None
    for _ in range(150):
        found = [record for record in images.scan() if record.key == "uploads/script/photo.jpg"]
        status = found[0].status if found else None
        if status == ImageStatus.SUCCEEDED:
            break
        time.sleep(0.2)
    assert status == ImageStatus.SUCCEEDED
    renditions = session.client("s3", endpoint_url=url).list_objects_v2(Bucket=outputs["RenditionsBucketName"])
    assert len(renditions.get("Contents", [])) >= 3


def test_the_documented_endpoint_url_example_works_against_it(stack_up: dict[str, Any]) -> None:
    [command] = documented_endpoint_examples()
    assert command[0] == ".venv/bin/pipeline"
    url = f"http://localhost:{DEFAULT_PORT}"
    assert command[command.index("--endpoint-url") + 1] == url  # what `make up` listens on
    assert command[command.index("--env-vars") + 1] == "build/up/env.json"  # what it writes
    command[0] = PIPELINE
    command[command.index("--endpoint-url") + 1] = f"http://localhost:{stack_up['port']}"
    command[command.index("--env-vars") + 1] = str(stack_up["out"] / "env.json")
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"batchItemFailures": []}
    variables = aws_env(stack_up["out"])
    outputs = json.loads((stack_up["out"] / "outputs.json").read_text(encoding="utf-8"))
    s3 = boto3.client(
        "s3",
        endpoint_url=variables["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    event_file = PROJECT_ROOT / command[command.index("-e") + 1]
    sent = {json.loads(record["body"])["event_id"] for record in json.loads(event_file.read_text())["Records"]}
    archived = set()
    for entry in s3.list_objects_v2(Bucket=outputs["ArchiveBucketName"]).get("Contents", []):
        body = s3.get_object(Bucket=outputs["ArchiveBucketName"], Key=entry["Key"])["Body"].read().decode()
        archived |= {json.loads(line)["event_id"] for line in body.splitlines() if line}
    assert sent <= archived  # the invoked AuditFunction wrote the event file's batch to the stack's ArchiveBucket
