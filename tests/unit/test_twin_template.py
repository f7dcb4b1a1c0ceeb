"""The twin's reading of template.yaml: Fn::ForEach expanded as CloudFormation does, intrinsics resolved."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline_cli.twin.template import (
    TemplateError,
    expand_language_extensions,
    load_template,
    parameter_values,
    resolve,
    substitute,
)


def template(resources: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    return {
        "Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"],
        "Parameters": parameters,
        "Resources": resources,
    }


def test_for_each_copies_the_fragment_per_item_replacing_the_identifier_in_keys_strings_and_refs() -> None:
    loop = [
        "Queue",
        ["Audit", "Webhook"],
        {
            "${Queue}Alarm": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "Value": {"Fn::GetAtt": [{"Ref": "Queue"}, "QueueName"]},
                    "Name": {"Fn::Sub": "${${Queue}DeadLetterQueue}"},
                    "Label": "&{Queue} queue",
                },
            }
        },
    ]
    expanded = expand_language_extensions(template({"Fn::ForEach::Alarms": loop}))
    assert expanded["Transform"] == "AWS::Serverless-2016-10-31"
    assert set(expanded["Resources"]) == {"AuditAlarm", "WebhookAlarm"}
    assert expanded["Resources"]["WebhookAlarm"]["Properties"] == {
        "Value": {"Fn::GetAtt": ["Webhook", "QueueName"]},
        "Name": {"Fn::Sub": "${WebhookDeadLetterQueue}"},
        "Label": "Webhook queue",
    }


def test_loops_nest_and_take_a_comma_delimited_list_parameter_as_their_collection() -> None:
    inner = ["Metric", ["Errors", "Throttles"], {"${Function}${Metric}Alarm": {"Type": "T", "Properties": {}}}]
    outer = ["Function", {"Ref": "Functions"}, {"Fn::ForEach::Metrics": inner}]
    functions = {"Type": "CommaDelimitedList", "Default": "Thumbnail,Audit"}
    expanded = expand_language_extensions(template({"Fn::ForEach::Functions": outer}, Functions=functions))
    assert sorted(expanded["Resources"]) == [
        "AuditErrorsAlarm",
        "AuditThrottlesAlarm",
        "ThumbnailErrorsAlarm",
        "ThumbnailThrottlesAlarm",
    ]


def test_a_copy_that_collides_with_a_declared_resource_is_an_error() -> None:
    loop = ["Name", ["A"], {"${Name}Queue": {"Type": "AWS::SQS::Queue"}}]
    with pytest.raises(TemplateError, match="AQueue is defined twice"):
        expand_language_extensions(template({"AQueue": {"Type": "AWS::SQS::Queue"}, "Fn::ForEach::Q": loop}))


def test_without_the_transform_the_template_is_left_as_it_is() -> None:
    plain = {"Resources": {"Fn::ForEach::X": ["I", ["A"], {"${I}": {}}]}}
    assert expand_language_extensions(plain) is plain


def test_the_projects_template_has_every_alarm_and_no_loop_left() -> None:
    resources = load_template()["Resources"]
    assert not [name for name in resources if name.startswith("Fn::ForEach")]
    alarms = sorted(name for name, spec in resources.items() if spec["Type"] == "AWS::CloudWatch::Alarm")
    # 16 for the functions, queues and schedule, and BackfillExecutionsFailedAlarm (backfill and
    # reprocess runs: one state machine)
    assert len(alarms) == 17
    assert "BackfillExecutionsFailedAlarm" in alarms
    assert resources["WebhookErrorsAlarm"]["Condition"] == "HasWebhook"
    assert resources["UploadUrlThrottlesAlarm"]["Condition"] == "HasUploadApi"
    assert "Condition" not in resources["ThumbnailErrorsAlarm"]


def test_resolve_evaluates_the_intrinsics_against_known_values() -> None:
    values = {"Bucket": "my-bucket", "Queue.Arn": "arn:aws:sqs:us-east-1:1:q", "Sizes": ["1024", "512"]}
    assert resolve({"Ref": "Bucket"}, values) == "my-bucket"
    assert resolve({"Fn::GetAtt": "Queue.Arn"}, values) == "arn:aws:sqs:us-east-1:1:q"
    assert resolve({"Fn::Sub": "s3://${Bucket}/${Key}"}, values | {"Key": "k"}) == "s3://my-bucket/k"
    assert resolve({"Fn::Sub": ["${Name}-x", {"Name": {"Ref": "Bucket"}}]}, values) == "my-bucket-x"
    assert resolve({"Fn::Join": [",", {"Ref": "Sizes"}]}, values) == "1024,512"
    assert resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}, values) == "b"
    assert resolve({"Name": {"Ref": "Bucket"}}, values) == {"Name": "my-bucket"}


def test_what_cannot_be_resolved_says_what_is_missing() -> None:
    with pytest.raises(TemplateError, match="Table has no value"):
        resolve({"Ref": "Table"}, {})
    with pytest.raises(TemplateError, match=r"\$\{Missing\} has no value"):
        substitute("${Missing}", {})
    with pytest.raises(TemplateError, match="Fn::If is not evaluated"):
        resolve({"Fn::If": ["C", 1, 2]}, {})


def test_parameter_values_take_overrides_and_split_comma_delimited_lists() -> None:
    spec = {"Parameters": {"Sizes": {"Type": "CommaDelimitedList", "Default": "1,2"}, "Url": {"Type": "String"}}}
    assert parameter_values(spec) == {"Sizes": ["1", "2"]}
    assert parameter_values(spec, {"Url": "https://x", "Sizes": "3"}) == {"Sizes": ["3"], "Url": "https://x"}
