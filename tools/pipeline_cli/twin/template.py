"""Read template.yaml (CloudFormation short-form intrinsics included) into plain dicts."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from pipeline_cli.project import TEMPLATE_PATH


class _CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that turns !Ref, !Sub, !GetAtt ... into their long forms."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node for !{tag_suffix}", node.start_mark)
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)  # type: ignore[no-untyped-call]


@cache
def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_CloudFormationLoader)  # noqa: S506  # SafeLoader subclass
    return document


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The parsed template (cached per path; treat it as read-only)."""
    return _load(path.resolve())


def resource(logical_id: str, path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    resources: dict[str, Any] = load_template(path)["Resources"]
    if logical_id not in resources:
        raise KeyError(f"{logical_id} is not a resource in {path.name}")
    return resources[logical_id]  # type: ignore[no-any-return]
