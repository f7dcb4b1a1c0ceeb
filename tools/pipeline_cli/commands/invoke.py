"""`pipeline invoke FUNCTION -e EVENT [--env-vars env.json]`: `sam local invoke` without Docker.

The handler, its environment and the layer's code are resolved from template.yaml, and the
function runs in this process, as the Lambda runtime would run it. By default it runs against
a fresh embedded moto server with the stack deployed (stack name `image-pipeline`, so the
bucket names in events/ match); with --endpoint-url (or AWS_ENDPOINT_URL) it runs against
that endpoint instead, and env.json supplies what the template derives from resources, exactly
as for `sam local invoke --env-vars`. The result goes to stdout, the function's logs to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from pipeline_cli.commands import add_parameter_overrides
from pipeline_cli.imagefactory import make_heic, make_jpeg
from pipeline_cli.project import PROJECT_ROOT
from pipeline_cli.twin.delivery import EventRouter
from pipeline_cli.twin.deploy import DeployedStack, FunctionSpec, deploy
from pipeline_cli.twin.runtime import LocalFunctions, environment
from pipeline_cli.twin.server import Endpoint, embedded_moto
from pipeline_cli.twin.template import TemplateError, load_template, parameter_values, resolve
from pipeline_cli.twin.translate import translate_template

STACK_NAME = "image-pipeline"  # the stack events/*.json are written for


class InvokeError(Exception):
    """The function cannot be resolved or configured from the template."""


def read_json(path: Path, what: str) -> Any:
    """A JSON file the user named; InvokeError (one line) when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvokeError(f"{what} {path}: {error.strerror}") from None
    except ValueError as error:
        raise InvokeError(f"{what} {path} is not JSON: {error}") from None


def _env_overrides(env_file: Path | None, logical_id: str) -> dict[str, str]:
    """sam local's env.json: {"Parameters": {...all functions}, "FunctionLogicalId": {...}}."""
    if env_file is None:
        return {}
    document = read_json(env_file, "--env-vars")
    if not isinstance(document, dict):
        raise InvokeError(f"--env-vars {env_file}: expected an object of function logical ids")
    return {
        name: str(value) for name, value in {**document.get("Parameters", {}), **document.get(logical_id, {})}.items()
    }


# What the Lambda runtime takes from the execution role and region, rather than the template.
_RUNTIME_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


def _static_environment(
    translated: dict[str, Any], logical_id: str, parameters: Mapping[str, Any], overrides: Mapping[str, str]
) -> dict[str, str]:
    """The template's variables for one function, without a deployed stack to resolve them.

    Literals and what parameters determine resolve here; anything derived from a resource must
    come from env.json (as with `sam local invoke`), otherwise the invoke stops with its name.
    """
    variables = translated["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    environment, unresolved = {}, []
    for name, value in variables.items():
        if name in overrides:
            environment[name] = overrides[name]
            continue
        try:
            environment[name] = str(resolve(value, parameters))
        except TemplateError:
            unresolved.append(name)
    if unresolved:
        raise InvokeError(f"{logical_id}: set {', '.join(sorted(unresolved))} in --env-vars (derived from resources)")
    return environment


def _function_properties(translated: dict[str, Any], logical_id: str) -> dict[str, Any]:
    resource = translated["Resources"].get(logical_id)
    if resource is None or resource["Type"] != "AWS::Lambda::Function":
        functions = sorted(name for name, r in translated["Resources"].items() if r["Type"] == "AWS::Lambda::Function")
        raise InvokeError(f"no function {logical_id!r} in template.yaml (functions: {', '.join(functions)})")
    properties: dict[str, Any] = resource["Properties"]
    return properties


@contextmanager
def _external_stack(endpoint_url: str | None, function: str, args: argparse.Namespace) -> Iterator[DeployedStack]:
    template = load_template()
    overrides = dict(args.parameter_overrides)
    translated = translate_template(template, overrides)
    parameters = parameter_values(translated, overrides)
    properties = _function_properties(translated, function)
    code_uri = template["Resources"][function]["Properties"]["CodeUri"]
    spec = FunctionSpec(
        logical_id=function,
        name=function,
        arn=f"arn:aws:lambda:{os.environ.get('AWS_DEFAULT_REGION', 'us-east-1')}:123456789012:function:{function}",
        code_dir=PROJECT_ROOT / code_uri,
        handler=properties["Handler"],
        environment=_static_environment(translated, function, parameters, _env_overrides(args.env_vars, function)),
        timeout_seconds=int(resolve(properties.get("Timeout", 3), parameters)),
        memory_mb=int(resolve(properties.get("MemorySize", 128), parameters)),
    )
    overrides_for_function = _env_overrides(args.env_vars, function)
    runtime = {name: value for name, value in overrides_for_function.items() if name in _RUNTIME_VARIABLES}
    with environment({**runtime, "AWS_ENDPOINT_URL": endpoint_url} if endpoint_url else runtime):
        yield DeployedStack(
            name="external", endpoint=Endpoint(endpoint_url or ""), template=translated, functions={function: spec}
        )


@contextmanager
def _embedded_stack(function: str, args: argparse.Namespace) -> Iterator[DeployedStack]:
    with embedded_moto() as endpoint:
        stack = deploy(endpoint, STACK_NAME, dict(args.parameter_overrides))
        _function_properties(stack.template, function)
        overrides = _env_overrides(args.env_vars, function)
        if overrides:
            spec = stack.functions[function]
            stack.functions[function] = replace(spec, environment=spec.environment | overrides)
        yield stack


def seed_objects(stack: DeployedStack, event: dict[str, Any]) -> None:
    """Upload a generated photo for each S3 record and point the record at that object version."""
    s3 = stack.endpoint.client("s3")
    for record in event.get("Records", []):
        if "s3" not in record:
            continue
        target = record["s3"]
        key = unquote_plus(target["object"]["key"])
        heif = key.lower().endswith((".heic", ".heif"))  # an iPhone photo, for events/s3-put-heic.json
        body = make_heic(1200, 1600, orientation=6) if heif else make_jpeg(1600, 1200, orientation=6)
        put = s3.put_object(Bucket=target["bucket"]["name"], Key=key, Body=body)
        target["object"].update(eTag=put["ETag"].strip('"'), size=len(body))
        if put.get("VersionId"):
            target["object"]["versionId"] = put["VersionId"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pipeline invoke", description=__doc__.splitlines()[0])
    parser.add_argument("function", help="logical id in template.yaml, e.g. ThumbnailFunction")
    parser.add_argument("-e", "--event", type=Path, required=True, help="event JSON file (see events/)")
    parser.add_argument("--env-vars", type=Path, help="sam local's env.json: per-function variable overrides")
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"), help="use this endpoint")
    add_parameter_overrides(parser)
    parser.add_argument(
        "--seed", action="store_true", help="embedded only: upload a generated image for each S3 record first"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.seed and args.endpoint_url:
        print("pipeline invoke: --seed writes to the embedded server only", file=sys.stderr)
        return 2
    try:
        event = read_json(args.event, "event file")
        stacks = (
            _external_stack(args.endpoint_url, args.function, args)
            if args.endpoint_url
            else _embedded_stack(args.function, args)
        )
        with stacks as stack:
            functions = LocalFunctions(stack)
            # Attached, the router keeps moto from handing S3 notifications (of the seeded
            # objects too) to Docker; this command delivers only the one event it was given.
            with functions.active(), EventRouter(stack, functions).attached():
                if args.seed:
                    seed_objects(stack, event)
                invocation = functions.invoke(args.function, event, "cli")
    except InvokeError as error:
        print(f"pipeline invoke: {error}", file=sys.stderr)
        return 2
    sys.stderr.write(invocation.logs)
    print(f"REPORT RequestId: {invocation.request_id} Duration: {invocation.duration_ms:.2f} ms", file=sys.stderr)
    print(json.dumps(invocation.error if invocation.failed else invocation.result, indent=2, default=str))
    return 1 if invocation.failed else 0
