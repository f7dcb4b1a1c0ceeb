"""`pipeline rehearse`: the deploy path without an AWS account.

`sam build` (when the functions' Python is available), `sam package` into a bucket of an
embedded moto server, then the packaged template translated and deployed there by the local
runner, which checks that every resource exists and prints the outputs. What it proves: the
template builds, packages and deploys; what it cannot: IAM, quotas and service behaviour of
a real account.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline_cli.project import PROJECT_ROOT
from pipeline_cli.twin.deploy import ARTIFACTS_BUCKET, deploy
from pipeline_cli.twin.server import embedded_moto
from pipeline_cli.twin.template import load_template

BUILD_TEMPLATE = PROJECT_ROOT / ".aws-sam" / "build" / "template.yaml"


def runtime_python() -> str:
    """The `pythonX.Y` the template's functions run on (Globals.Function.Runtime)."""
    runtime: str = load_template()["Globals"]["Function"]["Runtime"]
    return runtime  # e.g. python3.12


def build_environment(python: str) -> dict[str, str] | None:
    """Environment in which `python` (e.g. python3.12) runs, or None when this machine lacks it.

    With pyenv, versions are on PATH only when selected: add every installed 3.12/3.13.
    """
    environment = dict(os.environ)
    if shutil.which("pyenv"):
        installed = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False)
        current = subprocess.run(["pyenv", "version-name"], capture_output=True, text=True, check=False)
        wanted = [version for version in installed.stdout.split() if version.startswith(("3.12", "3.13"))]
        if wanted:
            environment["PYENV_VERSION"] = ":".join([current.stdout.strip(), *wanted])
    probe = subprocess.run([python, "--version"], capture_output=True, env=environment, check=False)
    return environment if probe.returncode == 0 else None


def _run(command: list[str], environment: dict[str, str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, cwd=PROJECT_ROOT, env=environment, check=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pipeline rehearse", description=__doc__.splitlines()[0])
    parser.add_argument("--skip-build", action="store_true", help="package the sources without `sam build`")
    parser.add_argument("--build-only", action="store_true", help="`sam build` and stop (`make build`)")
    parser.add_argument("--output-dir", type=Path, default=Path("build/rehearsal"))
    args = parser.parse_args(argv)
    if args.skip_build and args.build_only:
        parser.error("--skip-build and --build-only exclude each other")
    sam = str(Path(sys.executable).with_name("sam"))
    environment = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    template = PROJECT_ROOT / "template.yaml"
    if not args.skip_build:
        python = runtime_python()
        build_env = build_environment(python)
        if build_env is None:
            print(f"{python} is not installed here: skipping `sam build` (install it, or use --skip-build)")
            if args.build_only:
                return 1
        else:
            _run([sam, "build", "--template", str(template)], {**build_env, "SAM_CLI_TELEMETRY": "0"})
            template = BUILD_TEMPLATE
        if args.build_only:
            return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    packaged = args.output_dir / "packaged.yaml"
    with embedded_moto() as endpoint:
        endpoint.client("s3").create_bucket(Bucket=ARTIFACTS_BUCKET)
        package_command = [sam, "package", "--template-file", str(template), "--s3-bucket", ARTIFACTS_BUCKET]
        package_command += ["--output-template-file", str(packaged), "--region", endpoint.region]
        # samconfig.toml asks for it too, but sam looks for samconfig.toml next to the template.
        package_command += ["--language-extensions"]
        _run(package_command, {**environment, **endpoint.environment})
        stack = deploy(endpoint, "image-pipeline-rehearsal", template=load_template(packaged.resolve()))
        print(f"deployed {len(stack.active)} resources ({len(stack.wired)} completed by the local runner):")
        for logical_id, what in sorted(stack.wired.items()):
            print(f"  {logical_id:<40} {what}")
        print("outputs:")
        for name, value in sorted(stack.outputs.items()):
            print(f"  {name:<32} {value}")
        empty = [name for name, value in stack.outputs.items() if not value or value == "None"]
        if empty:
            print(f"outputs without a value: {', '.join(empty)}", file=sys.stderr)
            return 1
    print("rehearsal passed: built, packaged, deployed; every resource and output present")
    return 0
