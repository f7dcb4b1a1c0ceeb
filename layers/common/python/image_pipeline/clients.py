"""boto3 clients, created once per container (on first use) and injectable in tests.

Handlers keep one module-level AwsClients; tests and the local runner pass their own. Clients
honour AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE> (botocore), which is how the local runner
points the real handlers at its moto server. Retries use botocore's "standard" mode
(exponential backoff with jitter on throttling and 5xx), then surface to Lambda.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},  # retries after the first attempt: 6 attempts in all
    connect_timeout=5,
    read_timeout=20,
    max_pool_connections=32,
)


class AwsClients:
    """Lazily created boto3 clients sharing one session and one retry policy."""

    def __init__(self, session: boto3.Session | None = None, **client_kwargs: Any) -> None:
        self._session = session
        self._client_kwargs = {"config": BOTO_CONFIG, **client_kwargs}

    @cached_property
    def session(self) -> boto3.Session:
        return self._session or boto3.Session()

    def _client(self, service: str) -> Any:
        return self.session.client(service, **self._client_kwargs)  # type: ignore[call-overload]

    def load_models(self, *services: str) -> None:
        """Parse what creating these clients reads from disk (service models, endpoint rules) into
        the session's cache, without credentials: the clients made here are unsigned throwaways."""
        unsigned = self._client_kwargs["config"].merge(Config(signature_version=UNSIGNED))
        for service in services:
            self.session.client(service, **{**self._client_kwargs, "config": unsigned})  # type: ignore[call-overload]

    @cached_property
    def s3(self) -> S3Client:
        return self._client("s3")  # type: ignore[no-any-return]

    @cached_property
    def s3_presigner(self) -> S3Client:
        """S3 for presigned requests: SigV4, which every region accepts and which signs the
        request's headers (a presigned upload's If-None-Match, Content-Length, Content-Type)."""
        config = self._client_kwargs["config"].merge(Config(signature_version="s3v4"))
        return self.session.client("s3", **{**self._client_kwargs, "config": config})

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        return self._client("dynamodb")  # type: ignore[no-any-return]

    @cached_property
    def sns(self) -> SNSClient:
        return self._client("sns")  # type: ignore[no-any-return]

    @cached_property
    def sqs(self) -> SQSClient:
        return self._client("sqs")  # type: ignore[no-any-return]

    @cached_property
    def lambda_(self) -> LambdaClient:
        return self._client("lambda")  # type: ignore[no-any-return]

    @cached_property
    def secretsmanager(self) -> SecretsManagerClient:
        return self._client("secretsmanager")  # type: ignore[no-any-return]
