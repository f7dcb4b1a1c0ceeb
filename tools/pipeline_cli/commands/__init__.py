"""The `pipeline` commands, one module each with `main(argv) -> int`; what they share about arguments."""

from __future__ import annotations

import argparse


def add_parameter_overrides(parser: argparse.ArgumentParser) -> None:
    """`--parameter-overrides Key=Value ...`, as the SAM CLI spells it; parsed into (key, value) pairs."""
    parser.add_argument(
        "--parameter-overrides",
        nargs="*",
        default=[],
        type=lambda item: tuple(item.split("=", 1)),
        metavar="Key=Value",
        help="template parameters",
    )
