"""ThumbnailFunction as template.yaml configures it: where its handler is, its environment, its spec."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from image_pipeline.config import ThumbnailSettings
from image_pipeline.imaging import RenditionSpec

THUMBNAIL_FUNCTION = "ThumbnailFunction"


@cache
def handler_environment() -> dict[str, str]:
    """ThumbnailFunction's variables as template.yaml sets them: Globals, then the function's own;
    parameters at their defaults, resources as stand-in names (nothing here calls AWS)."""
    from pipeline_cli.twin.template import load_template

    template = load_template()
    parameters = {name: str(spec["Default"]) for name, spec in template["Parameters"].items() if "Default" in spec}
    resources = template["Resources"]
    variables = {
        **template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        **resources[THUMBNAIL_FUNCTION]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    return {name: _resolve(value, parameters, resources) for name, value in variables.items()}


_PSEUDO = {"AWS::StackName": "image-pipeline", "AWS::AccountId": "123456789012", "AWS::Region": "us-east-1"}


def _resolve(value: Any, parameters: Mapping[str, str], resources: Mapping[str, Any]) -> str:
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        ref = value["Ref"]
        if ref in parameters:
            return parameters[ref]
        if resources.get(ref, {}).get("Type") == "AWS::SNS::Topic":  # a topic's Ref is its ARN
            return f"arn:aws:sns:us-east-1:123456789012:{ref}"
        return str(ref).lower()
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(
            r"\$\{([^}]+)\}", lambda match: _PSEUDO.get(match.group(1), match.group(1).lower()), value["Fn::Sub"]
        )
    raise ValueError(f"{THUMBNAIL_FUNCTION}: {value!r} cannot be resolved without a deployed stack")


def handler_location() -> tuple[str, str]:
    """(CodeUri, Handler) of ThumbnailFunction."""
    from pipeline_cli.twin.template import resource

    properties = resource(THUMBNAIL_FUNCTION)["Properties"]
    return str(properties["CodeUri"]), str(properties["Handler"])


@cache
def project_spec() -> RenditionSpec:
    """The RenditionSpec the handler builds from the template's settings."""
    from image_pipeline.thumbnailer import rendition_spec

    return rendition_spec(ThumbnailSettings.from_env(handler_environment()))
