"""An embedded moto server: the local stand-in for an AWS account, in this process.

In-process on purpose: the runner reaches into moto's backends where CloudFormation support
is missing, and moto's Step Functions executor calls Lambda in this process, where the
router can hand the call to the real handler.

moto's server answers requests on several threads, and its backends are not atomic: it applies
an UpdateItem's clauses one by one, so a Scan served meanwhile can return the item half-written.
AWS's requests are atomic, so the twin serialises each service's requests where that is safe: a
service whose requests never wait on another request of the same service (see ATOMIC_SERVICES).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import requests
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from pipeline_cli.twin.moto_compat import distributed_map_like_aws
from pipeline_cli.twin.runtime import environment

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account

# What a Lambda container would get from its execution role; the values are moto's dummies.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any credentials
    "AWS_SESSION_TOKEN": "testing",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ensure_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise OSError(f"port {port} is not free: {error.strerror}") from None


# One request at a time per service for these. Not the others: an SQS ReceiveMessage may wait
# (long polling) for a SendMessage; a Lambda Invoke runs a handler that calls back into the server;
# Step Functions' executor calls Lambda, DynamoDB and SNS from its own threads.
ATOMIC_SERVICES = frozenset({"dynamodb", "s3"})


class _AtomicRequests(DomainDispatcherApplication):
    """moto's WSGI application, answering the ATOMIC_SERVICES' requests one at a time."""

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._service_locks = {service: threading.Lock() for service in ATOMIC_SERVICES}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        backend_app = self.get_application(environ)
        lock = self._service_locks.get(backend_app.service)  # type: ignore[attr-defined]
        if lock is None:
            response: Iterable[bytes] = backend_app(environ, start_response)
            return response
        with lock:  # the whole response is made inside: moto's backends do their work while it is read
            chunks = backend_app(environ, start_response)
            try:
                return [b"".join(chunks)]
            finally:
                getattr(chunks, "close", lambda: None)()


class _TwinServer:
    """moto's server (as ThreadedMotoServer runs it), with the application answering atomically."""

    def __init__(self, port: int) -> None:
        self._server = make_server(
            "127.0.0.1", port, _AtomicRequests(), threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


@dataclass(frozen=True)
class Endpoint:
    url: str
    region: str = REGION

    def client(self, service: str) -> Any:
        return _client(self.url, self.region, service)

    @property
    def environment(self) -> dict[str, str]:
        """Variables that point every boto3 client created in this process at the endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            **CREDENTIALS,
        }


@functools.cache
def _session(region: str) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=region,
    )


@functools.cache
def _client(url: str, region: str, service: str) -> Any:
    """One client per endpoint and service: creating one costs ~0.1 s of model loading."""
    return _session(region).client(service, endpoint_url=url or None)  # type: ignore[call-overload]


@contextmanager
def embedded_moto(port: int | None = None, extra_env: Mapping[str, str] | None = None) -> Iterator[Endpoint]:
    """Run moto on localhost:PORT for the duration of the block, with Step Functions executing.

    `localhost`, not 127.0.0.1: moto parses S3 bucket names from virtual-host style URLs
    when the host is an IP address.
    """
    # moto announces every request and every resource type its CloudFormation skips; the
    # runner reports what it wires instead, so keep the console for the pipeline's own output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("moto").setLevel(logging.ERROR)
    # moto's Step Functions executor logs every failed execution (NoSuchJsonPathError ...) as an
    # error; the twin reports executions through DescribeExecution, as AWS does.
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message="Tried to parse .* not supported by moto", category=UserWarning)
    if port is None:
        port = free_port()
    else:
        ensure_free(port)  # one clear line for a port in use (make up's 4566 often is)
    server = _TwinServer(port)
    server.start()
    endpoint = Endpoint(f"http://localhost:{port}")
    # moto keeps its backends in this process: start from, and leave, an empty account.
    requests.post(f"{endpoint.url}/moto-api/reset", timeout=10).raise_for_status()
    try:
        response = requests.post(
            f"{endpoint.url}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}},
            timeout=10,
        )
        response.raise_for_status()
        # MOTO_PORT: where moto's own Step Functions executor sends its Lambda/DynamoDB/SNS calls.
        # Distributed Map as on AWS from the first request: CreateStateMachine parses the definition.
        with (
            environment({**endpoint.environment, "MOTO_PORT": str(port), **(extra_env or {})}),
            distributed_map_like_aws(),
        ):
            yield endpoint
    finally:
        requests.post(f"{endpoint.url}/moto-api/reset", timeout=10)
        server.stop()


def moto_account() -> tuple[str, str]:
    """(account id, region) the embedded server keeps its backends under."""
    return os.environ.get("MOTO_ACCOUNT_ID", ACCOUNT_ID), REGION
