"""`pipeline bench`: the thumbnailer against a naive Pillow baseline and the decode-only floor.

One run measures, side by side on a generated corpus: median wall time per variant (the
variants take turns in every repeat, in rotating order, so drift on this shared machine hits
all of them alike), peak RSS of a fresh process running each variant once (what Lambda's
memory limit sees), PSNR of every rendition against a full-decode LANCZOS reference, and the
handler's cold start (imports + clients) in fresh interpreters. It prints the figures with the
targets marked, and writes JSON and a plot. Ratios within one run are what count here.

Variants:
  project  image_pipeline.imaging.make_renditions, as the handler calls it;
  naive    exif_transpose + convert + LANCZOS resize to each size from the full image;
  floor    decode only: JPEG at the DCT scale the largest rendition needs, others in full.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageOps

from image_pipeline.imaging import RenditionSpec, fit_within, make_renditions
from pipeline_cli.imagefactory import encode, make_animated_gif, scene, stored_for_orientation
from pipeline_cli.lambda_runtime import PROJECT_ROOT

SIZES = (1024, 512, 128)
QUALITY = 82
SPEC = RenditionSpec(sizes=SIZES, format="JPEG", quality=QUALITY, max_pixels=50_000_000)
VARIANTS = ("project", "naive", "floor")
BASELINE = "jpeg-12mp"
TARGETS = {
    "speedup_vs_naive_12mp": 5.0,  # at least
    "x_floor_12mp": 1.5,  # at most
    "peak_rss_mb_48mp": 80.0,  # at most
    "psnr_db": 40.0,  # at least, every rendition of photographic inputs
    "cold_start_ms": 250.0,  # at most
}


# -- the corpus -----------------------------------------------------------------------------------


def photo(width: int, height: int) -> Image.Image:
    """A displayed "photo": the test scene with texture and sensor-like grain, so the JPEG is as
    hard to decode as a camera's and resampling has detail to get wrong."""
    image = scene(width, height)
    draw = ImageDraw.Draw(image)
    for x in range(0, width, max(8, width // 150)):  # fine diagonal texture
        draw.line((x, 0, x + height // 3, height), fill=(235, 225, 200), width=max(1, width // 1000))
    # A camera's optics and demosaicing band-limit the image (no detail at the pixel pitch);
    # the sensor adds grain on top.
    image = image.filter(ImageFilter.GaussianBlur(1.0))
    grain = Image.effect_noise((width, height), 32).convert("RGB")
    return Image.blend(image, grain, 0.06)


def _jpeg(width: int, height: int, *, orientation: int = 1, progressive: bool = False, mode: str = "RGB") -> bytes:
    stored = stored_for_orientation(photo(width, height), orientation)
    if mode != "RGB":
        stored = stored.convert(mode)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=90, progressive=progressive, exif=exif.tobytes())


def _rgba_png(width: int, height: int) -> bytes:
    image = photo(width, height).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize((width, height)))
    return encode(image, "PNG")


def _tiff_16bit(width: int, height: int) -> bytes:
    grey = photo(width, height).convert("L").point(lambda value: value * 257, mode="I")
    return encode(grey.convert("I;16"), "TIFF")


def _animated(width: int, height: int) -> bytes:
    return make_animated_gif(width, height, [(40 * i % 255, 120, 255 - 30 * i % 255) for i in range(12)])


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], bytes]
    photographic: bool  # PSNR target applies


CORPUS = (
    Case("jpeg-1mp", lambda: _jpeg(1152, 864), True),
    Case(BASELINE, lambda: _jpeg(4000, 3000), True),
    Case("jpeg-12mp-progressive", lambda: _jpeg(4000, 3000, progressive=True), True),
    Case("jpeg-12mp-exif6", lambda: _jpeg(4000, 3000, orientation=6), True),
    Case("jpeg-24mp", lambda: _jpeg(6000, 4000), True),
    Case("jpeg-48mp", lambda: _jpeg(8000, 6000), True),
    Case("jpeg-cmyk-12mp", lambda: _jpeg(4000, 3000, mode="CMYK"), False),
    Case("png-rgba-3mp", lambda: _rgba_png(2000, 1500), False),
    Case("webp-6mp", lambda: encode(photo(3000, 2000), "WEBP", quality=90), True),
    Case("gif-animated", lambda: _animated(800, 600), False),
    Case("tiff-16bit-3mp", lambda: _tiff_16bit(2000, 1500), False),
)
QUICK = ("jpeg-1mp", BASELINE)


def corpus(directory: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """Generate each input once; later runs reuse the files."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in CORPUS:
        if case.name in names:
            path = directory / case.name
            if not path.exists():
                path.write_bytes(case.make())
            paths[case.name] = path
    return paths


# -- the variants ---------------------------------------------------------------------------------


def run_project(data: bytes) -> list[Image.Image]:
    result = make_renditions(data, SPEC)
    return [Image.open(io.BytesIO(rendition.body)) for rendition in result.renditions]


def _to_rgb(image: Image.Image) -> Image.Image:
    """What a careful reference does with every mode: 16-bit scaled, alpha flattened on white."""
    if image.mode.startswith("I;16") or image.mode == "I":
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return flat
    return image.convert("RGB")


def run_naive(data: bytes, quality: int = QUALITY) -> list[Image.Image]:
    """What most samples do: transpose the full image, then resize it once per size."""
    with Image.open(io.BytesIO(data)) as opened:
        full = ImageOps.exif_transpose(opened) or opened
        full = full.convert("RGB")
        outputs: list[Image.Image] = []
        for size in SIZES:
            resized = full.resize(fit_within(full.width, full.height, size), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            resized.save(buffer, "JPEG", quality=quality)
            outputs.append(Image.open(io.BytesIO(buffer.getvalue())))
        return outputs


def run_floor(data: bytes) -> list[Image.Image]:
    """Only the decode the largest rendition needs: no resize, no encode."""
    with Image.open(io.BytesIO(data)) as opened:
        if opened.format == "JPEG":
            orientation = opened.getexif().get(0x0112, 1)
            width, height = (opened.height, opened.width) if orientation in (5, 6, 7, 8) else opened.size
            target = fit_within(width, height, SIZES[0])
            opened.draft(None, (target[1], target[0]) if orientation in (5, 6, 7, 8) else target)
        opened.load()
    return []


RUNNERS: dict[str, Callable[[bytes], list[Image.Image]]] = {
    "project": run_project,
    "naive": run_naive,
    "floor": run_floor,
}


def reference(data: bytes, sizes: list[tuple[int, int]]) -> list[Image.Image]:
    """Full decode, oriented, flattened, one LANCZOS resize straight to each rendition's size."""
    with Image.open(io.BytesIO(data)) as opened:
        full = _to_rgb(ImageOps.exif_transpose(opened) or opened)
    return [full.resize(size, Image.Resampling.LANCZOS) for size in sizes]


def fidelity_renditions(variant: str, data: bytes) -> list[Image.Image]:
    """The variant's renditions encoded at quality 100: PSNR then measures the method (draft
    decode, reducing_gap, rotate after resize, cascade), not RenditionQuality's JPEG loss."""
    if variant == "project":
        result = make_renditions(data, replace(SPEC, quality=100))
        return [Image.open(io.BytesIO(rendition.body)) for rendition in result.renditions]
    return run_naive(data, quality=100)


def psnr(image: Image.Image, ref: Image.Image) -> float:
    """PSNR of the luma (Y'), as image codecs are compared: JPEG subsamples chroma at any quality."""
    import numpy as np

    a = np.asarray(_to_rgb(image).convert("L"), dtype=np.float64)
    b = np.asarray(_to_rgb(ref).convert("L"), dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


# -- measuring ------------------------------------------------------------------------------------


@dataclass
class InputResult:
    name: str
    bytes: int
    pixels: int
    photographic: bool
    median_ms: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    psnr_db: dict[str, list[float]] = field(default_factory=dict)

    @property
    def speedup_vs_naive(self) -> float:
        return self.median_ms["naive"] / self.median_ms["project"]

    @property
    def x_floor(self) -> float:
        return self.median_ms["project"] / self.median_ms["floor"]


def time_variants(data: bytes, repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for repeat in range(repeats):
        order = VARIANTS[repeat % 3 :] + VARIANTS[: repeat % 3]
        for variant in order:
            started = time.perf_counter()
            RUNNERS[variant](data)
            samples[variant].append((time.perf_counter() - started) * 1000)
    return {variant: statistics.median(values) for variant, values in samples.items()}


def peak_rss_mb(variant: str, path: Path) -> float:
    """Peak RSS of a fresh interpreter that imports what the variant needs and runs it once."""
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline_cli.bench", "--worker", variant, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(completed.stdout.strip())


# What a cold start runs, in a fresh interpreter: the harness is imported before the clock starts.
_COLD_START = """
import json, os, sys, time
from pipeline_cli.lambda_runtime import load_handler
os.environ.update(AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1")
started = time.perf_counter()
handler = load_handler("functions/thumbnail", "app.lambda_handler", json.loads(sys.argv[1]))
clients = sys.modules[handler.__module__].clients
for name in ("s3", "dynamodb", "sns"):
    getattr(clients, name)
print((time.perf_counter() - started) * 1000)
"""
_RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")


def lambda_like_python(directory: Path) -> Path:
    """A venv with only what the function has on Lambda: the layer's pins and the runtime's boto3.

    The dev venv also holds SAM CLI's dependencies (awscrt, pyOpenSSL), which boto3 picks up
    on import and which would add time that Lambda never spends.
    """
    python = directory / "bin" / "python"
    if python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    pins = [
        line.strip()
        for line in (PROJECT_ROOT / "requirements" / "dev.txt").read_text(encoding="utf-8").splitlines()
        if line.split("==")[0].strip().lower() in _RUNTIME_PACKAGES
    ]
    layer = str(PROJECT_ROOT / "layers" / "common" / "requirements.txt")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-r", layer, *pins], check=True)
    return python


def cold_start_ms(python: Path, runs: int, *, tracing: bool) -> list[float]:
    """Import functions/thumbnail/app.py and create its clients in fresh interpreters, after one
    unmeasured run that writes the bytecode a deployed package ships with."""
    handler_env = {
        "RENDITIONS_BUCKET": "bench",
        "IMAGES_TABLE": "bench",
        "EVENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench",
        "POWERTOOLS_SERVICE_NAME": "image-pipeline",
    }
    process_env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    process_env["PYTHONPATH"] = os.pathsep.join(
        [str(PROJECT_ROOT / "layers" / "common" / "python"), str(PROJECT_ROOT / "tools")]
    )
    if tracing:
        process_env["LAMBDA_TASK_ROOT"] = str(PROJECT_ROOT)  # "in Lambda": Powertools traces
    else:
        handler_env["POWERTOOLS_TRACE_DISABLED"] = "true"
    command = [str(python), "-c", _COLD_START, json.dumps(handler_env)]

    def once() -> float:
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=process_env, cwd=PROJECT_ROOT)
        return float(done.stdout.strip())

    once()
    return [once() for _ in range(runs)]


def _worker(variant: str, path: str) -> None:
    RUNNERS[variant](Path(path).read_bytes())
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the forking parent.
    status = Path("/proc/self/status").read_text(encoding="ascii")
    high_water_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    print(high_water_kib / 1024)


def measure(paths: dict[str, Path], repeats: int) -> list[InputResult]:
    results = []
    cases = {case.name: case for case in CORPUS}
    for name, path in paths.items():
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as probe:
            pixels = probe.width * probe.height
        result = InputResult(name, len(data), pixels, cases[name].photographic)
        result.median_ms = time_variants(data, repeats)
        result.peak_rss_mb = {variant: peak_rss_mb(variant, path) for variant in VARIANTS}
        renditions = {variant: fidelity_renditions(variant, data) for variant in ("project", "naive")}
        refs = reference(data, [image.size for image in renditions["project"]])
        result.psnr_db = {
            variant: [round(psnr(image, ref), 2) for image, ref in zip(images, refs, strict=True)]
            for variant, images in renditions.items()
        }
        results.append(result)
        print(f"  measured {name}", file=sys.stderr, flush=True)
    return results


# -- reporting ------------------------------------------------------------------------------------


def verdicts(results: list[InputResult], cold_start: list[float]) -> dict[str, dict[str, Any]]:
    by_name = {result.name: result for result in results}
    checks: dict[str, dict[str, Any]] = {}
    if BASELINE in by_name:
        base = by_name[BASELINE]
        checks["speedup_vs_naive_12mp"] = {"value": base.speedup_vs_naive, "met": base.speedup_vs_naive >= 5.0}
        checks["x_floor_12mp"] = {"value": base.x_floor, "met": base.x_floor <= 1.5}
    if "jpeg-48mp" in by_name:
        rss = by_name["jpeg-48mp"].peak_rss_mb["project"]
        checks["peak_rss_mb_48mp"] = {"value": rss, "met": rss < 80.0}
    worst = min(min(r.psnr_db["project"]) for r in results if r.photographic)
    checks["psnr_db"] = {"value": worst, "met": worst >= 40.0}
    median_cold = statistics.median(cold_start)
    checks["cold_start_ms"] = {"value": median_cold, "met": median_cold <= 250.0}
    return checks


def print_report(
    results: list[InputResult], checks: dict[str, dict[str, Any]], cold_start: list[float], traced: list[float]
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160) if not sys.stdout.isatty() else Console()
    table = Table(title=f"Thumbnailer: sizes {SIZES}, JPEG q{QUALITY}; medians of timed runs, this machine")
    for column in ("input", "MP", "project ms", "naive ms", "floor ms", "vs naive", "x floor"):
        table.add_column(column, justify="left" if column == "input" else "right")
    for column in ("RSS MB project/naive/floor", "PSNR dB project (naive)"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            r.name,
            f"{r.pixels / 1e6:.1f}",
            f"{r.median_ms['project']:.1f}",
            f"{r.median_ms['naive']:.1f}",
            f"{r.median_ms['floor']:.1f}",
            f"{r.speedup_vs_naive:.1f}x",
            f"{r.x_floor:.2f}x",
            " / ".join(f"{r.peak_rss_mb[v]:.0f}" for v in VARIANTS),
            " ".join(f"{p:.1f}" for p in r.psnr_db["project"]) + f"  ({min(r.psnr_db['naive']):.1f})",
        )
    console.print(table)
    console.print(
        "cold start (import handler + create clients), fresh interpreters:"
        f" tracing off {[round(v) for v in cold_start]} ms, tracing on {[round(v) for v in traced]} ms"
    )
    for name, check in checks.items():
        mark = "[green]met[/]" if check["met"] else "[red]MISSED[/]"
        console.print(f"  target {name:<24} {TARGETS[name]:>6}  measured {check['value']:.2f}  {mark}")


def plot(results: list[InputResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in results]
    figure, (times, memory) = plt.subplots(1, 2, figsize=(14, 5))
    width = 0.27
    for index, variant in enumerate(VARIANTS):
        positions = [i + (index - 1) * width for i in range(len(names))]
        times.bar(positions, [r.median_ms[variant] for r in results], width, label=variant)
        memory.bar(positions, [r.peak_rss_mb[variant] for r in results], width, label=variant)
    times.set_yscale("log")
    times.set_ylabel("median ms (log)")
    memory.set_ylabel("peak RSS of the process, MB")
    memory.axhline(80, color="grey", linestyle="--", linewidth=1)
    for axis in (times, memory):
        axis.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        axis.legend()
    figure.suptitle("thumbnailer (project) vs naive Pillow vs decode-only floor")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pipeline bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}, few repeats (a smoke run)")
    parser.add_argument("--out", type=Path, default=Path("build/bench"), help="JSON, plot and corpus go here")
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
        return 0
    os.chdir(PROJECT_ROOT)
    names = QUICK if args.quick else tuple(case.name for case in CORPUS)
    repeats = 2 if args.quick else args.repeats
    paths = corpus(args.out / "corpus", names)
    print(f"benchmarking {len(paths)} inputs, {repeats} repeats each ...", file=sys.stderr)
    results = measure(paths, repeats)
    # --quick (a smoke run) measures in this interpreter rather than build a Lambda-like venv.
    python = Path(sys.executable) if args.quick else lambda_like_python(args.out / "lambda-venv")
    runs = 3 if args.quick else 7
    cold_start = cold_start_ms(python, runs, tracing=False)
    cold_start_traced = cold_start_ms(python, runs, tracing=True)
    checks = verdicts(results, cold_start)
    print_report(results, checks, cold_start, cold_start_traced)
    document = {
        "sizes": SIZES,
        "quality": QUALITY,
        "repeats": repeats,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "inputs": [{**asdict(r), "speedup_vs_naive": r.speedup_vs_naive, "x_floor": r.x_floor} for r in results],
        "cold_start_ms": cold_start,
        "cold_start_traced_ms": cold_start_traced,
        "cold_start_python": str(python),
        "targets": {name: {"target": TARGETS[name], **check} for name, check in checks.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    plot(results, args.out / "bench.png")
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
