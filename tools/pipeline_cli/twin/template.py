"""template.yaml as CloudFormation reads it: short-form intrinsics, language extensions, references.

- `load_template` parses the YAML (!Ref, !Sub ... in their long forms) and applies the
  AWS::LanguageExtensions transform's `Fn::ForEach`, as CloudFormation (and `sam build`) do
  before the serverless transform: every other tool of the twin sees the expanded template.
- `resolve` evaluates Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Select and Fn::Split against
  known values: parameters by name, resources by logical id, attributes as "Id.Attribute".
- `substitute` fills `${Name}` placeholders, as Fn::Sub and DefinitionSubstitutions do.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
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
    return expand_language_extensions(document)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The parsed template, language extensions applied (cached per path; treat it as read-only)."""
    return _load(path.resolve())


# -- AWS::LanguageExtensions ------------------------------------------------------------------

LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
_FOR_EACH = "Fn::ForEach::"


class TemplateError(ValueError):
    """The template uses something the twin cannot evaluate, or refers to something it lacks."""


def expand_language_extensions(template: dict[str, Any]) -> dict[str, Any]:
    """`template` with every Fn::ForEach loop (Conditions, Resources, Outputs) replaced by its copies.

    A loop `Fn::ForEach::Name: [Identifier, Collection, {OutputKey: OutputValue}]` makes one copy
    of the fragment per item of the collection (a list, or a Ref to a CommaDelimitedList
    parameter's default), with `${Identifier}` and `&{Identifier}` replaced in every key and
    string and `{"Ref": Identifier}` by the item; loops nest. A key already present is an error,
    as in CloudFormation.
    """
    transforms = template.get("Transform", [])
    transforms = [transforms] if isinstance(transforms, str) else list(transforms)
    if LANGUAGE_EXTENSIONS not in transforms:
        return template
    expanded = dict(template)
    expanded["Transform"] = [name for name in transforms if name != LANGUAGE_EXTENSIONS]
    if len(expanded["Transform"]) == 1:
        expanded["Transform"] = expanded["Transform"][0]
    parameters = parameter_values(template)
    for section in ("Conditions", "Resources", "Outputs"):
        if section in template:
            expanded[section] = _expand_section(template[section], parameters)
    return expanded


def _expand_section(section: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    expanded: dict[str, Any] = {}
    for key, value in section.items():
        copies = _for_each(key, value, parameters) if key.startswith(_FOR_EACH) else {key: value}
        for name, fragment in copies.items():
            if name in expanded:
                raise TemplateError(f"{name} is defined twice (by {key})")
            expanded[name] = fragment
    return expanded


def _for_each(key: str, loop: Any, parameters: Mapping[str, Any]) -> dict[str, Any]:
    if not (isinstance(loop, list) and len(loop) == 3 and isinstance(loop[2], dict)):
        raise TemplateError(f"{key}: expected [Identifier, Collection, {{OutputKey: OutputValue}}]")
    identifier, collection, fragment = loop
    if isinstance(collection, dict) and set(collection) == {"Ref"}:
        collection = parameters[collection["Ref"]]
    if not isinstance(collection, list):
        raise TemplateError(f"{key}: the collection must be a list or a Ref to a CommaDelimitedList")
    copies: dict[str, Any] = {}
    for item in collection:
        replaced = _replace_identifier(copy.deepcopy(fragment), identifier, str(item))
        copies.update(_expand_section(replaced, parameters))
    return copies


def _replace_identifier(value: Any, identifier: str, item: str) -> Any:
    if isinstance(value, str):
        return value.replace(f"${{{identifier}}}", item).replace(f"&{{{identifier}}}", item)
    if isinstance(value, list):
        return [_replace_identifier(element, identifier, item) for element in value]
    if isinstance(value, dict):
        if value == {"Ref": identifier}:
            return item
        return {
            _replace_identifier(key, identifier, item): _replace_identifier(element, identifier, item)
            for key, element in value.items()
        }
    return value


# -- references -------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:]+)\}")


def parameter_values(template: Mapping[str, Any], overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Each parameter's value: the override, else its default; a CommaDelimitedList as a list."""
    values: dict[str, Any] = {}
    for name, spec in template.get("Parameters", {}).items():
        value = (overrides or {}).get(name, spec.get("Default"))
        if value is None:
            continue
        if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
            value = value.split(",")
        elif isinstance(value, bool):
            value = str(value).lower()
        values[name] = value if isinstance(value, list) else str(value)
    return values


def substitute(text: str, values: Mapping[str, Any]) -> str:
    """Fill every `${Name}` (or `${Id.Attribute}`) in text from values; a missing one is an error."""

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise TemplateError(f"${{{name}}} has no value")
        return str(values[name])

    return _PLACEHOLDER.sub(value_of, text)


def resolve(value: Any, values: Mapping[str, Any]) -> Any:
    """`value` with its intrinsic functions evaluated against `values` (see the module's doc)."""
    if isinstance(value, list):
        return [resolve(item, values) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::")):
        return {key: resolve(item, values) for key, item in value.items()}
    ((function, argument),) = value.items()
    if function not in _INTRINSICS:
        raise TemplateError(f"{function} is not evaluated by the local twin")
    return _INTRINSICS[function](argument, values)


def _get_att(argument: Any, values: Mapping[str, Any]) -> Any:
    logical_id, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
    return _known(values, f"{logical_id}.{attribute}")


def _sub(argument: Any, values: Mapping[str, Any]) -> str:
    text, variables = (argument, {}) if isinstance(argument, str) else argument
    return substitute(text, {**values, **resolve(variables, values)})


def _join(argument: Any, values: Mapping[str, Any]) -> str:
    separator, items = argument
    return str(separator).join(str(item) for item in resolve(items, values))


def _select(argument: Any, values: Mapping[str, Any]) -> Any:
    index, items = resolve(argument, values)
    return items[int(index)]


def _split(argument: Any, values: Mapping[str, Any]) -> list[str]:
    separator, text = resolve(argument, values)
    return str(text).split(separator)


_INTRINSICS: dict[str, Callable[[Any, Mapping[str, Any]], Any]] = {
    "Ref": lambda argument, values: _known(values, str(argument)),
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
}


def _known(values: Mapping[str, Any], name: str) -> Any:
    if name not in values:
        raise TemplateError(f"{name} has no value here (a resource that is not deployed?)")
    return values[name]


def function_variables(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's environment variables as declared: Globals.Function's, then its own."""
    return {
        **template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        **template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {}),
    }


def resource(logical_id: str, path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    resources: dict[str, Any] = load_template(path)["Resources"]
    if logical_id not in resources:
        raise KeyError(f"{logical_id} is not a resource in {path.name}")
    return resources[logical_id]  # type: ignore[no-any-return]
