"""S3's signature check on presigned URLs, in front of moto (which does not check them).

moto stores whatever a presigned URL sends: it verifies no query-string signature, so a request
with another key, a dropped header or a changed Content-Type would land. S3 refuses those (403).
`presigned_refusal` checks a request the way S3's documented SigV4 query authentication does:
expiry, no unsigned x-amz-* header, and the signature recomputed from the request as it arrives
(method, path, query, the signed headers' values). `front_door` serves that check over HTTP and
passes what it admits on to moto, which then applies S3's conditions (If-None-Match: 412).
Requests signed in the Authorization header (boto3's own calls) go straight through.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote

import requests

# Not relayed: hop-by-hop headers, and those the relaying client sets for itself.
_NOT_RELAYED = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "expect"}


def _uri_encode(value: str) -> str:
    return quote(value, safe="-_.~")


def presigned_refusal(
    method: str, path: str, query: str, headers: Mapping[str, str], *, secret_key: str, now: datetime
) -> str | None:
    """Why S3 would refuse this presigned request (an error code and message), or None."""
    params = parse_qsl(query, keep_blank_values=True)
    given = dict(params)
    if given.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        return "AuthorizationQueryParametersError: only AWS4-HMAC-SHA256 is checked here"
    issued = datetime.strptime(given["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if now > issued + timedelta(seconds=int(given["X-Amz-Expires"])):
        return "AccessDenied: Request has expired"
    signed = given["X-Amz-SignedHeaders"].split(";")
    present = {name.lower(): value for name, value in headers.items()}
    if unsigned := sorted(name for name in present if name.startswith("x-amz-") and name not in signed):
        return f"AccessDenied: There were headers present in the request which were not signed: {unsigned}"
    canonical_query = "&".join(
        f"{_uri_encode(name)}={_uri_encode(value)}" for name, value in sorted(params) if name != "X-Amz-Signature"
    )
    canonical_headers = "".join(f"{name}:{' '.join(present.get(name, '').split())}\n" for name in signed)
    canonical_request = "\n".join(
        [method, path, canonical_query, canonical_headers, ";".join(signed), "UNSIGNED-PAYLOAD"]
    )
    _access_key, *scope = given["X-Amz-Credential"].split("/")
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            given["X-Amz-Date"],
            "/".join(scope),
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret_key}".encode()
    for part in scope:
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.get("X-Amz-Signature", "")):
        return "SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided"
    return None


@contextmanager
def front_door(upstream: str, secret_key: str) -> Iterator[str]:
    """An HTTP endpoint that refuses what S3 would refuse of presigned requests, and relays the
    rest to `upstream` (moto's server). Yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            refusal = None
            if "X-Amz-Signature=" in query:
                refusal = presigned_refusal(
                    self.command, path, query, dict(self.headers.items()), secret_key=secret_key, now=datetime.now(UTC)
                )
            if refusal is not None:
                code, _, message = refusal.partition(": ")
                self._reply(403, {"Content-Type": "application/xml"}, _error_xml(code, message))
                return
            relayed = requests.request(
                self.command,
                upstream + self.path,
                headers={name: value for name, value in self.headers.items() if name.lower() not in _NOT_RELAYED},
                data=body,
                allow_redirects=False,
                timeout=30,
            )
            headers = {name: value for name, value in relayed.headers.items() if name.lower() not in _NOT_RELAYED}
            self._reply(relayed.status_code, headers, relayed.content)

        def _reply(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        def log_message(self, format: str, *args: object) -> None:  # the base class's signature
            """Quiet: the tests assert on responses, not on an access log."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _error_xml(code: str, message: str) -> bytes:
    xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{xml}'.encode()
