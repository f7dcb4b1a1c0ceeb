"""SAM -> CloudFormation, offline: what the AWS::Serverless transform does at deploy time.

Used by the local twin (moto's CloudFormation cannot run the SAM transform) and by the
security scan (scanners see the real IAM policies only after translation, `pipeline translate`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

PLACEHOLDER_BUCKET = "pipeline-local-artifacts"

# Every optional feature turned on (`--all-features`, used by `make security`): checkov leaves out
# the resources whose Condition is false under the parameters' defaults, so a scan of the defaults
# would never see the webhook consumer or the upload API.
ALL_FEATURES = {
    "WebhookUrl": "https://hooks.example.com/image-pipeline",
    "EnableUploadApi": "true",
    "AlarmEmail": "ops@example.com",
    "BackfillInventoryBucket": "inventory-reports-example",
    "EnableSnapStart": "true",
}


class _BundledManagedPolicies:
    """Managed-policy lookup without an AWS account.

    The transform only needs ARNs for policies named in `Policies:`; this template names
    none (it uses SAM policy templates and inline statements), so any lookup is a mistake
    worth failing on.
    """

    def load(self) -> dict[str, str]:
        return {}


def _with_code_locations(template: dict[str, Any]) -> dict[str, Any]:
    """The transform wants S3 locations for code, as `sam package` leaves them."""
    packaged = copy.deepcopy(template)
    for logical_id, resource in packaged["Resources"].items():
        properties = resource.get("Properties", {})
        for name in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(properties.get(name), str) and not properties[name].startswith("s3://"):
                properties[name] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}"
    return packaged


def translate_template(
    template: dict[str, Any], parameter_overrides: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The CloudFormation the SAM transform makes of `template` (local code paths allowed)."""
    from samtranslator.translator.transform import transform

    # The transform reads the region from the environment (for ARNs it builds).
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    translated: dict[str, Any] = transform(
        _with_code_locations(template), dict(parameter_overrides or {}), _BundledManagedPolicies()
    )
    return translated


def with_parameter_defaults(template: dict[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """`template` with `values` as its parameters' defaults, so tools that read a template without
    parameters (scanners) evaluate its Conditions the way a deployment with `values` would."""
    updated = copy.deepcopy(template)
    parameters = updated.get("Parameters", {})
    if unknown := sorted(set(values) - set(parameters)):
        raise ValueError(f"not parameters of the template: {', '.join(unknown)}")
    for name, value in values.items():
        parameters[name]["Default"] = value
    return updated


def _parameter_default(template: Mapping[str, Any], name: str) -> str:
    default = template["Parameters"][name].get("Default", "")
    return ",".join(map(str, default)) if isinstance(default, list) else str(default)


def _apply_condition_function(function: str, values: list[Any]) -> bool:
    if function == "Fn::Equals":
        return bool(values[0] == values[1])
    if function == "Fn::Not":
        return not values[0]
    if function in ("Fn::And", "Fn::Or"):
        return (all if function == "Fn::And" else any)(values)
    raise ValueError(f"cannot evaluate {function} in a condition")


def _condition_value(template: Mapping[str, Any], expression: Any) -> Any:
    """The value of a Conditions expression under the parameters' defaults (Fn::Equals/Not/And/Or)."""
    if isinstance(expression, list):
        return [_condition_value(template, item) for item in expression]
    if not isinstance(expression, dict):
        return str(expression).lower() if isinstance(expression, bool) else str(expression)
    ((function, argument),) = expression.items()
    if function == "Ref":
        return _parameter_default(template, argument)
    if function == "Condition":
        return _condition_value(template, template["Conditions"][argument])
    return _apply_condition_function(function, _condition_value(template, argument))


def false_conditions(template: Mapping[str, Any]) -> list[str]:
    """Names of the template's Conditions that are false under its parameters' defaults."""
    conditions = template.get("Conditions", {})
    return [name for name, expression in conditions.items() if not _condition_value(template, expression)]
