"""The engines users would pick instead, as `pipeline bench` variants: libvips through pyvips
(the `pyvips-binary` wheel) and through sharp (npm, run by node).

Each engine runs both ways, on the same input, sizes, format and quality as the thumbnailer:
  per-size  one decode-resize-encode pipeline per rendition (shrink-on-load every time), the
            way serverless image handlers call them;
  cascade   decode once to the largest rendition, then resize that result for the smaller ones.
Every engine gets one thread and no operation cache. Each runs in a long-lived process of its
own (pyvips_peer.py, sharp_peer.mjs: one protocol), warm like the Python engines beside it, and
times each run itself, so the pipe is not counted. A peer that cannot run here (no pyvips wheel,
no node, npm unreachable) is reported as skipped with the reason, never approximated.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from image_pipeline.imaging import RenditionSpec
from pipeline_cli.project import PROJECT_ROOT

SHARP_VERSION = "0.35.5"  # npm; its prebuilt libvips comes with it
SHARP_DIRECTORY = PROJECT_ROOT / "build" / "peers"
SHARP_SCRIPT = Path(__file__).with_name("sharp_peer.mjs")
WAYS = ("per-size", "cascade")


class PeerError(RuntimeError):
    """The engine refused the input (e.g. a format its build cannot decode)."""


@dataclass(frozen=True)
class PeerRun:
    """One run of a peer: its files (largest first) and its own time for them."""

    files: list[bytes]
    ms: float


Runner = Callable[[bytes, RenditionSpec], PeerRun]


@dataclass
class Peer:
    engine: str  # "pyvips", "sharp"
    version: str = ""  # e.g. "pyvips 3.2.0, libvips 8.18.7"
    skipped: str = ""  # why the engine is not measured here
    runners: dict[str, Runner] = field(default_factory=dict)  # variant name -> run once


def largest_first(spec: RenditionSpec) -> list[int]:
    return sorted(set(spec.sizes), reverse=True)


class PeerProcess:
    """An engine's process, asked over stdin/stdout one JSON line at a time."""

    def __init__(self, command: Sequence[str], env: dict[str, str]) -> None:
        self._stderr: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by close(); a file, not a pipe: it cannot fill up
        self._process = subprocess.Popen(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env
        )
        self._loaded: bytes | None = None

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None  # noqa: PT018
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # it exited: the empty read below says how
        line = self._process.stdout.readline()
        if not line:
            self._stderr.seek(0)
            last_lines = " ".join(self._stderr.read().strip().splitlines()[-2:])
            raise RuntimeError(f"exited with {self._process.wait()}: {last_lines}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise PeerError(" ".join(reply["error"].split()))
        return reply

    def run(self, way: str, data: bytes, spec: RenditionSpec) -> PeerRun:
        if data is not self._loaded:  # sent once per input, before the timed runs (the warm-up call)
            self.ask({"op": "load", "data": base64.b64encode(data).decode("ascii")})
            self._loaded = data
        request = {
            "op": "run",
            "way": way,
            "sizes": largest_first(spec),
            "format": spec.format.lower(),
            "quality": spec.quality,
        }
        reply = self.ask(request)
        return PeerRun([base64.b64decode(output) for output in reply["outputs"]], float(reply["ms"]))

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)
        self._stderr.close()


def usable_on(
    data: bytes, spec: RenditionSpec, runners: Mapping[str, Runner]
) -> tuple[dict[str, Runner], dict[str, str]]:
    """The runners that render this input, and why each other one cannot (its engine's words):
    pyvips-binary's libvips, for one, has no HEVC decoder for HEIC."""
    usable, skipped = {}, {}
    for name, run in runners.items():
        try:
            run(data, spec)
        except PeerError as error:
            skipped[name] = str(error)
        else:
            usable[name] = run
    return usable, skipped


def _started(engine: str, command: Sequence[str], env: dict[str, str]) -> tuple[Peer, PeerProcess | None]:
    """The engine's process and its runners, or the peer marked skipped with what went wrong."""
    try:
        process = PeerProcess(command, env)
        versions = process.ask({"op": "version"})
    except (OSError, RuntimeError, json.JSONDecodeError) as error:
        return Peer(engine, skipped=f"{engine} does not start: {error}"), None
    runners: dict[str, Runner] = {
        f"{engine} {way}": (lambda data, spec, way=way: process.run(way, data, spec))  # type: ignore[misc]
        for way in WAYS
    }
    return Peer(engine, f"{engine} {versions[engine]}, libvips {versions['vips']}", runners=runners), process


def pyvips_peer(python: str = sys.executable) -> tuple[Peer, PeerProcess | None]:
    env = {**os.environ, "VIPS_CONCURRENCY": "1"}
    return _started("pyvips", [python, "-m", "pipeline_cli.perf.pyvips_peer"], env)


def install_sharp(directory: Path = SHARP_DIRECTORY) -> str:
    """npm-install the pinned sharp into build/peers once; returns why it cannot run, or ''."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node and npm are not on PATH"
    manifest = directory / "node_modules" / "sharp" / "package.json"
    if manifest.exists() and json.loads(manifest.read_text(encoding="utf-8")).get("version") == SHARP_VERSION:
        return ""
    directory.mkdir(parents=True, exist_ok=True)
    installed = subprocess.run(
        [npm, "install", "--prefix", str(directory), "--no-audit", "--no-fund", f"sharp@{SHARP_VERSION}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if installed.returncode != 0:
        last_lines = " ".join(installed.stderr.strip().splitlines()[-2:])
        return f"npm install sharp@{SHARP_VERSION} failed: {last_lines}"
    return ""


def sharp_peer(directory: Path = SHARP_DIRECTORY) -> tuple[Peer, PeerProcess | None]:
    reason = install_sharp(directory)
    if reason:
        return Peer("sharp", skipped=reason), None
    node = shutil.which("node") or "node"
    env = {**os.environ, "UV_THREADPOOL_SIZE": "1"}  # libuv's pool runs sharp's work
    return _started("sharp", [node, str(SHARP_SCRIPT), str(directory)], env)


class Peers:
    """The peers this machine can run; a context manager, because each lives in a process."""

    def __init__(self, enabled: bool = True) -> None:
        self.peers: list[Peer] = []
        self._processes: list[PeerProcess] = []
        if enabled:
            for peer, process in (pyvips_peer(), sharp_peer()):
                self.peers.append(peer)
                if process is not None:
                    self._processes.append(process)

    def __enter__(self) -> Peers:
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self._processes:
            process.close()

    @property
    def runners(self) -> dict[str, Runner]:
        return {name: run for peer in self.peers for name, run in peer.runners.items()}

    def describe(self) -> dict[str, str]:
        """Engine -> version, or "skipped: reason"."""
        return {peer.engine: peer.version or f"skipped: {peer.skipped}" for peer in self.peers}
