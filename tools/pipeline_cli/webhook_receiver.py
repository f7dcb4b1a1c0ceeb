"""A real HTTP receiver on 127.0.0.1 for the demo and webhook tests: verifies signatures, answers as scripted."""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from image_pipeline.webhook import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    SignatureError,
    verify_signature,
)

HANG = -1  # scripted "status": never answer until the test ends (the sender must time out)
_HANG_LIMIT_SECONDS = 30


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    body: bytes
    headers: dict[str, str]
    signature_error: str | None  # None: the signature verified
    status: int  # what the server answered (HANG for no answer)

    @property
    def event_id(self) -> str:
        return self.headers.get(EVENT_ID_HEADER, "")


class WebhookServer:
    """ThreadingHTTPServer in a thread. `script(event_id, 500, 500, 200)` queues answers per event."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.requests: list[ReceivedRequest] = []
        self._scripts: dict[str, deque[int]] = defaultdict(deque)
        self.fail_event_types: set[str] = set()  # answer 500 to every event of these types
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/images"

    def script(self, event_id: str, *statuses: int) -> None:
        with self._lock:
            self._scripts[event_id].extend(statuses)

    def delivered(self, event_id: str) -> list[ReceivedRequest]:
        """Requests for this event that were verified and answered 2xx."""
        return [
            r for r in self.requests if r.event_id == event_id and r.signature_error is None and 200 <= r.status < 300
        ]

    def _answer_for(self, event_id: str) -> int:
        with self._lock:
            queue = self._scripts.get(event_id)
            return queue.popleft() if queue else 200

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = dict(self.headers.items())
                try:
                    verify_signature(server.secret, body, headers.get(SIGNATURE_HEADER))
                    error = None
                    failing = headers.get(EVENT_TYPE_HEADER) in server.fail_event_types
                    status = 500 if failing else server._answer_for(headers.get(EVENT_ID_HEADER, ""))
                except SignatureError as rejected:
                    error, status = str(rejected), 401
                with server._lock:
                    server.requests.append(ReceivedRequest(self.path, body, headers, error, status))
                if status == HANG:
                    server._released.wait(_HANG_LIMIT_SECONDS)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "0")
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: callers read `requests`."""

        return Handler

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
