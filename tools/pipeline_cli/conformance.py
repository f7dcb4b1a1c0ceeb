"""The conformance suite: the thumbnailer on ~1,100 real-world files nobody here made
(`pipeline conformance`, in pipeline_cli.commands.conformance, runs it).

The corpus is the test images that Pillow's and pi-heif's source distributions ship (odd
encodings, every orientation, CMYK/LAB/ICC, colour keys, animation, 16-bit, damaged and hostile
files), downloaded once with `pip download --no-binary :all:` and cached, never committed.

Each file runs in a worker process (a hang is killed after --timeout, a crash is a crash, peak
memory is measured per file) and gets a verdict against an independent reference: plain Pillow
with every plugin, ImageOps.exif_transpose, the embedded ICC profile converted to sRGB and
transparency flattened on white. A file passes when it
  - ends SUCCEEDED, upright at the reference's displayed size, with the reference's colours
    (PSNR of the two, both reduced to fit 64x64, at least MIN_PSNR_DB), or
  - ends FAILED with a reason that is true: damaged for files the reference cannot decode either,
    unsupported_format / too_many_pixels for files we refuse on purpose.
docs/conformance.md explains the rules.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import multiprocessing
import os
import subprocess
import sys
import tarfile
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from image_pipeline.errors import ImageRejected
from image_pipeline.imaging import RenditionSpec, encode_renditions, fit_within, resample

MIN_PSNR_DB = 30.0  # both reduced to fit 64x64: a wrong rotation, colour key or profile scores far below
COMPARE_BOX = 64
SPEC = RenditionSpec(sizes=(1024, 512, 128))  # the template's defaults
# Refusals that are policy, not damage: the reference may well decode these files.
POLICY_REASONS = frozenset({"unsupported_format", "too_many_pixels", "empty"})
# Peak memory per file, over the process before it: bounded by the pixel limit. The largest decode in
# the corpus, a 33 MP 10-bit HEIF (libheif holds 16-bit planes while converting), peaks at ~630 MB;
# ThumbnailFunction has 1769 MB. A JPEG of 50 MP (draft-decoded) stays under 100 MB.
MEMORY_BUDGET_MB = 768
# ThumbnailFunction's Timeout. Time is judged as CPU seconds, which on this shared machine say
# more than wall time, and on Lambda's one vCPU are the wall time; a wall-clock hang limit
# (--timeout) only catches what never finishes.
FUNCTION_TIMEOUT_S = 60


@dataclass(frozen=True)
class Sdist:
    """A source distribution on PyPI whose test images join the corpus."""

    name: str
    version: str
    images: str  # folder inside the archive, below its top directory
    licence: str

    @property
    def archive_prefix(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}"


SOURCES = (
    Sdist("pillow", "13.0.0", "Tests/images/", "MIT-CMU (HPND), Pillow's LICENSE; third-party notes in its Tests/"),
    Sdist("pi-heif", "1.4.0", "tests/images/", "BSD-3-Clause, pi-heif's LICENSE.txt"),
)


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "image-pipeline" / "conformance"


def fetch(cache: Path, sources: Iterable[Sdist] = SOURCES) -> Path:
    """Download each sdist once (pip's own client), extract its test images; the folder of files."""
    files = cache / "files"
    for source in sources:
        target = files / source.name
        if (target / ".complete").exists():
            continue
        archives = cache / "sdists"
        archives.mkdir(parents=True, exist_ok=True)
        found = list(archives.glob(f"{source.archive_prefix}.tar.gz")) or list(
            archives.glob(f"{source.name}-{source.version}.tar.gz")
        )
        if not found:
            subprocess.run(
                [
                    *(sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps"),
                    *(f"{source.name}=={source.version}", "--dest", str(archives)),
                ],
                check=True,
            )
            found = [p for p in archives.glob("*.tar.gz") if p.name.lower().startswith(source.archive_prefix.lower())]
        _extract(found[0], source.images, target)
        (target / ".complete").write_text(source.licence + "\n", encoding="utf-8")
    return files


def _extract(archive: Path, folder: str, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            _, _, inside = member.name.partition("/")
            if member.isfile() and inside.startswith(folder):
                relative = inside[len(folder) :]
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                extracted = tar.extractfile(member)
                if extracted is not None:
                    destination.write_bytes(extracted.read())


def corpus_files(folder: Path) -> list[Path]:
    """Every file once: identical bytes under two names are checked under the first."""
    seen: set[str] = set()
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            files.append(path)
    return files


# -- the independent reference ------------------------------------------------------------------


@functools.cache
def _all_plugins() -> None:
    from pi_heif import register_heif_opener

    register_heif_opener()
    Image.init()


def reference(data: bytes) -> Image.Image:
    """Plain Pillow: every plugin, full decode, exif_transpose, ICC to sRGB, flattened on white."""
    from PIL import ImageCms

    _all_plugins()
    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, SPEC.max_pixels
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            profile = opened.info.get("icc_profile")
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        image = _grey_8bit(image)
    if image.mode == "1":
        image = image.convert("L")
    if image.mode in ("RGBA", "LA", "PA", "P", "L", "RGB") and (
        "A" in image.mode or "transparency" in image.info or image.mode in ("P", "PA")
    ):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", image.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    if profile and image.mode in ("RGB", "CMYK", "L"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                image = converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unusable profile: values as they are (what a browser shows)
    if image.mode == "LAB":
        lab = ImageCms.createProfile("LAB")
        image = ImageCms.profileToProfile(image, lab, ImageCms.createProfile("sRGB"), outputMode="RGB") or image
    return image.convert("RGB")


def _grey_8bit(image: Image.Image) -> Image.Image:
    """16-bit (or float) grey to 8 bits with numpy; a tRNS key on the 16-bit values becomes alpha."""
    import numpy as np

    values = np.asarray(image.convert("I") if image.mode != "F" else image, dtype=np.float64)
    grey = Image.fromarray((values / (256 if image.mode != "F" else 1)).clip(0, 255).astype(np.uint8), "L")
    key = image.info.get("transparency")
    if isinstance(key, int) and image.mode != "F":
        grey.putalpha(Image.fromarray(np.where(values == key, 0, 255).astype(np.uint8), "L"))
    return grey


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR over RGB of two images reduced to the same small size."""
    from PIL import ImageChops

    size = fit_within(b.width, b.height, COMPARE_BOX)
    small_a = a.convert("RGB").resize(size, Image.Resampling.BOX)
    small_b = b.convert("RGB").resize(size, Image.Resampling.BOX)
    histogram = ImageChops.difference(small_a, small_b).histogram()
    squared = sum(count * (value % 256) ** 2 for value, count in enumerate(histogram))
    mse = squared / (size[0] * size[1] * 3)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


# -- verdicts -----------------------------------------------------------------------------------


@dataclass
class Verdict:
    name: str
    bytes: int
    outcome: str  # SUCCEEDED, FAILED, CRASH, HANG
    reason: str = ""
    detail: str = ""
    size: str = ""  # the source's displayed size as the thumbnailer reports it
    frames: int = 1
    reference: str = ""  # "WxH" the reference decoded, or its error
    psnr_db: float | None = None
    peak_mb: float = 0.0
    ms: float = 0.0
    cpu_ms: float = 0.0  # every thread's CPU time: the wall time on Lambda's one vCPU (1769 MB)
    ok: bool = False
    why: str = ""  # what makes it right, or what is wrong


def render(name: str, data: bytes) -> tuple[Verdict, Image.Image | None]:
    """What the handler does with the bytes: the verdict's outcome, and the largest rendition's
    pixels before encoding (what the method made; JPEG's own loss on a 3x1 image is not its fault)."""
    verdict = Verdict(name=name, bytes=len(data), outcome="SUCCEEDED")
    started, cpu_started = time.perf_counter(), time.process_time()
    largest = None
    try:
        resampled = resample(data, SPEC)
        result = encode_renditions(resampled, SPEC)  # what make_renditions does, keeping the pixels
        verdict.size = f"{result.source.width}x{result.source.height}"
        verdict.frames = result.source.frames
        largest = resampled.images[0][1]
    except ImageRejected as rejection:
        verdict.outcome, verdict.reason, verdict.detail = "FAILED", rejection.reason.value, rejection.detail
    except Exception as error:  # anything else is the bug this suite exists to find
        verdict.outcome, verdict.detail = "CRASH", f"{type(error).__name__}: {error}"
    verdict.ms = (time.perf_counter() - started) * 1000
    verdict.cpu_ms = (time.process_time() - cpu_started) * 1000
    return verdict, largest


def judge(verdict: Verdict, largest: Image.Image | None, data: bytes) -> Verdict:
    """Decode like plain Pillow does, and say whether the outcome is right."""
    try:
        expected: Image.Image | None = reference(data)
        verdict.reference = f"{expected.width}x{expected.height}" if expected else ""
    except Exception as error:  # the reference refusing a file is information
        expected = None
        verdict.reference = f"{type(error).__name__}: {error}"[:200]
    verdict.ok, verdict.why = _judge(verdict, largest, expected, data)
    return verdict


def check(name: str, data: bytes) -> Verdict:
    verdict, largest = render(name, data)
    return judge(verdict, largest, data)


def _judge(
    verdict: Verdict, largest: Image.Image | None, expected: Image.Image | None, data: bytes
) -> tuple[bool, str]:
    if verdict.outcome == "CRASH":
        return False, "crashed: not a rejection with a reason"
    if verdict.outcome == "FAILED":
        return _judge_refusal(verdict, expected, data)
    if expected is None or largest is None:
        return False, "SUCCEEDED, but plain Pillow cannot decode it: a damaged file rendered anyway"
    want = fit_within(expected.width, expected.height, SPEC.sizes[0])
    if largest.size != want:
        return False, f"rendered {largest.width}x{largest.height}, the reference displays as {want[0]}x{want[1]}"
    verdict.psnr_db = psnr(_flattened(largest), expected)
    if verdict.psnr_db < MIN_PSNR_DB:
        return False, f"colours or orientation differ from the reference (PSNR {verdict.psnr_db:.1f} dB)"
    return True, "upright, reference colours"


def _judge_refusal(verdict: Verdict, expected: Image.Image | None, data: bytes) -> tuple[bool, str]:
    if expected is None:
        return True, "refused; plain Pillow cannot decode it either"
    if verdict.reason in POLICY_REASONS:
        return True, f"refused on purpose ({verdict.reason})"
    unsigned = _format_without_signature(data)
    if verdict.reason == "not_an_image" and unsigned:
        return True, f"refused: {unsigned} has no signature to be recognised by, and is not a format we accept"
    return False, f"refused as {verdict.reason}, but plain Pillow decodes it"


def _flattened(image: Image.Image) -> Image.Image:
    if "A" not in image.mode:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", image.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def _format_without_signature(data: bytes) -> str | None:
    """The format plain Pillow reads the bytes as, when its plugin has no magic number (TGA, IM...)."""
    _all_plugins()
    try:
        with Image.open(io.BytesIO(data)) as opened:
            name = opened.format
    except Exception:
        return None
    return name if name and Image.OPEN.get(name, (None, None))[1] is None else None


# -- worker processes: a hang is killed, a crash is contained, memory is measured ----------------


def _rss_kb(field: str) -> int:
    status = Path("/proc/self/status").read_text(encoding="ascii")
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith(field + ":"))


def _serve(connection: Connection) -> None:
    warnings.filterwarnings("ignore", category=UserWarning)  # Pillow on odd files; verdicts say what matters
    while True:
        request = connection.recv()
        if request is None:
            return
        name, path = request
        data = Path(path).read_bytes()
        measurable = Path("/proc/self/clear_refs").exists()
        if measurable:
            Path("/proc/self/clear_refs").write_text("5", encoding="ascii")  # resets VmHWM
            before = _rss_kb("VmRSS")
        verdict, largest = render(name, data)
        if measurable:  # the thumbnailer's peak alone: the reference decodes in full, and after it
            verdict.peak_mb = max(0, _rss_kb("VmHWM") - before) / 1024
        connection.send(asdict(judge(verdict, largest, data)))


class Worker:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), daemon=True)
        self._process.start()

    def run(self, name: str, path: Path, timeout: float) -> Verdict:
        self._connection.send((name, str(path)))
        if not self._connection.poll(timeout):
            self.stop(kill=True)
            return Verdict(name, path.stat().st_size, "HANG", detail=f"no answer within {timeout:.0f} s")
        try:
            return Verdict(**self._connection.recv())
        except EOFError:
            code = self._process.exitcode
            self.stop(kill=True)
            return Verdict(name, path.stat().st_size, "CRASH", detail=f"the worker died (exit code {code})")

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def stop(self, *, kill: bool = False) -> None:
        if kill:
            self._process.kill()
        elif self._process.is_alive():
            self._connection.send(None)
        self._process.join(timeout=10)


def run_checks(files: dict[str, Path], timeout: float, progress: Any = None) -> Iterator[Verdict]:
    worker = Worker()
    try:
        for name, path in files.items():
            if not worker.alive:
                worker = Worker()
            verdict = worker.run(name, path, timeout)
            if verdict.outcome in ("HANG", "CRASH") and not worker.alive:
                worker = Worker()
            if verdict.cpu_ms > FUNCTION_TIMEOUT_S * 1000:
                verdict.ok, verdict.why = False, f"{verdict.cpu_ms / 1000:.0f} s of CPU: over the function's timeout"
            elif verdict.peak_mb > MEMORY_BUDGET_MB:
                verdict.ok, verdict.why = False, f"peak memory {verdict.peak_mb:.0f} MB > {MEMORY_BUDGET_MB} MB"
            elif verdict.outcome in ("HANG", "CRASH"):
                verdict.ok, verdict.why = False, verdict.detail
            if progress is not None:
                progress()
            yield verdict
    finally:
        worker.stop()


# -- summary ------------------------------------------------------------------------------------


def category(verdict: Verdict) -> str:
    if not verdict.ok:
        return "WRONG"
    if verdict.outcome == "SUCCEEDED":
        return "rendered right"
    return "refused on purpose" if verdict.reason in POLICY_REASONS else "refused as damaged"


def summary(verdicts: list[Verdict]) -> dict[str, Any]:
    by_source = Counter(v.name.split("/", 1)[0] for v in verdicts)
    categories = Counter(category(v) for v in verdicts)
    reasons = Counter(v.reason for v in verdicts if v.outcome == "FAILED")
    rendered = [v.psnr_db for v in verdicts if v.outcome == "SUCCEEDED" and v.psnr_db is not None]
    finite = [p for p in rendered if not math.isinf(p)]
    return {
        "files": len(verdicts),
        "by_source": dict(by_source),
        "categories": dict(categories),
        "failed_reasons": dict(reasons.most_common()),
        "min_psnr_db": round(min(finite), 1) if finite else None,
        "max_peak_mb": round(max((v.peak_mb for v in verdicts), default=0.0), 1),
        "max_ms": round(max((v.ms for v in verdicts), default=0.0), 1),
        "max_cpu_ms": round(max((v.cpu_ms for v in verdicts), default=0.0), 1),
        "animated_first_frame": sum(1 for v in verdicts if v.outcome == "SUCCEEDED" and v.frames > 1),
        "wrong": [f"{v.name}: {v.why}" for v in verdicts if not v.ok],
    }


def print_summary(result: dict[str, Any]) -> None:
    from rich.table import Table

    from pipeline_cli.console import table_console

    console = table_console()
    table = Table(title=f"Conformance: {result['files']} real-world files", title_justify="left")
    table.add_column("verdict")
    table.add_column("files", justify="right")
    for name in ("rendered right", "refused as damaged", "refused on purpose", "WRONG"):
        table.add_row(name, str(result["categories"].get(name, 0)))
    console.print(table)
    reasons = ", ".join(f"{reason} {count}" for reason, count in result["failed_reasons"].items())
    console.print(f"FAILED reasons: {reasons}")
    console.print(
        f"worst PSNR of a rendered file vs reference: {result['min_psnr_db']} dB (pass >= {MIN_PSNR_DB}); "
        f"peak memory per file: max {result['max_peak_mb']} MB (budget {MEMORY_BUDGET_MB}); "
        f"slowest file {result['max_ms'] / 1000:.1f} s ({result['max_cpu_ms'] / 1000:.1f} CPU s); "
        f"{result['animated_first_frame']} animations rendered from their first frame"
    )
    for line in result["wrong"]:
        console.print(f"[red]WRONG[/] {line}")
