"""`pipeline up`: the local stack, running until Ctrl-C, for your own scripts and tools.

Deploys template.yaml as `image-pipeline` to an embedded moto server on localhost:PORT, wires
the real handlers and keeps delivering events (S3 notifications, SQS event source mappings,
rate() schedules, Step Functions tasks) in the background. Writes, under --out:
  env.json   every function's environment, in `sam local invoke --env-vars` form (for
             `pipeline invoke --endpoint-url URL --env-vars build/up/env.json`);
  aws.env    AWS_ENDPOINT_URL, region and moto's test credentials (`source build/up/aws.env`,
             then the AWS CLI and boto3 scripts talk to the local stack);
  outputs.json  the stack's outputs (bucket names, queue URLs, ...).
Function logs go to --out/logs/<FunctionLogicalId>.log.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path

from pipeline_cli.commands import add_parameter_overrides
from pipeline_cli.twin.delivery import EventRouter
from pipeline_cli.twin.deploy import DeployedStack, Schedule
from pipeline_cli.twin.server import CREDENTIALS, Endpoint
from pipeline_cli.twin.session import local_pipeline

STACK_NAME = "image-pipeline"  # the stack events/*.json are written for
DEFAULT_PORT = 4566
DELIVERY_INTERVAL_SECONDS = 0.2
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float | None:
    """The period of a `rate(...)` schedule expression; None for cron() and at() expressions."""
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).removesuffix("s")]


def env_json(stack: DeployedStack, endpoint: Endpoint) -> dict[str, dict[str, str]]:
    """`sam local invoke --env-vars` form: the shared AWS settings, then each function's variables."""
    shared = {"AWS_ENDPOINT_URL": endpoint.url, "AWS_DEFAULT_REGION": endpoint.region, **CREDENTIALS}
    return {"Parameters": shared} | {spec.logical_id: dict(spec.environment) for spec in stack.functions.values()}


def aws_env(endpoint: Endpoint) -> str:
    lines = [f"export {name}={value}" for name, value in endpoint.environment.items()]
    return "# source this file: the AWS CLI and boto3 then use the local stack\n" + "\n".join(lines) + "\n"


def write_files(out: Path, stack: DeployedStack, endpoint: Endpoint) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "env.json").write_text(json.dumps(env_json(stack, endpoint), indent=2) + "\n", encoding="utf-8")
    (out / "aws.env").write_text(aws_env(endpoint), encoding="utf-8")
    (out / "outputs.json").write_text(json.dumps(stack.outputs, indent=2, sort_keys=True) + "\n", encoding="utf-8")


class Deliveries:
    """Delivers what is due, every DELIVERY_INTERVAL_SECONDS, on a thread of its own."""

    def __init__(self, router: EventRouter, schedules: list[Schedule]) -> None:
        self.router = router
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deliveries", daemon=True)
        started = time.monotonic()
        self._due = {
            schedule.name: started + period for schedule in schedules if (period := rate_seconds(schedule.expression))
        }
        self._schedules = {schedule.name: schedule for schedule in schedules}
        self.errors: list[str] = []

    def __enter__(self) -> Deliveries:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(DELIVERY_INTERVAL_SECONDS):
            try:
                self._fire_due_schedules()
                while self.router.step():
                    pass
            except Exception as error:  # keep serving; say what failed
                message = f"delivery failed: {type(error).__name__}: {error}"
                self.errors.append(message)
                print(message, file=sys.stderr, flush=True)

    def _fire_due_schedules(self) -> None:
        now = time.monotonic()
        for name, due in self._due.items():
            if now >= due:
                schedule = self._schedules[name]
                self._due[name] = now + (rate_seconds(schedule.expression) or 0)
                self.router.fire(schedule)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pipeline up", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--out", type=Path, default=Path("build/up"), help="env.json, aws.env, outputs.json, logs/")
    add_parameter_overrides(parser)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    shutil.rmtree(args.out / "logs", ignore_errors=True)  # this run's logs only
    print(f"deploying template.yaml as {STACK_NAME} to localhost:{args.port} ...", flush=True)
    try:
        with local_pipeline(
            dict(args.parameter_overrides), log_dir=args.out / "logs", stack_name=STACK_NAME, port=args.port
        ) as pipeline:
            write_files(args.out, pipeline.stack, pipeline.endpoint)
            url = pipeline.endpoint.url
            print(f"local stack {STACK_NAME} up at {url}  (Ctrl-C stops it)")
            print(f"  outputs:      {args.out / 'outputs.json'}")
            for name, value in sorted(pipeline.stack.outputs.items()):
                print(f"    {name:<30} {value}")
            env_vars = args.out / "env.json"
            print(f"  functions:    pipeline invoke FUNCTION -e EVENT --endpoint-url {url} --env-vars {env_vars}")
            print(f"  AWS CLI/boto3: source {args.out / 'aws.env'}   (or aws --endpoint-url {url} ...)")
            print(f"  logs:         {args.out / 'logs'}/<FunctionLogicalId>.log", flush=True)
            with Deliveries(pipeline.router, pipeline.stack.schedules):
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopped", flush=True)
    except OSError as error:
        print(f"pipeline up: {error} (is port {args.port} in use? try --port)", file=sys.stderr)
        return 2
    return 0
