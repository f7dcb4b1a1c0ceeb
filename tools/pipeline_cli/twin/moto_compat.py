"""Every place the twin reaches into moto's internals, and why: the one module to read when moto changes.

moto is the AWS account here, but it leaves gaps the pipeline meets. Each function below closes
one, and tests/unit/test_moto_compat.py holds, per gap, a test that moto still behaves the way
the patch assumes (it fails when a moto upgrade closes the gap or moves the internals, so the
patch can go) and a test of the patched behaviour.

- Lambda runs function code only in Docker: `route_lambda_invocations` hands an Invoke (from
  boto3, moto's Step Functions executor, an in-process server) to a Python handler instead.
- S3 notifications call Lambda synchronously inside PutObject and swallow every error:
  `route_s3_notifications` hands the event to the twin, which invokes asynchronously as S3 does.
- An SQS event source mapping makes moto invoke the function inside SendMessage, whole batches,
  ignoring partial batch responses: `detach_sqs_event_sources` leaves delivery to the twin's poller.
- Step Functions' `states:startExecution` integration lost the mapping of its parameters and
  result onto the API's member names in moto 5's executor: `step_functions_like_aws` restores it.
- Distributed Map (the backfill): ItemBatcher, EXPRESS children, ToleratedFailurePercentage, the
  s3:listObjectsV2 and MANIFEST (S3 Inventory) readers, ResultWriter's files:
  `distributed_map_like_aws`, tested in tests/unit/test_moto_compat_distributed_map.py.
- CloudFormation: the twin creates the resource types moto's CloudFormation skips and needs
  Ref/GetAtt/Conditions to resolve against them: `CloudFormationStack`. moto parses a JSON
  template with PyYAML's pure-Python loader (a second of each deployment): `json_templates_read_as_json`.
- Request handling in the same process: `skip_answered_requests` lets a fault-injection hook
  answer a request instead of moto; `atomic_requests` makes each request atomic, as AWS's are.
- An account deployed once, restored many times: `AccountSnapshot` copies moto's backends after
  a deployment and puts that copy back under a fresh `mock_aws` (tests deploy the template once).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any
from unittest import mock

import botocore.session

from pipeline_cli.twin.runtime import Handler, Invocation, LambdaContext, run_handler

DEFAULT_ACCOUNT_ID = "123456789012"


class UnroutedFunctionError(LookupError):
    """An invoked function has no handler in this process (moto would only have echoed)."""


# -- Lambda -------------------------------------------------------------------------------------


@contextmanager
def route_lambda_invocations(handlers: Mapping[str, Handler]) -> Iterator[list[Invocation]]:
    """While active, moto runs an invoked function by calling `handlers[name]` with the event and
    a Lambda-like context; yields the invocations. An exception becomes Lambda's error payload and
    `FunctionError`, so Step Functions names the error after the exception class (Retry/Catch on
    "TransientError" match) for both Task styles, `arn:aws:states:::lambda:invoke` and a bare ARN.
    """
    from moto.awslambda.models import LambdaFunction

    invocations: list[Invocation] = []
    lock = threading.Lock()

    def invoke(function: Any, event: Any = None) -> tuple[str, bool, str]:
        name = function.function_name
        if name not in handlers:
            raise UnroutedFunctionError(f"no in-process handler for Lambda function {name!r}")
        payload = json.loads(event) if isinstance(event, str | bytes) else (event or {})
        context = LambdaContext(
            function_name=name, memory_limit_in_mb=int(function.memory_size), timeout_seconds=float(function.timeout)
        )
        invocation = run_handler(handlers[name], payload, context, function=name, trigger="lambda:Invoke")
        with lock:
            invocations.append(invocation)
        # (response body, errored, logs) is what moto's Docker runner returns
        body = invocation.error if invocation.failed else invocation.result
        return json.dumps(body, default=str), invocation.failed, ""

    with mock.patch.object(LambdaFunction, "_invoke_lambda", invoke):
        yield invocations


# -- S3 notifications -------------------------------------------------------------------------

S3NotificationTarget = Callable[[str, Any], None]  # (function ARN, event)


@contextmanager
def route_s3_notifications(deliver: S3NotificationTarget) -> Iterator[None]:
    """While active, an S3 notification to a Lambda function goes to `deliver(function_arn, event)`
    (called inside PutObject, with the event moto built from the bucket's configuration)."""

    def notify(account_id: str, event_body: Any, fn_arn: str, region_name: str) -> None:
        deliver(fn_arn, event_body)

    with mock.patch("moto.s3.notifications._invoke_awslambda", notify):
        yield


# -- SQS event source mappings ----------------------------------------------------------------


def detach_sqs_event_sources(queue_arn: str) -> None:
    """Stop moto invoking functions from inside SendMessage for this queue (the twin polls it)."""
    from moto.sqs.models import sqs_backends

    _, _, _, region, account, name = queue_arn.split(":")
    sqs_backends[account][region].queues[name].lambda_event_source_mappings.clear()


# -- Step Functions ---------------------------------------------------------------------------


@cache
def _operation(service: str, action: str) -> Any:
    name = action[:1].upper() + action[1:]  # the ASL's "startExecution" is the API's "StartExecution"
    return botocore.session.get_session().get_service_model(service).operation_model(name)


@contextmanager
def step_functions_like_aws() -> Iterator[None]:
    """`arn:aws:states:::states:startExecution` takes `StateMachineArn`, `Input`, `Name` and returns
    `ExecutionArn`, `StartDate`, as on AWS; the API spells them `stateMachineArn`, ... Without the
    mapping moto's executor fails the state with States.Runtime ('StateMachineArn'). While active,
    both mappings are done again, by the executor's own helpers."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
        StateTaskServiceSfn,
    )

    normalise = StateTaskServiceSfn._normalise_parameters
    normalise_result = StateTaskServiceSfn._normalise_response

    def normalise_to_api_members(
        self: Any,
        parameters: dict[str, Any],
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        normalise(self, parameters, boto_service_name, service_action_name)  # Input to a JSON string
        if service_action_name is None:  # the request, not a sync-pattern poll of describe_execution
            self._to_boto_request(parameters, _operation("stepfunctions", self.resource.api_action).input_shape)

    def normalise_to_sfn_members(
        self: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
    ) -> None:
        normalise_result(self, response, boto_service_name, service_action_name)
        if service_action_name is None:
            self._from_boto_response(response, _operation("stepfunctions", self.resource.api_action).output_shape)

    with (
        mock.patch.object(StateTaskServiceSfn, "_normalise_parameters", normalise_to_api_members),
        mock.patch.object(StateTaskServiceSfn, "_normalise_response", normalise_to_sfn_members),
    ):
        yield


# -- CloudFormation ---------------------------------------------------------------------------


class _TwinResource:
    """Stands in moto's resource map for a resource the twin created, so Ref/GetAtt resolve."""

    def __init__(self, physical_id: str, attributes: Mapping[str, str]) -> None:
        self.physical_resource_id = physical_id
        self._attributes = dict(attributes)

    def get_cfn_attribute(self, name: str) -> str:
        if name not in self._attributes:
            raise KeyError(f"attribute {name} of {self.physical_resource_id} is not known to the local twin")
        return self._attributes[name]


@contextmanager
def json_templates_read_as_json() -> Iterator[None]:
    """While active, moto's CloudFormation reads a JSON template body with the json module: its
    PyYAML parse (JSON is YAML) takes ~1 s for the twin's translated template, json.loads 10 ms.
    A body that is not JSON still goes to moto's YAML parser."""
    from moto.cloudformation.models import Stack

    parse_yaml = Stack.parse_template

    def parse(template: str) -> dict[str, Any]:
        try:
            parsed: dict[str, Any] = json.loads(template)
        except ValueError:
            yaml_parsed: dict[str, Any] = parse_yaml(template)
            return yaml_parsed
        return parsed

    with mock.patch.object(Stack, "parse_template", staticmethod(parse)):
        yield


class CloudFormationStack:
    """A stack moto's CloudFormation created: its intrinsics, Conditions and resource map.

    moto resolves `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::If` ... against the resources it made;
    `register` adds the ones the twin made, so later properties that name them resolve too.
    """

    def __init__(self, name: str, account_id: str, region: str) -> None:
        from moto.cloudformation.models import cloudformation_backends

        self._resource_map = cloudformation_backends[account_id][region].get_stack(name).resource_map

    def resolve(self, value: Any) -> Any:
        from moto.cloudformation.parsing import clean_json

        return clean_json(copy.deepcopy(value), self._resource_map)

    def condition_holds(self, condition: str) -> bool:
        return bool(self._resource_map.lazy_condition_map[condition])

    def register(self, logical_id: str, physical_id: str, attributes: Mapping[str, str]) -> None:
        self._resource_map._parsed_resources[logical_id] = _TwinResource(physical_id, attributes)


# -- requests ---------------------------------------------------------------------------------


@contextmanager
def skip_answered_requests(answered: Callable[[Any], bool]) -> Iterator[None]:
    """While active, moto leaves alone the requests for which `answered(request)` is true.

    botocore calls every `before-send` handler, moto's too: a hook that answered a request with
    an error response (fault injection) must keep moto from also performing it.
    """
    from moto.core.botocore_stubber import BotocoreStubber

    moto_handles = BotocoreStubber.__call__

    def moto_skips_answered(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        return None if answered(request) else moto_handles(self, event_name, request, **kwargs)

    with mock.patch.object(BotocoreStubber, "__call__", moto_skips_answered):
        yield


@contextmanager
def atomic_requests() -> Iterator[None]:
    """Each request is atomic, as the services guarantee (a DynamoDB conditional write checks and
    writes as one step); moto's in-process backends are not, so its requests are serialized.
    Requests from different threads still interleave with each other freely."""
    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.Lock()
    process_request = BotocoreStubber.process_request

    def atomic(self: Any, request: Any) -> Any:
        with lock:
            return process_request(self, request)

    with mock.patch.object(BotocoreStubber, "process_request", atomic):
        yield


# -- Step Functions: Distributed Map ----------------------------------------------------------
#
# moto 5.2.5 runs DISTRIBUTED maps (children inline, in threads) with an s3:getObject CSV/JSON
# ItemReader, but the backfill's definition meets six gaps: its ASL grammar has no ItemBatcher
# and takes only "STANDARD" as the children's ExecutionType;
# ToleratedFailurePercentage parses only as a float token ("5" is a syntax error) and a failed
# child never fails the Map (moto logs "no effect"); the s3:listObjectsV2 reader reads one page
# and passes datetimes the executor cannot serialise; the MANIFEST input type (S3 Inventory) is
# missing; ResultWriter writes a manifest listing no result files. `distributed_map_like_aws`
# closes them. The definition moto stores (and DescribeStateMachine returns) is the deployed one:
# the parser is handed a copy without what it cannot parse, and the parsed Map states get the
# behaviour back.

EXCEEDED_TOLERANCE = "States.ExceedToleratedFailureThreshold"


class _ChildFailed:
    """A child execution's failure, in place of moto's bare None, until the Map run is tallied."""

    def __init__(self, error: str, cause: str) -> None:
        self.error = error
        self.cause = cause


def _is_distributed_map(state: Mapping[str, Any]) -> bool:
    processor = state.get("ItemProcessor")
    return (
        state.get("Type") == "Map"
        and isinstance(processor, dict)
        and processor.get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED"
    )


def _what_moto_parses(definition: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """The definition without what moto's grammar rejects, and per Map state name what was taken."""
    document = json.loads(definition)
    taken: dict[str, dict[str, Any]] = {}

    def walk(states: Mapping[str, Any]) -> None:
        for name, state in states.items():
            if _is_distributed_map(state):
                gaps: dict[str, Any] = {
                    # AWS: no tolerance unless one is declared; moto defaults both to 0 either way
                    "tolerance": {
                        kind: any(name in state for name in (f"ToleratedFailure{kind}", f"ToleratedFailure{kind}Path"))
                        for kind in ("Percentage", "Count")
                    }
                }
                config = state["ItemProcessor"]["ProcessorConfig"]
                if config.get("ExecutionType") == "EXPRESS":
                    config["ExecutionType"] = "STANDARD"  # moto runs every child inline, in a thread
                if "ItemBatcher" in state:
                    gaps["ItemBatcher"] = state.pop("ItemBatcher")
                if isinstance(state.get("ToleratedFailurePercentage"), int):
                    state["ToleratedFailurePercentage"] = float(state["ToleratedFailurePercentage"])
                reader_config = state.get("ItemReader", {}).get("ReaderConfig", {})
                if reader_config.get("InputType") == "MANIFEST":
                    gaps["Manifest"] = True
                    reader_config["InputType"] = "JSON"  # replaced by the manifest reader below
                if name in taken:
                    raise NotImplementedError(f"two Distributed Map states named {name!r}: the twin tells them by name")
                taken[name] = gaps
            for nested in _nested_state_lists(state):
                walk(nested)

    walk(document["States"])
    return json.dumps(document), taken


def _nested_state_lists(state: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for processor in (state.get("ItemProcessor"), state.get("Iterator")):
        if isinstance(processor, dict):
            yield processor.get("States", {})
    for branch in state.get("Branches", []):
        yield branch.get("States", {})


def _state_maps(component: Any) -> Iterator[Any]:
    """Every parsed Map state reachable from a parsed program."""
    from moto.stepfunctions.parser.asl.component.component import Component
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap

    seen: set[int] = set()
    pending = [component]
    while pending:
        value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, StateMap):
            yield value
        if isinstance(value, Component):
            pending.extend(vars(value).values())
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)


def _batches(items: list[Any], batcher: Mapping[str, Any], batch_input: Any) -> list[dict[str, Any]]:
    """Items grouped as AWS hands them to a child: {"Items": [...], "BatchInput": {...}}."""
    if any(name.endswith("Path") for name in batcher):
        raise NotImplementedError("ItemBatcher *Path fields: the twin reads literal values only")
    max_items = int(batcher.get("MaxItemsPerBatch", 0)) or len(items) or 1
    max_bytes = int(batcher.get("MaxInputBytesPerBatch", 0)) or 256 * 1024
    batches: list[list[Any]] = []
    size = 0
    for item in items:
        item_bytes = len(json.dumps(item, separators=(",", ":")))
        if not batches or len(batches[-1]) >= max_items or size + item_bytes > max_bytes:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item_bytes
    envelope = {} if batch_input is None else {"BatchInput": batch_input}
    return [{"Items": batch, **envelope} for batch in batches]


def _batch_input(batcher: Mapping[str, Any], env: Any) -> Any:
    """BatchInput with its "x.$" fields read from the state input ($) or the context object ($$)."""
    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    template = batcher.get("BatchInput")
    if template is None:
        return None
    resolved = {}
    for name, value in template.items():
        if name.endswith(".$"):
            source = env.states.context_object.context_object_data if value.startswith("$$") else env.states.get_input()
            resolved[name[:-2]] = extract_json(value[1:] if value.startswith("$$") else value, source)
        else:
            resolved[name] = value
    return resolved


def _exceeds(failed: int, total: int, declared: Mapping[str, bool], percentage: float, count: int) -> bool:
    """AWS fails the Map run when a declared threshold is exceeded; with none declared, on any failure."""
    if not failed:
        return False
    if not any(declared.values()):
        return True
    return bool(
        (declared.get("Percentage") and failed * 100.0 > percentage * total)
        or (declared.get("Count") and failed > count)
    )


def _s3_client(env: Any) -> Any:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import StateCredentials
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

    details = env.aws_execution_details
    return boto_client_for(details.region, "s3", StateCredentials(role_arn=details.role_arn))


def _write_results(env: Any, result_writer: Any, map_run_record: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    """SUCCEEDED_0.json / FAILED_0.json and manifest.json under Prefix/<map run id>/, as AWS writes them."""
    result_writer.parargs.eval(env=env)
    parameters = env.stack.pop()
    bucket, prefix = parameters["Bucket"], parameters.get("Prefix", "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    folder = f"{prefix}{map_run_record.map_run_arn.split(':')[-1]}/"
    s3 = _s3_client(env)
    files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    for status in ("SUCCEEDED", "FAILED"):
        entries = [record for record in records if record["Status"] == status]
        if entries:
            body = json.dumps(entries).encode()
            key = f"{folder}{status}_0.json"
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            files[status].append({"Key": key, "Size": len(body)})
    manifest = {"DestinationBucket": bucket, "MapRunArn": map_run_record.map_run_arn, "ResultFiles": files}
    s3.put_object(Bucket=bucket, Key=f"{folder}manifest.json", Body=json.dumps(manifest).encode())
    return {
        "MapRunArn": map_run_record.map_run_arn,
        "ResultWriterDetails": {"Bucket": bucket, "Key": f"{folder}manifest.json"},
    }


def _inventory_items(env: Any, manifest_text: str, max_items: int | None) -> list[dict[str, str]]:
    """The objects an S3 Inventory manifest lists: one item per CSV row, named by its fileSchema."""
    import csv
    import gzip
    import io

    manifest = json.loads(manifest_text)
    if manifest.get("fileFormat") != "CSV":
        raise ValueError(f"inventory format {manifest.get('fileFormat')!r}: Step Functions reads CSV inventories only")
    columns = [column.strip() for column in manifest["fileSchema"].split(",")]
    bucket = manifest["destinationBucket"].split(":::")[-1]
    s3 = _s3_client(env)
    items: list[dict[str, str]] = []
    for data_file in manifest["files"]:
        raw = s3.get_object(Bucket=bucket, Key=data_file["key"])["Body"].read()
        text = gzip.decompress(raw).decode() if data_file["key"].endswith(".gz") else raw.decode()
        for row in csv.reader(io.StringIO(text)):
            items.append(dict(zip(columns, row, strict=True)))
            if max_items and len(items) >= max_items:
                return items
    return items


def _child_records(env: Any, jobs: list[Any], outputs: list[Any]) -> list[dict[str, Any]]:
    """One result per child, as ResultWriter's SUCCEEDED/FAILED files hold them."""
    context = env.states.context_object.context_object_data
    records = []
    for index, (job, output) in enumerate(zip(jobs, outputs, strict=True)):
        record = {
            "ExecutionArn": f"{context['Execution']['Id']}:child-{index}",
            "Input": json.dumps(job),
            "Name": f"child-{index}",
            "StateMachineArn": context["StateMachine"]["Id"],
            "Status": "SUCCEEDED",
        }
        if isinstance(output, _ChildFailed):
            record.update(Status="FAILED", Error=output.error, Cause=output.cause)
        else:
            record["Output"] = json.dumps(output)
        records.append(record)
    return records


def _tolerance_exceeded(env: Any, cause: str) -> Exception:
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )

    details: Any = {"mapRunFailedEventDetails": MapRunFailedEventDetails(error=EXCEEDED_TOLERANCE, cause=cause)}
    return FailureEventException(
        FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold),
            event_type=HistoryEventType.MapRunFailed,
            event_details=details,
        )
    )


def _listing_like_aws(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
    """Every page of the listing, each object as AWS's reader gives it (LastModified in epoch seconds)."""
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

    s3 = boto_client_for(resource_runtime_part.region, "s3", state_credentials)
    parameters = env.stack.pop()
    items = []
    for page in s3.get_paginator("list_objects_v2").paginate(**parameters):
        items += [
            {
                "Etag": entry["ETag"],
                "Key": entry["Key"],
                "LastModified": int(entry["LastModified"].timestamp()),
                "Size": entry["Size"],
                "StorageClass": entry.get("StorageClass", "STANDARD"),
            }
            for entry in page.get("Contents", [])
        ]
    env.stack.append(items)


def _results_already_written(self: Any, env: Any) -> None:
    """ResultWriter's own step: the results were written with the Map run's tally (below)."""


@contextmanager
def distributed_map_like_aws() -> Iterator[None]:
    """While active, moto's executor runs Distributed Map states with ItemBatcher and EXPRESS
    children, an enforced ToleratedFailurePercentage/Count, a paginated s3:listObjectsV2 reader, the
    MANIFEST input type, and a ResultWriter that writes the children's results, as AWS does."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3 import (
        ResourceEvalS3,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import distributed_iteration_component
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.result_writer_decl import (
        ResultWriter,
    )
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramError, ProgramTimedOut
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    component_class = distributed_iteration_component.DistributedIterationComponent
    worker_class = distributed_item_processor_worker.DistributedItemProcessorWorker
    parse, map_run, eval_job = AmazonStateLanguageParser.parse, component_class._map_run, worker_class._eval_job

    def parse_like_aws(definition: str) -> Any:
        parsable, taken = _what_moto_parses(definition)
        program, tree = parse(parsable)
        for state in _state_maps(program):
            gaps = taken.get(state.name)
            if gaps is None:
                continue
            component = state.iteration_component
            component.twin_batcher = gaps.get("ItemBatcher")
            component.twin_tolerance = gaps["tolerance"]
            component.twin_result_writer = state.result_writer
            if gaps.get("Manifest"):
                state.item_reader.resource_output_transformer = _ManifestReader()
        return program, tree

    def map_run_like_aws(self: Any, env: Any, eval_input: Any) -> None:
        items = env.stack.pop()
        batcher = getattr(self, "twin_batcher", None)
        jobs = _batches(items, batcher, _batch_input(batcher, env)) if batcher else items
        env.stack.append(jobs)
        map_run(self, env, eval_input)
        outputs = env.stack.pop()
        records = _child_records(env, jobs, outputs)
        failed_items = sum(
            (len(job["Items"]) if batcher else 1)
            for job, output in zip(jobs, outputs, strict=True)
            if isinstance(output, _ChildFailed)
        )
        result_writer = getattr(self, "twin_result_writer", None)
        written = _write_results(env, result_writer, eval_input.map_run_record, records) if result_writer else None
        declared = getattr(self, "twin_tolerance", {})
        percentage, count = eval_input.tolerated_failure_percentage, eval_input.tolerated_failure_count
        if _exceeds(failed_items, len(items), declared, percentage, count):
            raise _tolerance_exceeded(env, f"{failed_items} of {len(items)} items failed, more than tolerated")
        plain = [None if isinstance(output, _ChildFailed) else output for output in outputs]
        env.stack.append(written if written is not None else plain)

    def eval_job_keeping_failures(self: Any, env: Any, job: Any) -> None:
        eval_job(self, env, job)
        state = env.program_state()
        if isinstance(state, ProgramError):
            error = state.error or {}
            job.job_output = _ChildFailed(str(error.get("error", "States.Runtime")), str(error.get("cause", "")))
        elif isinstance(state, ProgramTimedOut):
            job.job_output = _ChildFailed("States.Timeout", "the child execution timed out")

    with (
        mock.patch.object(AmazonStateLanguageParser, "parse", staticmethod(parse_like_aws)),
        mock.patch.object(component_class, "_map_run", map_run_like_aws),
        mock.patch.object(worker_class, "_eval_job", eval_job_keeping_failures),
        mock.patch.object(ResourceEvalS3, "_handle_list_objects_v2", staticmethod(_listing_like_aws)),
        mock.patch.object(ResultWriter, "_eval_body", _results_already_written),
    ):
        yield


class _ManifestReader:
    """Stands in for moto's CSV/JSON output transformer when InputType is MANIFEST."""

    def eval(self, env: Any) -> None:
        reader_config = env.stack.pop()
        manifest_text = env.stack.pop()
        env.stack.append(_inventory_items(env, manifest_text, reader_config.get("MaxItemsValue")))


# -- account snapshots ------------------------------------------------------------------------

_BackendStates = dict[tuple[Any, str, str], dict[str, Any]]  # (BackendDict, account, region) -> state


def _copy_states(states: _BackendStates) -> _BackendStates:
    """The states deep-copied in one pass, so references between services stay shared as in the
    original (the keys, moto's own BackendDicts, are not copied). An SQS queue's lock cannot be
    copied: each copy gets a new one."""
    from moto.sqs.models import Queue

    memo: dict[int, Any] = {}
    for state in states.values():
        for queue in state.get("queues", {}).values():
            if isinstance(queue, Queue):
                memo[id(queue._messages_lock)] = threading.Condition()
    keys = list(states)
    copied = copy.deepcopy([states[key] for key in keys], memo)
    return dict(zip(keys, copied, strict=True))


def _model_classes() -> list[Any]:
    from moto.core.common_models import BaseModel

    found, pending = [], list(BaseModel.__subclasses__())
    while pending:
        model = pending.pop()
        found.append(model)
        pending += model.__subclasses__()
    return found


@dataclass(frozen=True)
class AccountSnapshot:
    """Everything moto's in-process backends hold at one moment: every service, account, region.

    `take` copies the backends' state (e.g. right after a deployment); `restore`, under a later
    `mock_aws` (which starts from an empty account), puts a fresh copy of it back, so each restore
    is independent of what was done after the previous one. moto's own reset does the same thing:
    it replaces each backend's `__dict__`.
    """

    _states: _BackendStates

    @classmethod
    def take(cls) -> AccountSnapshot:
        from moto.core.base_backend import BackendDict

        states = {
            (backends, account, region): backend.__dict__
            for backends in BackendDict._instances  # type: ignore[misc]  # moto declares it so
            for account, regional in backends.items()
            for region, backend in regional.items()
        }
        # moto tracks every model it creates and disposes of them all on reset (closing an S3
        # object's buffer): the snapshot's copies are no live models, so they must not be tracked.
        models = _model_classes()
        tracked = {model: len(model.instances_tracked) for model in models}
        snapshot = cls(_copy_states(states))
        for model in models:
            del model.instances_tracked[tracked[model] :]
        return snapshot

    def restore(self) -> None:
        for (backends, account, region), state in _copy_states(self._states).items():
            backends[account][region].__dict__ = state
