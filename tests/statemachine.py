"""BackfillStateMachine (backfills and reprocess runs) as template.yaml declares it: its ASL, its
DefinitionSubstitutions, and the definition those resolve to for a given set of resource names
(what CloudFormation does)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipeline_cli.project import PROJECT_ROOT
from pipeline_cli.twin import template
from pipeline_cli.twin.template import load_template, parameter_values, resource

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_lambda import LambdaClient

MACHINE: dict[str, Any] = resource("BackfillStateMachine")["Properties"]
ASL_TEXT = (PROJECT_ROOT / MACHINE["DefinitionUri"]).read_text(encoding="utf-8")
SUBSTITUTIONS: dict[str, Any] = MACHINE["DefinitionSubstitutions"]
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def referenced_logical_id(value: Mapping[str, Any]) -> str:
    """The resource or parameter a `!Ref X` / `!GetAtt X.Attr` substitution value names; for
    `!Ref F.Alias` (SAM's reference to AutoPublishAlias' alias), the function F."""
    if "Ref" in value:
        return str(value["Ref"]).removesuffix(".Alias")
    return str(value["Fn::GetAtt"][0])


def resolve(values: Mapping[str, str], **parameters: str) -> dict[str, str]:
    """Each substitution's value: `values` by logical id for resources (a function's ARN is both
    its Ref and its Arn here, and `F.Alias` is that ARN qualified with its AutoPublishAlias, as
    the alias' Ref is on AWS), parameters by name (their template defaults unless given);
    TemplateError for a substitution nothing resolves."""
    attributes = {f"{logical_id}.Arn": value for logical_id, value in values.items()}
    resources = load_template()["Resources"]
    aliases = {
        f"{logical_id}.Alias": f"{value}:{resources[logical_id]['Properties']['AutoPublishAlias']}"
        for logical_id, value in values.items()
        if "AutoPublishAlias" in resources.get(logical_id, {}).get("Properties", {})
    }
    known = {**values, **attributes, **aliases, **parameter_values(load_template(), parameters)}
    return {name: str(value) for name, value in template.resolve(SUBSTITUTIONS, known).items()}


def definition(substitutions: Mapping[str, str]) -> dict[str, Any]:
    """The ASL with its placeholders replaced, parsed (it must be JSON once substituted)."""
    parsed: dict[str, Any] = json.loads(template.substitute(ASL_TEXT, substitutions))
    return parsed


# -- Lambda functions that exist in moto only to be routed to in-process handlers ---------------

_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def _placeholder_code() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    raise RuntimeError('routed, never run')\n")
    return buffer.getvalue()


def create_role(iam: IAMClient, name: str) -> str:
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(_TRUST_POLICY))["Role"]["Arn"]


def create_function(functions: LambdaClient, name: str, role_arn: str, *, timeout: int = 60) -> str:
    """A moto function named `name` (its code never runs: lambda_router routes it); its ARN."""
    created = functions.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role_arn,
        Handler="app.lambda_handler",
        Code={"ZipFile": _placeholder_code()},
        Timeout=timeout,
    )
    return created["FunctionArn"]
