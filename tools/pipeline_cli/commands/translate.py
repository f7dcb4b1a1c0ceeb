"""`pipeline translate [-o FILE] [--all-features] [--expand-only] [Key=Value ...]`: SAM -> CloudFormation offline.

What the AWS::Serverless transform deploys, for scanners (checkov sees the generated roles and
permissions only after translation) and for reading. `--expand-only` stops before it: the template
as written with its Fn::ForEach loops unrolled, for scanners that do not expand them (checkov
would skip every resource a loop makes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline_cli.twin.template import load_template
from pipeline_cli.twin.translate import ALL_FEATURES, false_conditions, translate_template, with_parameter_defaults


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pipeline translate", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("build/template.cfn.json"))
    parser.add_argument(
        "--all-features",
        action="store_true",
        help="turn every optional feature on and make the parameters' defaults say so (for scanners)",
    )
    parser.add_argument(
        "--expand-only",
        action="store_true",
        help="apply only AWS::LanguageExtensions (unroll Fn::ForEach), not the SAM transform",
    )
    parser.add_argument("overrides", nargs="*", metavar="Key=Value", help="template parameter overrides")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.overrides)
    if args.all_features:
        overrides = ALL_FEATURES | overrides
    translated = load_template() if args.expand_only else translate_template(load_template(), overrides)
    if args.all_features or args.expand_only:
        translated = with_parameter_defaults(translated, overrides)
    if args.all_features and (off := false_conditions(translated)):
        print(f"conditions still false with --all-features: {', '.join(off)}; extend ALL_FEATURES", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(translated, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.output} ({len(translated['Resources'])} resources)", file=sys.stderr)
    return 0
