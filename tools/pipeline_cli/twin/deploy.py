"""Deploy template.yaml to the embedded moto server, and wire what moto's CloudFormation skips.

Steps, as `sam package` + `sam deploy` would take them: zip each function's and layer's code
and upload it and the state machine definitions to an artifacts bucket, translate SAM to CloudFormation
(aws-sam-translator), create the stack. moto's CloudFormation then leaves out whole resource
types and some properties (docs/local-twin.md); each is applied here through the
public APIs, FROM the translated template, and `verify` fails the deployment if any resource of
the template is still missing. Nothing is skipped silently.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline_cli.project import PROJECT_ROOT
from pipeline_cli.twin.moto_compat import CloudFormationStack, detach_sqs_event_sources, json_templates_read_as_json
from pipeline_cli.twin.server import Endpoint, moto_account
from pipeline_cli.twin.template import TemplateError, load_template, substitute
from pipeline_cli.twin.translate import translate_template

ARTIFACTS_BUCKET = "pipeline-local-artifacts"


class DeployError(RuntimeError):
    """The stack could not be deployed faithfully."""


@dataclass(frozen=True)
class FunctionSpec:
    """What the router needs to run a function the way Lambda would."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int
    snap_start: bool = False  # SnapStart on published versions: the runner runs its hooks


@dataclass(frozen=True)
class QueueEventSource:
    function: str  # logical id
    queue_arn: str
    queue_url: str
    batch_size: int
    report_batch_item_failures: bool


@dataclass(frozen=True)
class AsyncInvokeConfig:
    max_retry_attempts: int
    on_failure_arn: str | None


@dataclass(frozen=True)
class Schedule:
    logical_id: str
    name: str
    expression: str
    target_arn: str
    input: str
    max_retry_attempts: int
    dead_letter_arn: str | None


@dataclass
class DeployedStack:
    name: str
    endpoint: Endpoint
    template: dict[str, Any]  # the translated CloudFormation template
    parameters: dict[str, str] = field(default_factory=dict)  # every parameter's value, defaults included
    active: set[str] = field(default_factory=set)  # logical ids whose Condition holds
    physical_ids: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    queue_sources: list[QueueEventSource] = field(default_factory=list)
    async_configs: dict[str, AsyncInvokeConfig] = field(default_factory=dict)
    schedules: list[Schedule] = field(default_factory=list)
    state_machines: dict[str, str] = field(default_factory=dict)  # logical id -> ARN
    wired: dict[str, str] = field(default_factory=dict)  # logical id -> what the runner applied

    def function_by_name(self, name_or_arn: str) -> FunctionSpec:
        name = name_or_arn.rsplit(":function:", maxsplit=1)[-1].split(":", maxsplit=1)[0]
        for spec in self.functions.values():
            if name in (spec.name, spec.logical_id):
                return spec
        raise KeyError(f"no function {name_or_arn!r} in stack {self.name}")


# -- packaging --------------------------------------------------------------------------------


def _zip_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def _is_local(location: object) -> bool:
    return isinstance(location, str) and not location.startswith("s3://")


def package(template: dict[str, Any], endpoint: Endpoint) -> tuple[dict[str, Any], dict[str, Path]]:
    """Upload code to the artifacts bucket and point the template at it, as `sam package` does.

    A template `sam package` already made keeps its S3 locations. Returns the packaged template
    and each function's source directory (the router imports the handler from there).
    """
    packaged = copy.deepcopy(template)
    source = load_template()["Resources"]
    s3 = endpoint.client("s3")
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
    code_dirs: dict[str, Path] = {}
    for logical_id, resource in packaged["Resources"].items():
        properties = resource.get("Properties", {})
        kind = resource["Type"]
        code_property = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}.get(
            kind
        )
        if code_property:
            if kind == "AWS::Serverless::Function":
                code_dirs[logical_id] = PROJECT_ROOT / source[logical_id]["Properties"]["CodeUri"]
            if _is_local(properties[code_property]):
                directory = PROJECT_ROOT / properties[code_property]
                s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=f"{logical_id}.zip", Body=_zip_directory(directory))
                properties[code_property] = f"s3://{ARTIFACTS_BUCKET}/{logical_id}.zip"
        elif kind == "AWS::Serverless::StateMachine" and _is_local(properties.get("DefinitionUri")):
            # As sam package does: the file as it is (its ${...} placeholders are not JSON yet).
            definition = (PROJECT_ROOT / properties["DefinitionUri"]).read_bytes()
            s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=f"{logical_id}.asl.json", Body=definition)
            properties["DefinitionUri"] = {"Bucket": ARTIFACTS_BUCKET, "Key": f"{logical_id}.asl.json"}
    return packaged, code_dirs


# -- wiring what moto's CloudFormation skips ---------------------------------------------------


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's LifecycleConfiguration rule -> the S3 API's shape."""
    known = {
        "Id",
        "Status",
        "Prefix",
        "ExpirationInDays",
        "ExpiredObjectDeleteMarker",
        "NoncurrentVersionExpiration",
        "AbortIncompleteMultipartUpload",
    }
    if unknown := set(rule) - known:
        raise DeployError(f"lifecycle rule {rule.get('Id')}: the local runner cannot apply {sorted(unknown)}")
    api: dict[str, Any] = {
        "ID": rule.get("Id", ""),
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    elif rule.get("ExpiredObjectDeleteMarker"):
        api["Expiration"] = {"ExpiredObjectDeleteMarker": True}
    if "NoncurrentVersionExpiration" in rule:
        api["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        api["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return api


def _notification_configuration(configuration: Mapping[str, Any]) -> dict[str, Any]:
    def key_filter(entry: Mapping[str, Any]) -> dict[str, Any]:
        rules = entry.get("Filter", {}).get("S3Key", {}).get("Rules", [])
        return {"Key": {"FilterRules": [{"Name": rule["Name"], "Value": rule["Value"]} for rule in rules]}}

    api: dict[str, Any] = {}
    for cfn_name, api_name, target_cfn, target_api in (
        ("LambdaConfigurations", "LambdaFunctionConfigurations", "Function", "LambdaFunctionArn"),
        ("QueueConfigurations", "QueueConfigurations", "Queue", "QueueArn"),
        ("TopicConfigurations", "TopicConfigurations", "Topic", "TopicArn"),
    ):
        api[api_name] = [
            {target_api: entry[target_cfn], "Events": [entry["Event"]], "Filter": key_filter(entry)}
            for entry in configuration.get(cfn_name, [])
        ]
    return api


def subscribe(sns: Any, properties: Mapping[str, Any]) -> str:
    """SNS Subscribe for an AWS::SNS::Subscription's (resolved) properties; the subscription's ARN."""
    attributes = {
        name: (json.dumps(value) if isinstance(value, dict) else str(value).lower())
        for name, value in properties.items()
        if name in ("RawMessageDelivery", "FilterPolicy", "RedrivePolicy")
    }
    if "FilterPolicyScope" in properties:
        attributes["FilterPolicyScope"] = properties["FilterPolicyScope"]
    arn: str = sns.subscribe(
        TopicArn=properties["TopicArn"],
        Protocol=properties["Protocol"],
        Endpoint=properties["Endpoint"],
        Attributes=attributes,
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return arn


class _Wiring:
    """Applies, per resource type, what moto's CloudFormation did not."""

    def __init__(self, stack: DeployedStack, cloudformation: CloudFormationStack) -> None:
        self.stack = stack
        self.cloudformation = cloudformation
        self.endpoint = stack.endpoint

    def resolve(self, value: Any) -> Any:
        return self.cloudformation.resolve(value)

    def register(self, logical_id: str, physical_id: str, what: str, **attributes: str) -> None:
        self.cloudformation.register(logical_id, physical_id, attributes)
        self.stack.physical_ids[logical_id] = physical_id
        self.stack.wired[logical_id] = what

    def physical_name(self, logical_id: str) -> str:
        return f"{self.stack.name}-{logical_id}"[:64]

    # Types moto's CloudFormation does not create at all.
    def secret(self, logical_id: str, properties: dict[str, Any]) -> None:
        client = self.endpoint.client("secretsmanager")
        spec = properties.get("GenerateSecretString", {})
        if "SecretString" in properties:
            value = properties["SecretString"]
        else:
            value = client.get_random_password(
                PasswordLength=int(spec.get("PasswordLength", 32)),
                ExcludePunctuation=bool(spec.get("ExcludePunctuation", False)),
            )["RandomPassword"]
        arn = client.create_secret(Name=self.physical_name(logical_id), SecretString=value)["ARN"]
        self.register(logical_id, arn, "secret created", Id=arn)

    def queue_policy(self, logical_id: str, properties: dict[str, Any]) -> None:
        sqs = self.endpoint.client("sqs")
        for queue_url in properties["Queues"]:
            sqs.set_queue_attributes(
                QueueUrl=queue_url, Attributes={"Policy": json.dumps(properties["PolicyDocument"])}
            )
        self.register(logical_id, logical_id, "queue policy set")

    def topic_policy(self, logical_id: str, properties: dict[str, Any]) -> None:
        sns = self.endpoint.client("sns")
        for topic_arn in properties["Topics"]:
            policy = json.dumps(properties["PolicyDocument"])
            sns.set_topic_attributes(TopicArn=topic_arn, AttributeName="Policy", AttributeValue=policy)
        self.register(logical_id, logical_id, "topic policy set (moto does not enforce it)")

    def bucket_policy(self, logical_id: str, properties: dict[str, Any]) -> None:
        # Not applied: moto evaluates bucket policy conditions without any request context, so
        # the TLS-only Deny (aws:SecureTransport=false) would deny every request, TLS or not.
        # The policies are checked statically instead (cfn-lint, checkov in `make security`).
        if not properties.get("PolicyDocument", {}).get("Statement"):
            raise DeployError(f"{logical_id}: empty policy document")
        self.register(
            logical_id, properties["Bucket"], "bucket policy NOT enforced locally (moto evaluates it wrongly)"
        )

    def subscription(self, logical_id: str, properties: dict[str, Any]) -> None:
        self.register(logical_id, subscribe(self.endpoint.client("sns"), properties), "subscribed")

    def alarm(self, logical_id: str, properties: dict[str, Any]) -> None:
        name = properties.pop("AlarmName", None) or self.physical_name(logical_id)
        self.endpoint.client("cloudwatch").put_metric_alarm(AlarmName=name, **properties)
        self.register(logical_id, name, "alarm created")

    def version(self, logical_id: str, properties: dict[str, Any]) -> None:
        """moto publishes the version but cannot GetAtt its number: the newest one is it."""
        lambda_ = self.endpoint.client("lambda")
        function = self.stack.function_by_name(properties["FunctionName"])
        versions = lambda_.list_versions_by_function(FunctionName=function.name)["Versions"]
        published = max(int(version["Version"]) for version in versions if version["Version"] != "$LATEST")
        self.register(logical_id, f"{function.arn}:{published}", "version recorded", Version=str(published))

    def alias(self, logical_id: str, properties: dict[str, Any]) -> None:
        created = self.endpoint.client("lambda").create_alias(
            FunctionName=properties["FunctionName"],
            Name=properties["Name"],
            FunctionVersion=properties["FunctionVersion"],
        )
        self.register(logical_id, created["AliasArn"], "alias created")

    def event_invoke_config(self, logical_id: str, properties: dict[str, Any]) -> None:
        self.endpoint.client("lambda").put_function_event_invoke_config(**properties)
        function = self.stack.function_by_name(properties["FunctionName"])
        on_failure = properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        retries = int(properties.get("MaximumRetryAttempts", 2))
        self.stack.async_configs[function.logical_id] = AsyncInvokeConfig(retries, on_failure)
        self.register(logical_id, function.name, "event invoke config set")

    def schedule(self, logical_id: str, properties: dict[str, Any]) -> None:
        name = properties.pop("Name", None) or self.physical_name(logical_id)
        target = properties["Target"]
        self.endpoint.client("scheduler").create_schedule(Name=name, **properties)
        retry = target.get("RetryPolicy", {})
        self.stack.schedules.append(
            Schedule(
                logical_id=logical_id,
                name=name,
                expression=properties["ScheduleExpression"],
                target_arn=target["Arn"],
                input=target.get("Input", "{}"),
                max_retry_attempts=int(retry.get("MaximumRetryAttempts", 185)),
                dead_letter_arn=target.get("DeadLetterConfig", {}).get("Arn"),
            )
        )
        self.register(logical_id, name, "schedule created (fired on demand)")

    # Properties moto's CloudFormation ignores on types it does create.
    def bucket(self, logical_id: str, properties: dict[str, Any]) -> None:
        s3, bucket = self.endpoint.client("s3"), self.stack.physical_ids[logical_id]
        applied = []
        if "VersioningConfiguration" in properties:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=properties["VersioningConfiguration"])
            applied.append("versioning")
        if "PublicAccessBlockConfiguration" in properties:
            s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"]
            )
            applied.append("public access block")
        if "LifecycleConfiguration" in properties:
            rules = [_lifecycle_rule(rule) for rule in properties["LifecycleConfiguration"]["Rules"]]
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
            applied.append("lifecycle")
        if "NotificationConfiguration" in properties:
            s3.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration=_notification_configuration(properties["NotificationConfiguration"]),
            )
            applied.append("notifications")
        if applied:
            self.stack.wired[logical_id] = ", ".join(applied)

    def table(self, logical_id: str, properties: dict[str, Any]) -> None:
        dynamodb, table = self.endpoint.client("dynamodb"), self.stack.physical_ids[logical_id]
        applied = []
        ttl = properties.get("TimeToLiveSpecification")
        if ttl:
            spec = {"Enabled": bool(ttl["Enabled"]), "AttributeName": ttl["AttributeName"]}
            dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification=spec)
            applied.append("TTL (not expired by moto)")
        pitr = properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
        if pitr:
            dynamodb.update_continuous_backups(
                TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
            applied.append("PITR")
        if applied:
            self.stack.wired[logical_id] = ", ".join(applied)

    def kms_key(self, logical_id: str, properties: dict[str, Any]) -> None:
        """moto's CloudFormation stores KeyPolicy as the template's object, which its own
        DescribeKey then cannot read: set it again through the API, as JSON text."""
        if "KeyPolicy" in properties:
            self.endpoint.client("kms").put_key_policy(
                KeyId=self.stack.physical_ids[logical_id],
                PolicyName="default",
                Policy=json.dumps(properties["KeyPolicy"]),
            )
            self.stack.wired[logical_id] = "key policy"

    def state_machine(self, logical_id: str, properties: dict[str, Any]) -> None:
        """moto reads only DefinitionString: fetch the packaged file and substitute, as CloudFormation does."""
        substitutions = properties.get("DefinitionSubstitutions", {})
        location = properties.get("DefinitionS3Location")
        if location is None:
            definition = properties["DefinitionString"]
        else:
            s3_object = self.endpoint.client("s3").get_object(Bucket=location["Bucket"], Key=location["Key"])
            definition = s3_object["Body"].read().decode("utf-8")

        try:
            resolved = substitute(definition, substitutions)
        except TemplateError as error:
            raise DeployError(f"{logical_id}: {error} in DefinitionSubstitutions") from None
        try:
            json.loads(resolved)
        except ValueError as error:
            raise DeployError(f"{logical_id}: the definition is not JSON after substitution: {error}") from None
        arn = self.stack.physical_ids[logical_id]
        stepfunctions = self.endpoint.client("stepfunctions")
        try:
            stepfunctions.update_state_machine(stateMachineArn=arn, definition=resolved)
            self.stack.wired[logical_id] = "definition with substitutions"
        except stepfunctions.exceptions.StateMachineDoesNotExist:
            # moto's CloudFormation reports it created while its create failed (no definition
            # yet): create it under the name it reported, so every reference to it holds.
            created = stepfunctions.create_state_machine(
                name=arn.rsplit(":", 1)[1],
                definition=resolved,
                roleArn=properties["RoleArn"],
                type=properties.get("StateMachineType", "STANDARD"),
            )
            if created["stateMachineArn"] != arn:
                raise DeployError(f"{logical_id}: created as {created['stateMachineArn']}, expected {arn}") from None
            self.stack.wired[logical_id] = "created with its definition and substitutions"
        self.stack.state_machines[logical_id] = arn


_CREATED_BY_RUNNER: dict[str, Callable[[_Wiring, str, dict[str, Any]], None]] = {
    "AWS::SecretsManager::Secret": _Wiring.secret,
    "AWS::SQS::QueuePolicy": _Wiring.queue_policy,
    "AWS::SNS::TopicPolicy": _Wiring.topic_policy,
    "AWS::S3::BucketPolicy": _Wiring.bucket_policy,
    "AWS::SNS::Subscription": _Wiring.subscription,
    "AWS::CloudWatch::Alarm": _Wiring.alarm,
    "AWS::Lambda::EventInvokeConfig": _Wiring.event_invoke_config,
    "AWS::Scheduler::Schedule": _Wiring.schedule,
    "AWS::Lambda::Alias": _Wiring.alias,
}
_COMPLETED_BY_RUNNER: dict[str, Callable[[_Wiring, str, dict[str, Any]], None]] = {
    "AWS::S3::Bucket": _Wiring.bucket,
    "AWS::DynamoDB::Table": _Wiring.table,
    "AWS::StepFunctions::StateMachine": _Wiring.state_machine,
    "AWS::KMS::Key": _Wiring.kms_key,
    "AWS::Lambda::Version": _Wiring.version,
}
# Order matters: secrets before the functions' environment is read, policies before subscriptions.
_WIRING_ORDER = [
    "AWS::KMS::Key",
    "AWS::SecretsManager::Secret",
    "AWS::Lambda::Version",
    "AWS::Lambda::Alias",  # before the notifications and invoke configs that name it
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::SNS::Subscription",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Scheduler::Schedule",
    "AWS::StepFunctions::StateMachine",
    "AWS::CloudWatch::Alarm",
]


# -- deploy -----------------------------------------------------------------------------------


def deploy(
    endpoint: Endpoint,
    stack_name: str = "image-pipeline-local",
    parameter_overrides: Mapping[str, str] | None = None,
    template: dict[str, Any] | None = None,
) -> DeployedStack:
    overrides = dict(parameter_overrides or {})
    packaged, code_dirs = package(template or load_template(), endpoint)
    translated = translate_template(packaged, overrides)
    # moto splits a CommaDelimitedList only when it is passed, not its default: pass them all.
    passed = {
        name: parameter["Default"]
        for name, parameter in translated.get("Parameters", {}).items()
        if parameter.get("Type") == "CommaDelimitedList" and "Default" in parameter
    } | overrides
    cloudformation = endpoint.client("cloudformation")
    with json_templates_read_as_json():
        cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(_without_aliases(translated)),
            Parameters=[{"ParameterKey": key, "ParameterValue": str(value)} for key, value in passed.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
    status = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
    if status != "CREATE_COMPLETE":
        raise DeployError(f"stack {stack_name}: {status}")

    defaults = {name: str(parameter.get("Default", "")) for name, parameter in translated["Parameters"].items()}
    stack = DeployedStack(name=stack_name, endpoint=endpoint, template=translated, parameters=defaults | overrides)
    cloudformation_stack = CloudFormationStack(stack_name, *moto_account())
    for summary in cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]:
        # Some types (layer versions, permissions) have no physical id in moto, but exist.
        stack.physical_ids[summary["LogicalResourceId"]] = summary.get("PhysicalResourceId") or "(created)"

    wiring = _Wiring(stack, cloudformation_stack)
    resources = _active_resources(translated, cloudformation_stack)
    stack.active = set(resources)
    _collect_functions(stack, resources, code_dirs, wiring)
    for kind in _WIRING_ORDER:
        action = _CREATED_BY_RUNNER.get(kind) or _COMPLETED_BY_RUNNER[kind]
        for logical_id, resource in resources.items():
            if resource["Type"] == kind:
                action(wiring, logical_id, wiring.resolve(resource.get("Properties", {})))
    _apply_function_environments(stack, resources, wiring)
    _collect_queue_sources(stack, resources, wiring)
    stack.outputs = {
        name: str(wiring.resolve(output["Value"]))
        for name, output in translated.get("Outputs", {}).items()
        if "Condition" not in output or cloudformation_stack.condition_holds(output["Condition"])
    }
    verify(stack, resources)
    return stack


def _without_aliases(translated: dict[str, Any]) -> dict[str, Any]:
    """The template for moto's CloudFormation, which cannot create Lambda aliases: the runner
    creates them, and for moto what refers to an alias (a permission) refers to its function."""
    resources = translated["Resources"]
    functions = {
        logical_id: resource["Properties"]["FunctionName"]["Ref"]
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::Lambda::Alias"
    }

    def unaliased(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Ref"} and value["Ref"] in functions:
                return {"Fn::GetAtt": [functions[value["Ref"]], "Arn"]}
            return {key: unaliased(item) for key, item in value.items()}
        if isinstance(value, list):
            return [unaliased(item) for item in value]
        return value

    kept = {
        logical_id: unaliased(resource) for logical_id, resource in resources.items() if logical_id not in functions
    }
    return {**translated, "Resources": kept}


def _active_resources(translated: dict[str, Any], cloudformation: CloudFormationStack) -> dict[str, dict[str, Any]]:
    """The template's resources whose Condition holds for these parameters."""
    return {
        logical_id: resource
        for logical_id, resource in translated["Resources"].items()
        if "Condition" not in resource or cloudformation.condition_holds(resource["Condition"])
    }


def _collect_functions(
    stack: DeployedStack, resources: dict[str, dict[str, Any]], code_dirs: dict[str, Path], wiring: _Wiring
) -> None:
    functions = stack.endpoint.client("lambda")
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        configuration = functions.get_function_configuration(FunctionName=stack.physical_ids[logical_id])
        properties = resource["Properties"]
        stack.functions[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=configuration["FunctionName"],
            arn=configuration["FunctionArn"],
            code_dir=code_dirs[logical_id],
            handler=properties["Handler"],
            environment={},  # resolved after wiring: it may refer to resources the runner creates
            timeout_seconds=int(wiring.resolve(properties.get("Timeout", 3))),
            memory_mb=int(wiring.resolve(properties.get("MemorySize", 128))),
            snap_start=wiring.resolve(properties.get("SnapStart", {})).get("ApplyOn") == "PublishedVersions",
        )


def _apply_function_environments(stack: DeployedStack, resources: dict[str, dict[str, Any]], wiring: _Wiring) -> None:
    functions = stack.endpoint.client("lambda")
    for logical_id, spec in list(stack.functions.items()):
        variables = resources[logical_id]["Properties"].get("Environment", {}).get("Variables", {})
        environment = {name: str(value) for name, value in wiring.resolve(variables).items()}
        current = functions.get_function_configuration(FunctionName=spec.name).get("Environment", {}).get("Variables")
        if current != environment:  # moto resolved a Ref to a resource it had not created
            functions.update_function_configuration(FunctionName=spec.name, Environment={"Variables": environment})
        stack.functions[logical_id] = replace(spec, environment=environment)


def _collect_queue_sources(stack: DeployedStack, resources: dict[str, dict[str, Any]], wiring: _Wiring) -> None:
    sqs = stack.endpoint.client("sqs")
    for resource in resources.values():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        properties = wiring.resolve(resource["Properties"])
        queue_arn = properties["EventSourceArn"]
        if ":sqs:" not in queue_arn:
            raise DeployError(f"event source {queue_arn}: the local runner delivers only SQS event sources")
        queue_name = queue_arn.rsplit(":", 1)[1]
        stack.queue_sources.append(
            QueueEventSource(
                function=stack.function_by_name(properties["FunctionName"]).logical_id,
                queue_arn=queue_arn,
                queue_url=sqs.get_queue_url(QueueName=queue_name)["QueueUrl"],
                batch_size=int(properties.get("BatchSize", 10)),
                report_batch_item_failures="ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
            )
        )
        detach_sqs_event_sources(queue_arn)  # the twin's poller delivers, with Lambda's semantics


# How to ask the service whether a resource of each type really exists: moto's CloudFormation
# can report a physical id for something its backend failed to create (it did so for state
# machines), so presence in the stack's resource list is not enough.
_PROBES: dict[str, Callable[[Endpoint, str], Any]] = {
    "AWS::S3::Bucket": lambda e, pid: e.client("s3").head_bucket(Bucket=pid),
    "AWS::DynamoDB::Table": lambda e, pid: e.client("dynamodb").describe_table(TableName=pid),
    "AWS::SQS::Queue": lambda e, pid: e.client("sqs").get_queue_url(QueueName=pid.rsplit("/", 1)[1]),
    "AWS::SNS::Topic": lambda e, pid: e.client("sns").get_topic_attributes(TopicArn=pid),
    "AWS::SNS::Subscription": lambda e, pid: e.client("sns").get_subscription_attributes(SubscriptionArn=pid),
    "AWS::Lambda::Function": lambda e, pid: e.client("lambda").get_function(FunctionName=pid),
    "AWS::Lambda::Alias": lambda e, pid: e.client("lambda").get_alias(
        FunctionName=pid.rsplit(":", 1)[0], Name=pid.rsplit(":", 1)[1]
    ),
    "AWS::Lambda::EventSourceMapping": lambda e, pid: e.client("lambda").get_event_source_mapping(UUID=pid),
    "AWS::IAM::Role": lambda e, pid: e.client("iam").get_role(RoleName=pid),
    "AWS::KMS::Key": lambda e, pid: e.client("kms").describe_key(KeyId=pid),
    "AWS::SecretsManager::Secret": lambda e, pid: e.client("secretsmanager").describe_secret(SecretId=pid),
    "AWS::StepFunctions::StateMachine": lambda e, pid: e.client("stepfunctions").describe_state_machine(
        stateMachineArn=pid
    ),
    "AWS::CloudWatch::Alarm": lambda e, pid: _exactly_one(
        e.client("cloudwatch").describe_alarms(AlarmNames=[pid])["MetricAlarms"], pid
    ),
    "AWS::Scheduler::Schedule": lambda e, pid: e.client("scheduler").get_schedule(Name=pid),
    "AWS::Logs::LogGroup": lambda e, pid: _exactly_one(
        [
            g
            for g in e.client("logs").describe_log_groups(logGroupNamePrefix=pid)["logGroups"]
            if g["logGroupName"] == pid
        ],
        pid,
    ),
}


def _exactly_one(found: list[Any], name: str) -> Any:
    if len(found) != 1:
        raise DeployError(f"{name}: found {len(found)}")
    return found[0]


def verify(stack: DeployedStack, resources: dict[str, dict[str, Any]]) -> None:
    """Every resource of the template exists, created by moto or by the runner: no silent skips.

    Types with a probe are asked for by their physical id; the others (permissions, layer
    versions, policies the runner recorded) count as present when the stack lists them.
    """
    problems = [
        f"{logical_id} ({resource['Type']}): not created"
        for logical_id, resource in resources.items()
        if logical_id not in stack.physical_ids
    ]
    for logical_id, resource in resources.items():
        probe = _PROBES.get(resource["Type"])
        if probe is None or logical_id not in stack.physical_ids:
            continue
        try:
            probe(stack.endpoint, stack.physical_ids[logical_id])
        except Exception as error:  # any failure to find it is the finding
            problems.append(
                f"{logical_id} ({resource['Type']}): reported as {stack.physical_ids[logical_id]}, but {error}"
            )
    if problems:
        raise DeployError("resources missing after deployment:\n  " + "\n  ".join(sorted(problems)))
