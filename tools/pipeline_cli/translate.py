"""SAM -> CloudFormation, offline: what the AWS::Serverless transform does at deploy time.

Used by the local runner (moto's CloudFormation cannot run the SAM transform) and by the
security scan (scanners see the real IAM policies only after translation).
`pipeline translate [-o build/template.cfn.json] [Key=Value ...]`
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline_cli.template import load_template

PLACEHOLDER_BUCKET = "pipeline-local-artifacts"


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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pipeline translate", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("build/template.cfn.json"))
    parser.add_argument("overrides", nargs="*", metavar="Key=Value", help="template parameter overrides")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.overrides)
    translated = translate_template(load_template(), overrides)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(translated, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.output} ({len(translated['Resources'])} resources)", file=sys.stderr)
    return 0
