"""ThumbnailFunction in a child process with a memory cap, so hostile inputs cannot hurt the run.

A regression that decodes a decompression bomb must fail a test, not the test run or the
machine. The child process:
- has its own deployed stack (tests.stack) and loads functions/thumbnail/app.py like Lambda does;
- runs under an address-space limit (RLIMIT_AS), so a multi-GB allocation fails in the child;
- measures each case's peak resident memory: VmHWM, reset before the case by writing 5 to
  /proc/self/clear_refs (Linux >= 4.0), minus the resident size when the case started;
- is killed when a case takes longer than a generous timeout, and replaced for the next case.
The parent sends one Upload at a time and gets back everything the case left behind.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import re
import resource
import sys
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

# Where S3 leaves an uploaded object before the event is delivered.
DELETE_VERSION = "delete the version"  # permanently: the event's versionId no longer exists
DELETE_KEY = "delete the key"  # a delete marker; the event carries no versionId (unversioned bucket)

# The child deploys the stack before its first case: a guard against one that never starts, not a
# timing assertion (the machine is shared).
STARTUP_TIMEOUT_SECONDS = 120.0
_PROBES = {"top left": (0.05, 0.05), "centre": (0.5, 0.5)}


@dataclass(frozen=True)
class Upload:
    """One case: the object to upload, the handler settings, and what happens before the event arrives."""

    key: str
    body: bytes
    env: tuple[tuple[str, str], ...] = ()
    before_invoke: str = ""


@dataclass(frozen=True)
class StoredRendition:
    key: str
    width: int
    height: int
    format: str
    content_type: str
    pixels: dict[str, tuple[int, int, int]]  # probe name -> RGB, decoded from the stored object


@dataclass(frozen=True)
class CaseOutcome:
    response: dict[str, Any] | None  # what the handler returned
    error: str | None  # the exception the handler raised instead (type: message)
    item: dict[str, Any] | None
    events: list[dict[str, Any]]  # published to the topic during the case
    renditions: list[StoredRendition] = field(default_factory=list)  # every object under the image's prefix
    peak_mb: float = 0.0  # resident memory the case added at its peak

    @property
    def outcome(self) -> str | None:
        return str(self.response["results"][0]["outcome"]) if self.response else None


class SandboxCrashed(AssertionError):
    """The child process died (or was killed for taking too long) while running a case."""


class HandlerSandbox:
    def __init__(self, *, address_space_headroom_mb: int = 1536, timeout_seconds: float = 30.0) -> None:
        self._headroom_mb = address_space_headroom_mb
        self._timeout = timeout_seconds
        self._context = multiprocessing.get_context("spawn")  # a clean interpreter, no inherited mocks
        self._process: Any = None
        self._connection: Connection | None = None

    def __enter__(self) -> HandlerSandbox:
        self._start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop()

    def run(self, upload: Upload) -> CaseOutcome:
        if self._process is None or not self._process.is_alive():
            self._start()
        assert self._connection is not None
        self._connection.send(upload)
        if not self._connection.poll(self._timeout):
            self._stop()
            raise SandboxCrashed(f"{upload.key}: no result within {self._timeout} s; the child was killed")
        try:
            outcome: CaseOutcome = self._connection.recv()
        except EOFError:
            exit_code = self._process.exitcode if self._process else None
            self._stop()
            raise SandboxCrashed(f"{upload.key}: the child process died (exit code {exit_code})") from None
        return outcome

    def _start(self) -> None:
        self._stop()
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(child, self._headroom_mb), daemon=True)
        self._process.start()
        child.close()
        self._connection = parent
        try:
            ready = parent.poll(STARTUP_TIMEOUT_SECONDS) and parent.recv() == "ready"
        except EOFError:
            ready = False
        if not ready:
            self._stop()
            raise SandboxCrashed("the sandbox did not start")

    def _stop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError):  # the child is gone already
                self._connection.send(None)
            self._connection.close()
            self._connection = None
        if self._process is not None:
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process = None


# ----------------------------------------------------------------------------- the child process


def _memory_mb(field_name: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        found = re.search(rf"^{field_name}:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert found, field_name
    return int(found.group(1)) / 1024


def _reset_peak_memory() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")


def _serve(connection: Connection, headroom_mb: int) -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # moto's fake credentials
        AWS_DEFAULT_REGION="us-east-1",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_NAMESPACE="ImagePipeline",
        POWERTOOLS_SERVICE_NAME="image-pipeline",
    )
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115  # handler logs; errors go to stderr

    from tests.stack import deployed_stack

    with deployed_stack() as stack:
        runner = _CaseRunner(stack)
        runner.handler(())  # import everything a case needs before the cap and the first measurement
        address_space = int((_memory_mb("VmSize") + headroom_mb) * 1024 * 1024)
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        connection.send("ready")
        while (upload := connection.recv()) is not None:
            connection.send(runner.run(upload))


class _CaseRunner:
    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self._handlers: dict[tuple[tuple[str, str], ...], Any] = {}

    def handler(self, env: tuple[tuple[str, str], ...]) -> Any:
        """One 'container' per configuration, created once (like a warm Lambda)."""
        if env not in self._handlers:
            from pipeline_cli.twin.runtime import load_handler

            handler = load_handler("functions/thumbnail", "app.lambda_handler", self.stack.thumbnail_env(**dict(env)))
            sys.modules[handler.__module__].clients = self.stack.clients  # type: ignore[attr-defined]
            self._handlers[env] = handler
        return self._handlers[env]

    def run(self, upload: Upload) -> CaseOutcome:
        from image_pipeline.keys import image_id_for
        from tests.conftest import lambda_context
        from tests.s3events import s3_event_for

        stack = self.stack
        handler = self.handler(upload.env)
        uploaded = stack.put_upload(upload.key, upload.body)
        version_id = uploaded["version_id"]
        if upload.before_invoke == DELETE_VERSION:
            stack.clients.s3.delete_object(Bucket=stack.ingest_bucket, Key=upload.key, VersionId=version_id)
        elif upload.before_invoke == DELETE_KEY:
            stack.clients.s3.delete_object(Bucket=stack.ingest_bucket, Key=upload.key)
            version_id = None
        event = s3_event_for(
            stack.ingest_bucket, upload.key, etag=uploaded["etag"], version_id=version_id, size=uploaded["size"]
        )
        response, error = None, None
        _reset_peak_memory()
        resident_before = _memory_mb("VmRSS")
        try:
            response = handler(event, lambda_context())
        except Exception as raised:  # reported to the parent, which decides what it means
            error = "".join(traceback.format_exception_only(raised)).strip()
        peak_mb = _memory_mb("VmHWM") - resident_before
        image_id = image_id_for(stack.ingest_bucket, upload.key)
        return CaseOutcome(
            response=response,
            error=error,
            item=stack.item(image_id),
            events=stack.published_events(),
            renditions=self._renditions(image_id),
            peak_mb=peak_mb,
        )

    def _renditions(self, image_id: str) -> list[StoredRendition]:
        from PIL import Image

        s3 = self.stack.clients.s3
        bucket = self.stack.renditions_bucket
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"renditions/{image_id}/").get("Contents", [])
        stored = []
        for entry in listing:
            response = s3.get_object(Bucket=bucket, Key=entry["Key"])
            with Image.open(io.BytesIO(response["Body"].read())) as image:
                rgb = image.convert("RGB")
                pixels = {
                    name: rgb.getpixel((int(x * (rgb.width - 1)), int(y * (rgb.height - 1))))
                    for name, (x, y) in _PROBES.items()
                }
                stored.append(
                    StoredRendition(
                        key=entry["Key"],
                        width=image.width,
                        height=image.height,
                        format=str(image.format),
                        content_type=response["ContentType"],
                        pixels=pixels,  # type: ignore[arg-type]
                    )
                )
        return stored
