"""`pipeline COMMAND ...`: each command is a module of pipeline_cli.commands with a `main(argv) -> int`."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "demo": ("demo", "run the whole pipeline locally on sample images (embedded moto server)"),
    "up": ("up", "the local stack on localhost until Ctrl-C: endpoint, env.json, events delivered"),
    "invoke": ("invoke", "docker-free twin of `sam local invoke`, resolved from template.yaml"),
    "backfill": ("backfill", "re-render a library with BackfillStateMachine locally: progress and a summary"),
    "redrive": ("redrive", "move messages from a DLQ back to its source queue"),
    "replay": ("replay", "replay the upload events ThumbnailFunction gave up on (ThumbnailFailuresQueue)"),
    "translate": ("translate", "SAM -> CloudFormation offline (what the transform deploys)"),
    "bench": ("bench", "thumbnailer vs naive Pillow vs decode floor, side by side"),
    "scale-model": ("scale_model", "the backfill's wall time and cost for 10^4..10^8 images (table, plot)"),
    "tune": ("tune", "memory/cost tuning report for ThumbnailFunction"),
    "conformance": ("conformance", "the thumbnailer on real-world files vs an independent reference"),
    "rehearse": ("rehearse", "sam build + package, then deploy to a local moto server and check"),
}


def usage() -> str:
    lines = ["usage: pipeline COMMAND [options]   (pipeline COMMAND --help for each)", "", "commands:"]
    lines += [f"  {name:<12} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"pipeline: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"pipeline_cli.commands.{COMMANDS[name][0]}")
    code: int = module.main(rest)
    return code


if __name__ == "__main__":
    sys.exit(main())
