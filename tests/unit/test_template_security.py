"""The template's security promises, checked on what CloudFormation would deploy.

The SAM translation with every optional feature on (the same one `make security` scans with
checkov) is where SAM's generated roles and policies become visible. checkov covers the common
rules; these tests hold the project's own promises, including ones checkov has no check for
(TLS-only bucket policies, a retained log group per function, wildcard-free grants).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_cli.__main__ import main as pipeline
from pipeline_cli.project import TEMPLATE_PATH
from pipeline_cli.twin.template import load_template
from pipeline_cli.twin.translate import ALL_FEATURES, false_conditions, translate_template, with_parameter_defaults

# Actions that support no resource-level permissions: AWS requires Resource "*" for them.
WILDCARD_RESOURCE_ACTIONS = {
    # Step Functions' vended log delivery (Step Functions developer guide, "Logging").
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    # X-Ray segments and sampling; CloudWatch custom metrics (the functions use EMF logs instead).
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "cloudwatch:PutMetricData",
}
# The AWS-managed policies SAM attaches, and why each is acceptable.
SAM_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",  # writing the function's own logs
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",  # Tracing: Active; X-Ray takes no resource ARNs
    # SQS event sources; every role that has it also Denies its actions on any other queue.
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}
# What each of those managed policies grants (their AWS-published documents): checked by the same
# rules as inline policies, so a managed policy can no more hide a wildcard than a statement can.
MANAGED_POLICY_GRANTS = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    },
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    },
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole": {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    },
}
# Granted on "*" by the managed policies above and accepted: X-Ray takes no resource ARNs; a
# function's own log group is named after its generated name, so narrowing the log actions would
# make a circular reference (log group -> function -> role -> log group).
MANAGED_WILDCARD_ACTIONS = {
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "xray:GetSamplingStatisticSummaries",
} | WILDCARD_RESOURCE_ACTIONS
# A "*" in a resource ARN is accepted in one place only: the objects under one fixed key prefix
# of a bucket ("<bucket>/uploads/*"). Anywhere else it is a prefix wildcard: "function:name*"
# also matches "name-evil", "bucket*" every bucket whose name starts so.
OBJECTS_UNDER_A_PREFIX = re.compile(r"^[^*]+/[A-Za-z0-9_.-]+/\*$")
# A Distributed Map's child executions: execution:<machine>/<the Map state's Label>:<id Step Functions picks>.
CHILDREN_OF_A_MAP_STATE = re.compile(r"^arn:[^*]+:states:[^*]+:execution:[^*/]+/[A-Za-z0-9_-]+:\*$")
SQS_POLLER_ACTIONS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
}


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    translated: dict[str, dict[str, Any]] = translate_template(load_template(), ALL_FEATURES)["Resources"]
    return translated


def of_type(resources: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    found = {logical_id: r for logical_id, r in resources.items() if r["Type"] == kind}
    assert found, f"no {kind} in the template"
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from as_list(document["Statement"])


def test_the_scan_sees_every_optional_feature() -> None:
    """checkov leaves out resources whose Condition is false: the scan turns every feature on."""
    assert false_conditions(translate_template(load_template())) != []  # off by default...
    translated = with_parameter_defaults(translate_template(load_template(), ALL_FEATURES), ALL_FEATURES)
    assert false_conditions(translated) == []  # ...and all on for the scan


def test_the_scan_as_written_sees_every_resource_a_loop_makes(tmp_path: Path) -> None:
    """checkov does not expand Fn::ForEach: `make security` scans the template with its loops unrolled."""
    scanned = tmp_path / "template.expanded.json"

    assert pipeline(["translate", "--all-features", "--expand-only", "-o", str(scanned)]) == 0
    written = json.loads(scanned.read_text(encoding="utf-8"))
    assert "\n  Fn::ForEach::" in TEMPLATE_PATH.read_text(encoding="utf-8")  # loops in Resources, as written
    deployed = translate_template(load_template(), ALL_FEATURES)["Resources"]
    looped_kinds = ("AWS::SQS::Queue", "AWS::SQS::QueuePolicy", "AWS::CloudWatch::Alarm")
    assert {name for name, spec in deployed.items() if spec["Type"] in looped_kinds} <= set(written["Resources"])
    assert not any(key.startswith("Fn::ForEach::") for key in written["Resources"])
    assert written["Transform"] == "AWS::Serverless-2016-10-31"
    assert false_conditions(written) == []


def test_every_checkov_skip_in_the_template_says_why() -> None:
    skips = [
        (logical_id, skip)
        for logical_id, resource in load_template()["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for logical_id, skip in skips:
        assert skip["id"].startswith("CKV"), (logical_id, skip)
        assert len(skip.get("comment", "")) >= 40, f"{logical_id} skips {skip['id']} without a real reason"


def test_every_bucket_blocks_public_access_is_encrypted_and_refuses_plain_http(
    resources: dict[str, dict[str, Any]],
) -> None:
    policies = {
        r["Properties"]["Bucket"]["Ref"]: r["Properties"]["PolicyDocument"]
        for r in of_type(resources, "AWS::S3::BucketPolicy").values()
    }
    for logical_id, bucket in of_type(resources, "AWS::S3::Bucket").items():
        properties = bucket["Properties"]
        assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}, logical_id
        assert properties["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}], logical_id
        assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical_id
        tls_only = [
            s
            for s in statements(policies[logical_id])
            if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert len(tls_only) == 1, f"{logical_id} has no TLS-only statement"
        assert tls_only[0]["Principal"] == "*"
        assert tls_only[0]["Action"] == "s3:*"
        assert tls_only[0]["Resource"] == [
            {"Fn::GetAtt": [logical_id, "Arn"]},
            {"Fn::Sub": f"${{{logical_id}.Arn}}/*"},
        ]
        if logical_id != "AccessLogsBucket":
            assert properties["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogsBucket"}


def test_queues_topics_and_tables_are_encrypted_tables_recoverable_and_keys_rotated(
    resources: dict[str, dict[str, Any]],
) -> None:
    for logical_id, queue in of_type(resources, "AWS::SQS::Queue").items():
        properties = queue["Properties"]
        assert properties.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in properties, logical_id
    for logical_id, topic in of_type(resources, "AWS::SNS::Topic").items():
        assert topic["Properties"]["KmsMasterKeyId"], logical_id
    for logical_id, table in of_type(resources, "AWS::DynamoDB::Table").items():
        assert table["Properties"]["SSESpecification"] == {"SSEEnabled": True}, logical_id
        assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    for logical_id, key in of_type(resources, "AWS::KMS::Key").items():
        assert key["Properties"]["EnableKeyRotation"] is True, logical_id


def test_every_function_has_reserved_concurrency_and_a_log_group_with_retention(
    resources: dict[str, dict[str, Any]],
) -> None:
    log_groups = of_type(resources, "AWS::Logs::LogGroup")
    for logical_id, group in log_groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, logical_id
    function_log_names = {json.dumps(group["Properties"].get("LogGroupName")) for group in log_groups.values()}
    for logical_id, function in of_type(resources, "AWS::Lambda::Function").items():
        assert "ReservedConcurrentExecutions" in function["Properties"], f"{logical_id}: no reserved concurrency"
        expected_name = json.dumps({"Fn::Sub": f"/aws/lambda/${{{logical_id}}}"})
        assert expected_name in function_log_names, f"{logical_id}: no log group with retention"


def resource_text(resource: Any) -> str:
    """The ARN text a resource entry spells out ("" for Ref / GetAtt: an exact resource)."""
    if isinstance(resource, str):
        return resource
    if "Fn::Sub" in resource:
        sub = resource["Fn::Sub"]
        return str(sub[0] if isinstance(sub, list) else sub)
    return ""


def wildcard_problems(statement: dict[str, Any], accepted_on_everything: set[str]) -> list[str]:
    """Why an Allow statement grants more than named resources (empty: it does not)."""
    actions = as_list(statement["Action"])
    problems = [f"wildcard action {action}" for action in actions if "*" in action]
    for resource in as_list(statement.get("Resource")):
        text = resource_text(resource)
        if text == "*":
            problems += [f"{action} on *" for action in actions if action not in accepted_on_everything]
        elif "*" in text and not (OBJECTS_UNDER_A_PREFIX.match(text) or CHILDREN_OF_A_MAP_STATE.match(text)):
            problems.append(f"prefix wildcard {text}")
    return problems


def test_wildcard_rules_catch_exact_and_prefix_wildcards() -> None:
    """The rules themselves, on what SAM's LambdaInvokePolicy and S3ReadPolicy expand to."""
    lambda_invoke_policy = {
        "Effect": "Allow",
        "Action": ["lambda:InvokeFunction"],
        "Resource": [{"Fn::Sub": ["arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${n}*", {}]}],
    }
    whole_bucket_read = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [{"Fn::Sub": "arn:aws:s3:::b/*"}]}
    under_uploads = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": {"Fn::Sub": "arn:aws:s3:::b/uploads/*"}}
    assert wildcard_problems(lambda_invoke_policy, set()) != []
    assert wildcard_problems(whole_bucket_read, set()) != []
    assert wildcard_problems({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b"}, set()) != []
    assert wildcard_problems({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}, set()) != []
    assert wildcard_problems(under_uploads, set()) == []
    children = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${AWS::StackName}-backfill/"
    on = {"Effect": "Allow", "Action": "states:StopExecution"}
    assert wildcard_problems({**on, "Resource": {"Fn::Sub": children + "RenderListing:*"}}, set()) == []
    assert wildcard_problems({**on, "Resource": {"Fn::Sub": children + "*"}}, set()) != []  # every execution


def test_roles_grant_no_wildcard_actions_and_wildcard_resources_only_where_aws_requires(
    resources: dict[str, dict[str, Any]],
) -> None:
    for logical_id, role in of_type(resources, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in statements(policy["PolicyDocument"]):
                if statement["Effect"] == "Allow":
                    problems = wildcard_problems(statement, WILDCARD_RESOURCE_ACTIONS)
                    assert problems == [], (logical_id, policy["PolicyName"], problems)
                else:  # a Deny takes away; its actions must still be named
                    assert not any("*" in action for action in as_list(statement["Action"])), logical_id


def test_managed_policies_grant_nothing_on_everything_that_is_not_narrowed(
    resources: dict[str, dict[str, Any]],
) -> None:
    """Each managed policy is one whose grants are known; what it grants on "*" is either an
    action AWS requires "*" for, the function's own logs, or denied outside the role's own resource."""
    for logical_id, role in of_type(resources, "AWS::IAM::Role").items():
        denied_elsewhere = {
            action
            for policy in role["Properties"].get("Policies", [])
            for s in statements(policy["PolicyDocument"])
            if s["Effect"] == "Deny" and "NotResource" in s
            for action in as_list(s["Action"])
        }
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert arn in MANAGED_POLICY_GRANTS, f"{logical_id}: managed policy {arn} grants what this test cannot see"
            grant = {"Effect": "Allow", "Action": sorted(MANAGED_POLICY_GRANTS[arn]), "Resource": "*"}
            problems = wildcard_problems(grant, MANAGED_WILDCARD_ACTIONS | denied_elsewhere)
            assert problems == [], (logical_id, arn, problems)


def test_service_principals_are_scoped_to_this_account_or_resource(resources: dict[str, dict[str, Any]]) -> None:
    """Confused deputy: a grant to an AWS service names whose call it is (aws:SourceArn or
    aws:SourceAccount, or a Lambda permission's SourceArn / SourceAccount)."""
    for logical_id, permission in of_type(resources, "AWS::Lambda::Permission").items():
        properties = permission["Properties"]
        assert "SourceArn" in properties, logical_id
    documents = [
        (logical_id, r["Properties"]["PolicyDocument"])
        for kind in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy")
        for logical_id, r in of_type(resources, kind).items()
    ] + [(logical_id, r["Properties"]["KeyPolicy"]) for logical_id, r in of_type(resources, "AWS::KMS::Key").items()]
    for logical_id, document in documents:
        for statement in statements(document):
            if statement["Effect"] == "Allow" and "Service" in statement["Principal"]:
                conditions = {key for test in statement.get("Condition", {}).values() for key in test}
                assert conditions & {"aws:SourceArn", "aws:SourceAccount"}, (logical_id, statement.get("Sid"))


def test_only_the_pipeline_publishes_image_events_and_only_over_tls(resources: dict[str, dict[str, Any]]) -> None:
    [policy] = of_type(resources, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": "ImageEventsTopic"}]
    by_sid = {s["Sid"]: s for s in statements(policy["Properties"]["PolicyDocument"])}
    publishers = by_sid["PipelinePublishersOnly"]
    assert (publishers["Effect"], publishers["Principal"], publishers["Action"]) == ("Deny", "*", "sns:Publish")
    # Exactly the roles granted sns:Publish on the topic: a publisher left out would be denied on
    # AWS (moto does not enforce topic policies, so the twin would not show it).
    granted = {
        logical_id
        for logical_id, role in of_type(resources, "AWS::IAM::Role").items()
        for policy in role["Properties"].get("Policies", [])
        for statement in statements(policy["PolicyDocument"])
        if statement["Effect"] == "Allow"
        and "sns:Publish" in as_list(statement["Action"])
        and "ImageEventsTopic" in json.dumps(statement["Resource"])
    }
    assert granted >= {"ThumbnailFunctionRole", "BackfillStateMachineRole"}
    excepted = publishers["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    assert sorted(excepted, key=json.dumps) == sorted(
        ({"Fn::GetAtt": [role, "Arn"]} for role in granted), key=json.dumps
    )
    tls = by_sid["DenyInsecureTransport"]
    assert (tls["Effect"], tls["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    assert "sns:Publish" in tls["Action"]


def test_names_are_unique_per_stack_tables_resist_deletion_and_presigned_responses_are_not_traced(
    resources: dict[str, dict[str, Any]],
) -> None:
    for logical_id, schedule in of_type(resources, "AWS::Scheduler::Schedule").items():
        assert "${AWS::StackName}" in resource_text(schedule["Properties"]["Name"]), logical_id
    for logical_id, table in of_type(resources, "AWS::DynamoDB::Table").items():
        assert table["Properties"]["DeletionProtectionEnabled"] is True, logical_id
    variables = resources["UploadUrlFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"  # the response holds a signature and token


def test_managed_policies_are_sams_defaults_and_the_sqs_one_is_narrowed_to_the_own_queue(
    resources: dict[str, dict[str, Any]],
) -> None:
    for logical_id, role in of_type(resources, "AWS::IAM::Role").items():
        managed = set(role["Properties"].get("ManagedPolicyArns", []))
        assert managed <= SAM_MANAGED_POLICIES, (logical_id, managed - SAM_MANAGED_POLICIES)
        if "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole" in managed:
            narrowing = [
                s
                for policy in role["Properties"]["Policies"]
                for s in statements(policy["PolicyDocument"])
                if s["Effect"] == "Deny" and set(as_list(s["Action"])) == SQS_POLLER_ACTIONS and "NotResource" in s
            ]
            assert len(narrowing) == 1, f"{logical_id} may poll every queue in the account"


def test_resource_policies_grant_nothing_to_everyone_and_no_wildcard_actions(
    resources: dict[str, dict[str, Any]],
) -> None:
    documents = [
        (logical_id, r["Properties"]["PolicyDocument"])
        for kind in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy")
        for logical_id, r in of_type(resources, kind).items()
    ] + [(logical_id, r["Properties"]["KeyPolicy"]) for logical_id, r in of_type(resources, "AWS::KMS::Key").items()]
    for logical_id, document in documents:
        for statement in statements(document):
            if statement["Effect"] != "Allow":
                continue  # a Deny with a wildcard (TLS-only) takes away, it grants nothing
            assert statement["Principal"] not in ("*", {"AWS": "*"}), logical_id
            wildcard = [a for a in as_list(statement["Action"]) if "*" in a]
            # The default key policy: the account administers the key through IAM (else it could
            # become unmanageable); IAM policies, which hold no kms:* grant, decide who may use it.
            account_root = {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
            assert not wildcard or (wildcard == ["kms:*"] and statement["Principal"] == account_root), logical_id
