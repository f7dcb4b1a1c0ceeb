"""Distributed Map in moto's executor: each gap the backfill meets, shown still open in moto
(these fail when a moto upgrade closes it: then the patch can go), and closed by the twin."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.s3.models import s3_backends
from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3 import (
    ResourceEvalS3,
)

from pipeline_cli.project import PROJECT_ROOT
from pipeline_cli.twin import template
from pipeline_cli.twin.moto_compat import distributed_map_like_aws
from pipeline_cli.twin.template import load_template, parameter_values, resource
from tests.statemachine import create_role

BUCKET = "items"
PARTITION = "aws"  # moto keeps S3 per partition
MOTO_LISTING = staticmethod(ResourceEvalS3._handle_list_objects_v2)


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        yield {"sfn": boto3.client("stepfunctions"), "s3": s3, "role": create_role(boto3.client("iam"), "sfn")}


def distributed_map(poison: str = "$.value", **fields: Any) -> dict[str, Any]:
    """A definition with one DISTRIBUTED Map whose EXPRESS child fails when `poison` is "bad" in its
    input and otherwise passes its input through."""
    child = {
        "StartAt": "Check",
        "States": {
            "Check": {
                "Type": "Choice",
                "Choices": [{"Variable": poison, "StringEquals": "bad", "Next": "Poison"}],
                "Default": "Done",
            },
            "Poison": {"Type": "Fail", "Error": "Poison", "Cause": "a bad item"},
            "Done": {"Type": "Pass", "End": True},
        },
    }
    child["ProcessorConfig"] = {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}
    return {
        "StartAt": "Each",
        "States": {"Each": {"Type": "Map", "ItemProcessor": child, "End": True, **fields}},
    }


def standard_children(definition: dict[str, Any]) -> dict[str, Any]:
    """The same definition with STANDARD children: what moto's grammar takes, to show a later gap."""
    definition["States"]["Each"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = "STANDARD"
    return definition


def run(
    aws: dict[str, Any], definition: dict[str, Any], payload: Any, patched: AbstractContextManager[Any]
) -> dict[str, Any]:
    with patched:
        machine = aws["sfn"].create_state_machine(
            name=f"m{time.monotonic_ns()}", definition=json.dumps(definition), roleArn=aws["role"]
        )
        arn = aws["sfn"].start_execution(stateMachineArn=machine["stateMachineArn"], input=json.dumps(payload))[
            "executionArn"
        ]
        deadline = time.monotonic() + 60  # generous: the machine is shared
        while time.monotonic() < deadline:
            description: dict[str, Any] = aws["sfn"].describe_execution(executionArn=arn)
            # moto sets a finished execution's status a moment before its output
            if description["status"] != "RUNNING" and (description["status"] != "SUCCEEDED" or "output" in description):
                return description
            time.sleep(0.025)
    raise TimeoutError(arn)


def items(*values: str) -> dict[str, Any]:
    return {"items": [{"value": value} for value in values]}


FROM_INPUT = {"ItemsPath": "$.items"}
BATCHER = {"ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"run.$": "$.run", "kind": "test"}}}


# -- ItemBatcher ------------------------------------------------------------------------------


def test_moto_rejects_item_batcher_and_express_children(aws: dict[str, Any]) -> None:
    with pytest.raises(ClientError, match="ItemBatcher"):
        run(aws, distributed_map("$.Items[0]", **FROM_INPUT, **BATCHER), {}, nullcontext())
    with pytest.raises(ClientError, match="EXPRESS"):
        run(aws, distributed_map(**FROM_INPUT), {}, nullcontext())


def test_items_reach_children_in_batches_with_the_batch_input(aws: dict[str, Any]) -> None:
    execution = run(
        aws,
        distributed_map("$.Items[0]", **FROM_INPUT, **BATCHER),
        {**items("a", "b", "c", "d", "e"), "run": "r1"},
        distributed_map_like_aws(),
    )
    assert execution["status"] == "SUCCEEDED"
    batches = json.loads(execution["output"])
    assert [[item["value"] for item in batch["Items"]] for batch in batches] == [["a", "b"], ["c", "d"], ["e"]]
    assert {json.dumps(batch["BatchInput"], sort_keys=True) for batch in batches} == {'{"kind": "test", "run": "r1"}'}


# -- ToleratedFailurePercentage --------------------------------------------------------------


def test_moto_takes_tolerance_only_as_a_float_and_ignores_it(aws: dict[str, Any]) -> None:
    with pytest.raises(ClientError, match="ToleratedFailurePercentage"):
        run(aws, distributed_map(**FROM_INPUT, ToleratedFailurePercentage=5), {}, nullcontext())
    standard = standard_children(distributed_map(**FROM_INPUT, ToleratedFailurePercentage=5.0))
    execution = run(aws, standard, items("bad", "a"), nullcontext())
    assert execution["status"] == "SUCCEEDED"  # 50% failed, 5% tolerated: AWS fails this run


@pytest.mark.parametrize(
    ("tolerated", "values", "status"),
    [
        (None, ["a", "bad", "c"], "FAILED"),  # nothing declared: no failure tolerated
        (0, ["a", "b", "c"], "SUCCEEDED"),
        (25, ["a", "bad", "c", "d"], "SUCCEEDED"),  # 25% failed: not more than tolerated
        (25, ["a", "bad", "bad", "d"], "FAILED"),
    ],
)
def test_a_run_fails_once_failures_exceed_the_tolerated_percentage(
    aws: dict[str, Any], tolerated: int | None, values: list[str], status: str
) -> None:
    tolerance = {} if tolerated is None else {"ToleratedFailurePercentage": tolerated}
    execution = run(aws, distributed_map(**FROM_INPUT, **tolerance), items(*values), distributed_map_like_aws())
    assert execution["status"] == status
    if status == "FAILED":
        assert execution["error"] == "States.ExceedToleratedFailureThreshold"


def test_a_failed_batch_counts_each_of_its_items(aws: dict[str, Any]) -> None:
    # 1 bad item in a batch of 2 of 4 items: 2 items (50%) failed, more than 25%
    definition = distributed_map("$.Items[0]", **FROM_INPUT, **BATCHER, ToleratedFailurePercentage=25)
    # (plain strings: moto's JSONPath reads $.Items[0].value as a list)
    execution = run(aws, definition, {"items": ["bad", "b", "c", "d"], "run": "r"}, distributed_map_like_aws())
    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.ExceedToleratedFailureThreshold"


# -- s3:listObjectsV2 -------------------------------------------------------------------------

LISTING = {
    "ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2", "Parameters": {"Bucket": BUCKET, "Prefix": "up/"}}
}


def test_moto_cannot_pass_on_a_listing(aws: dict[str, Any]) -> None:
    aws["s3"].put_object(Bucket=BUCKET, Key="up/a.jpg", Body=b"a")
    # the parser's gaps closed, the listing's left open
    with distributed_map_like_aws(), mock.patch.object(ResourceEvalS3, "_handle_list_objects_v2", MOTO_LISTING):
        execution = run(aws, distributed_map("$.Key", **LISTING), {}, nullcontext())
    assert execution["status"] == "FAILED"
    assert "datetime" in execution["cause"]


def test_a_listing_reads_every_page_as_aws_items(aws: dict[str, Any]) -> None:
    keys = [f"up/{index:04}.jpg" for index in range(1003)]  # past one ListObjectsV2 page
    account = boto3.client("sts").get_caller_identity()["Account"]
    backend = s3_backends[account][PARTITION]
    for key in keys:  # straight into moto's store: 1,003 PutObject calls would take 20 s
        backend.put_object(BUCKET, key, b"xy")
    aws["s3"].put_object(Bucket=BUCKET, Key="other/z.jpg", Body=b"z")
    in_two_batches = {"ItemBatcher": {"MaxItemsPerBatch": 600, "BatchInput": {"kind": "listing"}}}  # not 1,003 threads
    definition = distributed_map("$.BatchInput.kind", **LISTING, **in_two_batches)
    execution = run(aws, definition, {}, distributed_map_like_aws())
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    listed = [item for batch in json.loads(execution["output"]) for item in batch["Items"]]
    assert [item["Key"] for item in listed] == keys
    assert set(listed[0]) == {"Etag", "Key", "LastModified", "Size", "StorageClass"}
    assert listed[0]["Size"] == 2
    assert isinstance(listed[0]["LastModified"], int)


# -- MANIFEST (S3 Inventory) ------------------------------------------------------------------

INVENTORY = {
    "ItemReader": {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "MANIFEST"},
        "Parameters": {"Bucket": BUCKET, "Key": "inventory/manifest.json"},
    }
}


def put_inventory(s3: Any, rows: list[list[str]]) -> None:
    """An S3 Inventory report: manifest.json naming gzipped CSV data files (two here)."""
    files = []
    for part, chunk in enumerate((rows[: len(rows) // 2], rows[len(rows) // 2 :])):
        key = f"inventory/data/part-{part}.csv.gz"
        s3.put_object(
            Bucket=BUCKET, Key=key, Body=gzip.compress("".join(f'"{a}","{b}","{c}"\n' for a, b, c in chunk).encode())
        )
        files.append({"key": key, "size": 1, "MD5checksum": "0"})
    manifest = {
        "sourceBucket": "ingest",
        "destinationBucket": f"arn:aws:s3:::{BUCKET}",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size",
        "files": files,
    }
    s3.put_object(Bucket=BUCKET, Key="inventory/manifest.json", Body=json.dumps(manifest).encode())


def test_moto_has_no_manifest_input_type(aws: dict[str, Any]) -> None:
    standard = standard_children(distributed_map(**INVENTORY))
    with pytest.raises(ClientError, match="MANIFEST"):
        run(aws, standard, {}, nullcontext())


def test_an_inventory_manifest_yields_one_item_per_object(aws: dict[str, Any]) -> None:
    rows = [["ingest", f"uploads/{index}.jpg", str(index)] for index in range(5)]
    put_inventory(aws["s3"], rows)
    execution = run(aws, distributed_map("$.Key", **INVENTORY), {}, distributed_map_like_aws())
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert json.loads(execution["output"]) == [{"Bucket": b, "Key": k, "Size": s} for b, k, s in rows]


# -- ResultWriter -----------------------------------------------------------------------------

WRITER = {
    "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": BUCKET, "Prefix": "results"}}
}


def result_files(s3: Any, output: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    details = output["ResultWriterDetails"]
    manifest = json.loads(s3.get_object(Bucket=details["Bucket"], Key=details["Key"])["Body"].read())
    return {
        status: [
            entry
            for file in files
            for entry in json.loads(s3.get_object(Bucket=BUCKET, Key=file["Key"])["Body"].read())
        ]
        for status, files in manifest["ResultFiles"].items()
    }


def test_moto_writes_a_manifest_without_results(aws: dict[str, Any]) -> None:
    standard = standard_children(distributed_map(**FROM_INPUT, **WRITER))
    execution = run(aws, standard, items("a"), nullcontext())
    assert result_files(aws["s3"], json.loads(execution["output"])) == {"FAILED": [], "PENDING": [], "SUCCEEDED": []}


def test_the_results_of_every_child_are_written_failed_ones_with_their_error(aws: dict[str, Any]) -> None:
    definition = distributed_map(**FROM_INPUT, **WRITER, ToleratedFailurePercentage=50)
    execution = run(aws, definition, items("a", "bad", "c"), distributed_map_like_aws())
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    written = result_files(aws["s3"], json.loads(execution["output"]))
    assert sorted(json.loads(entry["Output"])["value"] for entry in written["SUCCEEDED"]) == ["a", "c"]
    [failed] = written["FAILED"]
    assert json.loads(failed["Input"]) == {"value": "bad"}
    assert (failed["Error"], failed["Cause"]) == ("Poison", "a bad item")


# -- the deployed definition ------------------------------------------------------------------


def backfill_definition() -> str:
    """statemachines/backfill.asl.json with template.yaml's DefinitionSubstitutions resolved."""
    machine = resource("BackfillStateMachine")["Properties"]
    names = {
        "ThumbnailFunction.Alias": "arn:aws:lambda:us-east-1:123456789012:function:thumbnail:live",
        "ReprocessStepsFunction.Arn": "arn:aws:lambda:us-east-1:123456789012:function:reprocess-steps",
        "ImagesTable": "images",
        "IngestBucket": BUCKET,
        "ArchiveBucket": "archive",
        "ImageEventsTopic": "arn:aws:sns:us-east-1:123456789012:events",
    }
    values = template.resolve(machine["DefinitionSubstitutions"], {**names, **parameter_values(load_template())})
    return template.substitute((PROJECT_ROOT / machine["DefinitionUri"]).read_text(encoding="utf-8"), values)


def test_moto_rejects_the_deployed_backfill_definition(aws: dict[str, Any]) -> None:
    with pytest.raises(ClientError, match=r"ItemBatcher|ExecutionType|ToleratedFailurePercentage"):
        aws["sfn"].create_state_machine(name="backfill", definition=backfill_definition(), roleArn=aws["role"])


def test_the_deployed_backfill_definition_is_stored_as_deployed(aws: dict[str, Any]) -> None:
    deployed = backfill_definition()
    with distributed_map_like_aws():
        arn = aws["sfn"].create_state_machine(name="backfill", definition=deployed, roleArn=aws["role"])[
            "stateMachineArn"
        ]
    assert aws["sfn"].describe_state_machine(stateMachineArn=arn)["definition"] == deployed
