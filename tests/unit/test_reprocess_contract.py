"""BackfillStateMachine's contract with template.yaml (backfills and reprocess runs): every ${...}
in the ASL is substituted from something the template defines, and the role may touch exactly
what the ASL touches."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from pipeline_cli.twin.template import load_template
from tests import statemachine
from tests.statemachine import ASL_TEXT, MACHINE, PLACEHOLDER, SUBSTITUTIONS, referenced_logical_id

# The substitutions that name a resource or parameter (the others are literals, e.g. UploadPrefix).
REFERENCES = {name: value for name, value in SUBSTITUTIONS.items() if isinstance(value, dict)}


def definition() -> dict[str, Any]:
    """The ASL with parameters at their defaults and each resource as "<SubstitutionName>"."""
    resources = {referenced_logical_id(value): f"<{name}>" for name, value in REFERENCES.items()}
    return statemachine.definition(statemachine.resolve(resources))


def task_states(states: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in states.values():
        if state["Type"] == "Task":
            yield state
        for branch in state.get("Branches", []):
            yield from task_states(branch["States"])
        if "ItemProcessor" in state:
            yield from task_states(state["ItemProcessor"]["States"])


def test_every_placeholder_is_substituted_and_every_substitution_used() -> None:
    placeholders = set(PLACEHOLDER.findall(ASL_TEXT))
    assert placeholders == set(SUBSTITUTIONS)


def test_every_substitution_refers_to_something_the_template_defines() -> None:
    template = load_template()
    for name, value in REFERENCES.items():
        source = referenced_logical_id(value)
        assert source in template["Resources"] or source in template["Parameters"], name


def test_the_definition_is_valid_json_with_retry_and_catch_where_the_issue_asks() -> None:
    states = definition()["States"]
    tasks = list(task_states(states))
    renders = [task for task in tasks if "ThumbnailFunctionArn" in json.dumps(task["Parameters"])]
    assert len(renders) == 3  # the children of the three sources: listing, inventory, reprocess
    for render in renders:
        [retry] = render["Retry"]
        assert set(retry["ErrorEquals"]) == {
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
            "TransientError",
        }
        assert retry["JitterStrategy"] == "FULL"
        assert {"IntervalSeconds", "BackoffRate", "MaxAttempts", "MaxDelaySeconds"} <= set(retry)
    # a reprocess batch failing for good fails its images on their items; a backfill batch fails
    # (counted against the tolerance, redriven)
    [recording] = [render for render in renders if "Catch" in render]
    assert recording["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailures"}]
    for step in ("SelectImages", "RenderSelected", "TallySelected"):  # a reprocess run that fails says so
        assert states[step]["Catch"][0]["Next"] == "DescribeReprocessFailure", step


def test_the_role_may_touch_exactly_what_the_definition_touches() -> None:
    policies = MACHINE["Policies"]
    published = {
        referenced_logical_id(p["SNSPublishMessagePolicy"]["TopicName"])
        for p in policies
        if "SNSPublishMessagePolicy" in p
    }
    statements = [statement for p in policies if "Statement" in p for statement in p["Statement"]]
    invoke_targets = [
        target
        for statement in statements
        if "lambda:InvokeFunction" in statement["Action"]
        for target in statement["Resource"]
    ]
    invoked = {referenced_logical_id(target) for target in invoke_targets}
    updated = {
        referenced_logical_id(statement["Resource"])
        for statement in statements
        if "dynamodb:UpdateItem" in statement["Action"]
    }
    # the Distributed Map starts its children as executions of this very machine
    [started] = [statement["Resource"] for statement in statements if "states:StartExecution" in statement["Action"]]
    tasks = list(task_states(definition()["States"]))
    used: dict[str, set[str]] = {"lambda": set(), "sns": set(), "dynamodb": set()}
    for task in tasks:
        service = task["Resource"].split(":::")[1].split(":")[0]
        parameters = json.dumps(task["Parameters"])
        used[service] |= {referenced_logical_id(SUBSTITUTIONS[name]) for name in re.findall(r"<(\w+)>", parameters)}
    assert used["lambda"] == invoked == {"ThumbnailFunction", "ReprocessStepsFunction"}
    # ThumbnailFunction through its live alias only, as S3 invokes it (what SnapStart restores)
    assert SUBSTITUTIONS["ThumbnailFunctionArn"] == {"Ref": "ThumbnailFunction.Alias"}
    assert [t for t in invoke_targets if referenced_logical_id(t) == "ThumbnailFunction"] == [
        {"Ref": "ThumbnailFunction.Alias"}
    ]
    assert used["sns"] == published == {"ImageEventsTopic"}
    assert used["dynamodb"] == updated == {"ImagesTable"}
    # ... whose ARN the role names through the machine's own Name, and nothing else
    assert started["Fn::Sub"].endswith(":stateMachine:" + MACHINE["Name"]["Fn::Sub"])
    assert {task["Resource"] for task in tasks} == {
        "arn:aws:states:::lambda:invoke",
        "arn:aws:states:::dynamodb:updateItem",
        "arn:aws:states:::sns:publish",
    }
