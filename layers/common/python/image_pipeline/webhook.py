"""Signed webhook delivery of image events, and the signature check receivers run.

Each event is POSTed as the exact body bytes the topic delivered, with
`X-Pipeline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
The timestamp is signed too, so a receiver can reject replays older than a tolerance.
Several v1= entries may appear (the header format allows it, e.g. during secret rotation);
any one matching is enough. Receivers should dedupe on X-Pipeline-Event-Id: delivery is
at-least-once, even though this sender records each delivered event and skips repeats.

http.client (stdlib) keeps the layer free of an HTTP dependency and cold starts short. Each
request has a total deadline (not only a per-read timeout), and a failed delivery is retried
by SQS with exponential backoff (image_pipeline.backoff).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from image_pipeline.subscriber import DeliveredEvent

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

SIGNATURE_HEADER = "X-Pipeline-Signature"
EVENT_ID_HEADER = "X-Pipeline-Event-Id"
EVENT_TYPE_HEADER = "X-Pipeline-Event-Type"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
USER_AGENT = "image-pipeline-webhook/1"
IDEMPOTENCY_KEY_PREFIX = "webhook-delivery"
_ERROR_BODY_PREVIEW = 200


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    return f"t={timestamp},{SIGNATURE_SCHEME}={compute_signature(secret, timestamp, body)}"


class SignatureError(ValueError):
    """The request is not signed with the shared secret, or too long ago."""


def verify_signature(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    now: float | None = None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check a received request; returns the signed timestamp or raises SignatureError."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == SIGNATURE_SCHEME and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError(f"timestamp {timestamp} is outside the {tolerance_seconds}s tolerance")
    expected = compute_signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("signature does not match the body")
    return timestamp


class WebhookDeliveryError(Exception):
    """The endpoint did not accept the event (non-2xx, timeout, connection failure): retry it."""

    def __init__(self, event_id: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"webhook delivery of event {event_id} failed: {detail}")
        self.event_id = event_id
        self.status = status


@dataclass(frozen=True)
class Delivery:
    event_id: str
    status: int


class _Deadline:
    """Closes the connection's socket when the whole request has taken `seconds`.

    A socket timeout bounds each read only: a receiver trickling a byte at a time (slow loris)
    resets it with every byte and can hold a send for as long as it likes. Shutting the socket
    down from a timer ends any read or write in progress, whatever the receiver does.
    """

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self._connection = connection
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired = True
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._connection.close()


class WebhookSender:
    """POSTs signed event bodies to one URL, each request within a total deadline.

    http.client (stdlib) directly: it never follows redirects (a 3xx fails like any non-2xx, and
    the signed body never goes to a host nobody configured) and it exposes the socket the
    deadline closes. Connections are direct; no proxy is consulted.
    """

    def __init__(
        self,
        url: str,
        secret: Callable[[], str],
        *,
        timeout_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._secret = secret
        self._timeout = timeout_seconds
        self._clock = clock
        parsed = urlsplit(url)
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or ""
        self._port = parsed.port
        self._target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self._tls = ssl.create_default_context() if self._https else None

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._tls)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def send(self, body: bytes, *, event_id: str, event_type: str) -> Delivery:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature_header(self._secret(), body, int(self._clock())),
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: event_type,
        }
        connection = self._connection()
        with _Deadline(connection, self._timeout) as deadline:
            try:
                connection.request("POST", self._target, body=body, headers=headers)
                response = connection.getresponse()
                status = int(response.status)
                preview = b"" if 200 <= status < 300 else response.read(_ERROR_BODY_PREVIEW)
            except (OSError, http.client.HTTPException) as error:
                if deadline.expired:
                    detail = f"no complete answer within the {self._timeout:g} s deadline"
                    raise WebhookDeliveryError(event_id, detail) from None
                raise WebhookDeliveryError(event_id, f"{type(error).__name__}: {error}") from None
        if not 200 <= status < 300:
            text = preview.decode("utf-8", "replace")
            raise WebhookDeliveryError(event_id, f"HTTP {status}: {text!r}", status=status)
        return Delivery(event_id=event_id, status=status)


class WebhookConsumer:
    """Delivers each event at most once per idempotency window (keyed on its event_id).

    A failed delivery deletes the in-progress record (Powertools does this when the wrapped
    function raises), so the retried message is delivered again; a completed one is answered
    from the table without calling the endpoint.
    """

    def __init__(self, sender: WebhookSender, store: DynamoDBPersistenceLayer, config: IdempotencyConfig) -> None:
        self._sender = sender
        self.config = config
        self._deliver_once: Callable[..., dict[str, Any]] = idempotent_function(
            self._deliver,
            data_keyword_argument="message",
            persistence_store=store,
            config=config,
            key_prefix=IDEMPOTENCY_KEY_PREFIX,
        )

    def deliver(self, delivered: DeliveredEvent) -> dict[str, Any]:
        """{"event_id", "status", "duplicate"}: duplicate=True when an earlier delivery succeeded."""
        result = self._deliver_once(delivered=delivered, message=delivered.message)
        return {"duplicate": False, **result}

    def _deliver(self, *, delivered: DeliveredEvent, message: dict[str, Any]) -> dict[str, Any]:
        delivery = self._sender.send(
            delivered.body.encode(), event_id=delivered.event_id, event_type=delivered.event.event_type
        )
        return {"event_id": delivery.event_id, "status": delivery.status}


def mark_duplicate(response: Any, idempotent_data: DataRecord) -> Any:
    """Powertools response hook: a result replayed from the table is a skipped duplicate."""
    return {**response, "duplicate": True} if isinstance(response, dict) else response
