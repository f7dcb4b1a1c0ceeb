"""AWS failures injected below botocore's retry logic, so the retries under test are the real ones.

`inject(client, "PutObject", THROTTLED)` registers a `before-send` hook (first, so it runs before
moto's) that answers matching requests with an error response in the service's own wire format.
moto never sees those requests (botocore calls every before-send handler, so moto's is told to
skip them): like a request AWS refused, they have no effect. botocore parses the response as if
AWS had sent it, its standard retry mode decides whether to retry and how long to back off, and
sends again; `BackoffRecorder` records those sleeps instead of sleeping. Raising a BaseException
from a hook instead models the process dying mid-request (a Lambda timeout or crash): nothing in
the handler may catch it.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from moto.core.botocore_stubber import MockRawResponse

from pipeline_cli.twin.moto_compat import skip_answered_requests

_ANSWERED = "x-fault-injected"  # marks a request a fault hook answered


@dataclass(frozen=True)
class Fault:
    kind: str  # "throttled" or "5xx"
    status: int
    code: str
    message: str


THROTTLED = {
    "s3": Fault("throttled", 503, "SlowDown", "Please reduce your request rate."),
    "dynamodb": Fault("throttled", 400, "ThrottlingException", "Rate of requests exceeds the allowed throughput."),
    "sns": Fault("throttled", 400, "Throttling", "Rate exceeded"),
}
SERVER_ERROR = {
    "s3": Fault("5xx", 500, "InternalError", "We encountered an internal error. Please try again."),
    "dynamodb": Fault("5xx", 500, "InternalServerError", "Internal server error"),
    "sns": Fault("5xx", 500, "InternalError", "An internal error occurred"),
}


def error_response(service: str, fault: Fault, url: str) -> AWSResponse:
    """The error as each protocol puts it on the wire (rest-xml, JSON 1.0, query)."""
    request_id = "FAULTINJECTED0001"
    if service == "dynamodb":
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{fault.code}", "message": fault.message})
        headers = {"x-amzn-RequestId": request_id, "Content-Type": "application/x-amz-json-1.0"}
    elif service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{fault.code}</Code><Message>{fault.message}</Message><RequestId>{request_id}</RequestId></Error>"
        )
        headers = {"x-amz-request-id": request_id, "Content-Type": "application/xml"}
    else:
        kind = "Receiver" if fault.status >= 500 else "Sender"
        body = (
            '<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
            f"<Error><Type>{kind}</Type><Code>{fault.code}</Code><Message>{fault.message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        headers = {"x-amzn-RequestId": request_id, "Content-Type": "text/xml"}
    return AWSResponse(url, fault.status, headers, MockRawResponse(body))  # type: ignore[arg-type]


@dataclass
class Injection:
    """What one injection saw: attempts per request target (URL; plus the body for JSON APIs)."""

    failures_left: int | None  # None: fail every matching request
    attempts: Counter[str] = field(default_factory=Counter)
    failed: int = 0

    @property
    def total_attempts(self) -> int:
        return sum(self.attempts.values())


def request_target(request: AWSPreparedRequest) -> str:
    body = request.body if isinstance(request.body, bytes) and request.headers.get("X-Amz-Target") else b""
    return f"{request.method} {request.url} {body.decode(errors='replace')}"


@contextmanager
def inject(
    client: Any,
    operation: str,
    fault: Fault | Callable[[], BaseException],
    *,
    times: int | None = None,
    when: Callable[[AWSPreparedRequest], bool] = lambda request: True,
) -> Iterator[Injection]:
    """Fail the first `times` matching requests (all, if None) with `fault`: an error response,
    or an exception raised from the hook (a callable making it)."""
    service = client.meta.service_model.service_id.hyphenize()
    injection = Injection(failures_left=times)
    lock = threading.Lock()  # rendition uploads run in a thread pool

    def hook(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        if not when(request):
            return None
        with lock:
            injection.attempts[request_target(request)] += 1
            if injection.failures_left == 0:
                return None
            if injection.failures_left is not None:
                injection.failures_left -= 1
            injection.failed += 1
        if isinstance(fault, Fault):
            request.headers[_ANSWERED] = "1"
            return error_response(service, fault, request.url)
        raise fault()

    event_name = f"before-send.{service}.{operation}"
    client.meta.events.register_first(event_name, hook)
    try:
        with skip_answered_requests(lambda request: bool(request.headers.get(_ANSWERED))):
            yield injection
    finally:
        client.meta.events.unregister(event_name, hook)


@dataclass
class BackoffRecorder:
    """Stands in for botocore.endpoint's `time` module: records retry delays instead of sleeping."""

    delays: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)


@contextmanager
def crash_after(client: Any, operation: str, crash: Callable[[], BaseException], *, times: int = 1) -> Iterator[None]:
    """Raise `crash` right after the first `times` successful calls: the request took effect,
    the caller never heard (the process died before it could go on)."""
    service = client.meta.service_model.service_id.hyphenize()
    remaining = [times]

    def hook(**_: Any) -> None:
        if remaining[0] > 0:
            remaining[0] -= 1
            raise crash()

    event_name = f"after-call.{service}.{operation}"
    client.meta.events.register_first(event_name, hook)
    try:
        yield
    finally:
        client.meta.events.unregister(event_name, hook)
