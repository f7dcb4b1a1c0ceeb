"""ThumbnailFunction as template.yaml configures it: where its handler is, its environment, its spec."""

from __future__ import annotations

from functools import cache

from image_pipeline.config import ThumbnailSettings
from image_pipeline.imaging import RenditionSpec

THUMBNAIL_FUNCTION = "ThumbnailFunction"
# What CloudFormation's pseudo parameters are for a stack deployed as README says (names built with Fn::Sub).
PSEUDO_PARAMETERS = {
    "AWS::StackName": "image-pipeline",
    "AWS::AccountId": "123456789012",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
}


@cache
def handler_environment() -> dict[str, str]:
    """ThumbnailFunction's variables as template.yaml sets them: Globals, then the function's own;
    parameters at their defaults, resources as stand-in names (nothing here calls AWS)."""
    from pipeline_cli.twin.template import function_variables, load_template, parameter_values, resolve

    template = load_template()
    stand_ins = {logical_id: _stand_in(logical_id, spec["Type"]) for logical_id, spec in template["Resources"].items()}
    values = {**stand_ins, **PSEUDO_PARAMETERS, **parameter_values(template)}
    variables = resolve(function_variables(template, THUMBNAIL_FUNCTION), values)
    return {name: str(value) for name, value in variables.items()}


def _stand_in(logical_id: str, resource_type: str) -> str:
    """What Ref returns for the resource, in shape: a topic's ARN, otherwise a name."""
    if resource_type == "AWS::SNS::Topic":
        return f"arn:aws:sns:us-east-1:123456789012:{logical_id}"
    return logical_id.lower()


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
