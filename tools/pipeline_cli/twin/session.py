"""The whole pipeline on this machine: moto server + deployed stack + real handlers + router."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_cli.twin.delivery import EventRouter
from pipeline_cli.twin.deploy import DeployedStack, deploy
from pipeline_cli.twin.runtime import LocalFunctions
from pipeline_cli.twin.server import Endpoint, embedded_moto

UPLOAD_PREFIX = "uploads/"


@dataclass
class LocalPipeline:
    endpoint: Endpoint
    stack: DeployedStack
    functions: LocalFunctions
    router: EventRouter

    def __post_init__(self) -> None:
        self.s3 = self.endpoint.client("s3")
        self.dynamodb = self.endpoint.client("dynamodb")
        self.sqs = self.endpoint.client("sqs")

    def output(self, name: str) -> str:
        return self.stack.outputs[name]

    def upload(self, name: str, body: bytes) -> str:
        """PUT an object under uploads/ (S3 notifies the thumbnailer); returns its key."""
        key = name if name.startswith(UPLOAD_PREFIX) else UPLOAD_PREFIX + name
        self.s3.put_object(Bucket=self.output("IngestBucketName"), Key=key, Body=body)
        return key

    def items(self) -> list[dict[str, Any]]:
        """Every item of ImagesTable, as plain values (read through its typed record)."""
        from image_pipeline.repository import ImagesRepository

        repository = ImagesRepository(self.dynamodb, self.output("ImagesTableName"))
        return [record.to_dict() for record in repository.scan()]

    def object_keys(self, bucket_output: str, prefix: str = "") -> list[str]:
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.output(bucket_output), Prefix=prefix):
            keys += [entry["Key"] for entry in page.get("Contents", [])]
        return keys

    def read(self, bucket_output: str, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.output(bucket_output), Key=key)["Body"].read()
        return body

    def archived_events(self) -> list[dict[str, Any]]:
        """Every event line in the audit archive (under archive/: the bucket also keeps backfill results)."""
        return [
            json.loads(line)
            for key in self.object_keys("ArchiveBucketName", "archive/")
            for line in self.read("ArchiveBucketName", key).decode().splitlines()
            if line
        ]

    def queue_depth(self, url_output: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.output(url_output), AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


@contextmanager
def local_pipeline(
    parameter_overrides: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    stack_name: str = "image-pipeline-local",
    port: int | None = None,
) -> Iterator[LocalPipeline]:
    """Deploy template.yaml to an embedded moto server (on `port`, else a free one) and route its
    events to the real handlers."""
    with embedded_moto(port) as endpoint:
        stack = deploy(endpoint, stack_name, parameter_overrides)
        functions = LocalFunctions(stack, log_dir)
        router = EventRouter(stack, functions)
        with functions.active(), router.attached():
            yield LocalPipeline(endpoint, stack, functions, router)
