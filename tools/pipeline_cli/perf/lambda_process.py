"""Lambda-like processes: a venv with only what the function has on Lambda, peak RSS and cold starts
measured in fresh interpreters (pipeline_cli.perf.rss_worker, pipeline_cli.perf.cold_start_worker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from image_pipeline.imaging import RenditionSpec
from pipeline_cli.perf.handler import handler_environment, handler_location
from pipeline_cli.project import LAYER_PATH, PROJECT_ROOT

# What the Lambda Python runtime provides besides the layer (snapshot-restore-py: SnapStart's hooks).
_RUNTIME_PACKAGES = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "six",
    "urllib3",
    "snapshot-restore-py",
)


def lambda_like_python(directory: Path) -> Path:
    """A venv with only what the function has on Lambda: the layer's pins and the runtime's boto3.

    The dev venv also holds SAM CLI's dependencies (awscrt, pyOpenSSL), which boto3 picks up
    on import and which would add time that Lambda never spends. Installed on every run (pip
    does nothing when the pins are met), so an existing venv follows changed pins.
    """
    python = directory / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    pins = [
        line.strip()
        for line in (PROJECT_ROOT / "requirements" / "dev.txt").read_text(encoding="utf-8").splitlines()
        if line.split("==")[0].strip().lower() in _RUNTIME_PACKAGES
    ]
    layer = str(PROJECT_ROOT / "layers" / "common" / "requirements.txt")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-r", layer, *pins], check=True)
    return python


def lambda_like_environment() -> dict[str, str]:
    """A region, credentials in the variables where Lambda puts the role's (stand-ins: nothing is
    called; without them botocore walks its whole provider chain, files and instance metadata
    included, which Lambda never does), and the code on the path as the layer puts it; bytecode
    allowed, as a deployed package ships it."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    tools = PROJECT_ROOT / "tools"
    environment.update(
        AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", PYTHONPATH=f"{LAYER_PATH}{os.pathsep}{tools}"
    )
    environment.update(AWS_ACCESS_KEY_ID="ASIABENCH", AWS_SECRET_ACCESS_KEY="bench", AWS_SESSION_TOKEN="bench")  # noqa: S106
    return environment


def handler_options() -> dict[str, object]:
    """What a worker needs to load ThumbnailFunction as Lambda would, tracing off."""
    code_uri, handler = handler_location()
    return {
        "code_uri": code_uri,
        "handler": handler,
        "env": {**handler_environment(), "POWERTOOLS_TRACE_DISABLED": "true"},
    }


def peak_rss_mb(variant: str, path: Path, spec: RenditionSpec, lambda_python: Path) -> float:
    """VmHWM of a fresh interpreter that imports what the variant needs and runs it once; the
    handler's in the Lambda-like venv, where boto3 finds no SAM CLI extras to load."""
    payload = json.dumps(handler_options() if variant == "handler" else asdict(spec))
    python = lambda_python if variant == "handler" else Path(sys.executable)
    completed = subprocess.run(
        [str(python), "-m", "pipeline_cli.perf.rss_worker", variant, str(path), payload],
        capture_output=True,
        text=True,
        check=True,
        env=lambda_like_environment(),
    )
    return float(completed.stdout.strip().splitlines()[-1])


def cold_start(
    python: Path, runs: int, *, tracing: bool, snapstart: bool = False, sdk_only: bool = False
) -> dict[str, list[float]]:
    """Import the handler and create its clients in fresh interpreters, after one unmeasured run
    that writes the bytecode a deployed package ships with. With `snapstart`, what is left after
    a restore: the after-restore hooks ("import_ms") and the clients, in a process that imported
    the handler and ran its before-snapshot hooks first; Lambda's own restore time is not included.
    With `sdk_only`, the SDK's share: boto3 imported and the same clients created, no handler."""
    handler_env = dict(handler_environment())
    process_env = lambda_like_environment()
    if tracing:
        process_env["LAMBDA_TASK_ROOT"] = str(PROJECT_ROOT)  # "in Lambda", where Powertools traces
    else:
        handler_env["POWERTOOLS_TRACE_DISABLED"] = "true"
    mode = "snapstart" if snapstart else "sdk" if sdk_only else "cold"
    worker = "pipeline_cli.perf.cold_start_worker"
    command = [str(python), "-m", worker, *handler_location(), json.dumps(handler_env), mode]

    def once() -> dict[str, float]:
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=process_env, cwd=PROJECT_ROOT)
        parts: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])  # after the handler's logs
        return parts

    once()
    samples = [once() for _ in range(runs)]
    return {
        "import_ms": [s["import_ms"] for s in samples],
        "clients_ms": [s["clients_ms"] for s in samples],
        "total_ms": [s["import_ms"] + s["clients_ms"] for s in samples],
    }
