"""`pipeline bench`: the thumbnailer against a naive Pillow baseline and the decode-only floor.

One run measures, side by side on a generated corpus (cached in build/bench/corpus):
  - median wall time per variant; the variants take turns in every repeat, in rotating order,
    so drift on this shared machine hits all of them alike;
  - peak RSS (VmHWM) of a fresh process per variant that runs it once: the whole process, as
    Lambda's "Max Memory Used" sees it. `handler` is the Lambda-like process: the thumbnail
    handler module imported, its clients created, then the same renditions;
  - PSNR (luma) of every rendition against a full-decode LANCZOS reference (oriented, flattened
    on white), on the pixels before encoding (`imaging.resample`, which make_renditions encodes),
    so it scores the method; the delivered JPEGs are scored too, where both variants lose alike;
  - the cold start: importing functions/thumbnail/app.py and creating its clients, in fresh
    interpreters of a venv holding only what the function has on Lambda.
Sizes, format, quality and the environment come from template.yaml (ThumbnailFunction, the
parameters' defaults), through the handler's own settings class.

Variants:
  project  image_pipeline.imaging.make_renditions, as the handler calls it;
  naive    exif_transpose + convert("RGB") + LANCZOS resize to each size from the full image;
  floor    decode only: JPEG at the DCT scale the largest rendition needs, other formats in full.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from image_pipeline.config import ThumbnailSettings
from image_pipeline.imaging import RenditionSpec, fit_within, make_renditions, resample
from pipeline_cli.imagefactory import encode, make_animated_gif, make_heic, make_jpeg, make_png, scene
from pipeline_cli.lambda_runtime import PROJECT_ROOT, load_handler

THUMBNAIL_FUNCTION = "ThumbnailFunction"
VARIANTS = ("project", "naive", "floor")
RSS_VARIANTS = (*VARIANTS, "handler")
BASELINE = "jpeg-12mp"
LARGEST = "jpeg-48mp"
DEFAULT_CORPUS = PROJECT_ROOT / "build" / "bench" / "corpus"
TARGETS: dict[str, tuple[str, float]] = {  # docs/design.md, "Measurements"
    "speedup_vs_naive_12mp": (">=", 5.0),
    "x_floor_12mp": ("<=", 1.5),
    "peak_rss_mb_48mp": ("<", 80.0),
    "psnr_db": (">=", 40.0),  # every rendition of the photographic inputs
    "cold_start_ms": ("<=", 250.0),  # imports + clients, tracing off
}


# -- what the handler runs with: template.yaml ------------------------------------------------------


@cache
def handler_environment() -> dict[str, str]:
    """ThumbnailFunction's variables as template.yaml sets them: Globals, then the function's own;
    parameters at their defaults, resources as stand-in names (nothing here calls AWS)."""
    from pipeline_cli.template import load_template

    template = load_template()
    parameters = {name: str(spec["Default"]) for name, spec in template["Parameters"].items() if "Default" in spec}
    resources = template["Resources"]
    variables = {
        **template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        **resources[THUMBNAIL_FUNCTION]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    return {name: _resolve(value, parameters, resources) for name, value in variables.items()}


_PSEUDO = {"AWS::StackName": "image-pipeline", "AWS::AccountId": "123456789012", "AWS::Region": "us-east-1"}


def _resolve(value: Any, parameters: Mapping[str, str], resources: Mapping[str, Any]) -> str:
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        ref = value["Ref"]
        if ref in parameters:
            return parameters[ref]
        if resources.get(ref, {}).get("Type") == "AWS::SNS::Topic":  # a topic's Ref is its ARN
            return f"arn:aws:sns:us-east-1:123456789012:{ref}"
        return str(ref).lower()
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(
            r"\$\{([^}]+)\}", lambda match: _PSEUDO.get(match.group(1), match.group(1).lower()), value["Fn::Sub"]
        )
    raise ValueError(f"{THUMBNAIL_FUNCTION}: {value!r} cannot be resolved without a deployed stack")


def handler_location() -> tuple[str, str]:
    """(CodeUri, Handler) of ThumbnailFunction."""
    from pipeline_cli.template import resource

    properties = resource(THUMBNAIL_FUNCTION)["Properties"]
    return str(properties["CodeUri"]), str(properties["Handler"])


@cache
def project_spec() -> RenditionSpec:
    """The RenditionSpec the handler builds from the template's settings."""
    from image_pipeline.thumbnailer import rendition_spec

    return rendition_spec(ThumbnailSettings.from_env(handler_environment()))


# -- the corpus -----------------------------------------------------------------------------------


def photo(width: int, height: int) -> Image.Image:
    """A displayed "photo": the test scene with texture and sensor-like grain, so the JPEG is as
    hard to decode as a camera's and resampling has detail to get wrong."""
    from PIL import ImageDraw, ImageFilter

    image = scene(width, height)
    draw = ImageDraw.Draw(image)
    for x in range(0, width, max(8, width // 150)):  # fine diagonal texture
        draw.line((x, 0, x + height // 3, height), fill=(235, 225, 200), width=max(1, width // 1000))
    # A camera's optics and demosaicing band-limit the image (no detail at the pixel pitch);
    # the sensor adds grain on top.
    image = image.filter(ImageFilter.GaussianBlur(1.0))
    grain = Image.effect_noise((width, height), 32).convert("RGB")
    return Image.blend(image, grain, 0.06)


def _jpeg(width: int, height: int, **options: Any) -> bytes:
    return make_jpeg(width, height, displayed=photo(width, height), **options)


def _tiff_16bit(width: int, height: int) -> bytes:
    grey = photo(width, height).convert("L").point(lambda value: value * 257, mode="I")
    return encode(grey.convert("I;16"), "TIFF")


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], bytes]
    photographic: bool  # the PSNR target applies


CORPUS = (
    Case("jpeg-1mp", lambda: _jpeg(1152, 864), True),
    Case(BASELINE, lambda: _jpeg(4000, 3000), True),
    Case("jpeg-12mp-progressive", lambda: _jpeg(4000, 3000, progressive=True), True),
    Case("jpeg-12mp-exif6", lambda: _jpeg(4000, 3000, orientation=6), True),
    Case("jpeg-24mp", lambda: _jpeg(6000, 4000), True),
    Case(LARGEST, lambda: _jpeg(8000, 6000), True),
    Case("jpeg-cmyk-12mp", lambda: _jpeg(4000, 3000, mode="CMYK"), False),
    Case("png-rgba-3mp", lambda: make_png(2000, 1500, mode="RGBA", displayed=photo(2000, 1500)), False),
    Case("webp-6mp", lambda: encode(photo(3000, 2000), "WEBP", quality=90), True),
    Case(
        "gif-animated",
        lambda: make_animated_gif(800, 600, [(40 * i % 255, 120, 255 - 30 * i % 255) for i in range(12)]),
        False,
    ),
    Case("tiff-16bit-3mp", lambda: _tiff_16bit(2000, 1500), False),
    # What phones upload: HEVC in HEIF (iPhone, stored sideways) and AV1 in AVIF; neither decodes at a reduced scale.
    Case("heic-12mp", lambda: make_heic(4032, 3024, orientation=6, displayed=photo(4032, 3024), quality=90), True),
    Case("avif-12mp", lambda: encode(photo(4000, 3000), "AVIF", quality=90), True),
)
OUTPUT_FORMATS = ("JPEG", "WEBP", "AVIF")  # RenditionFormat's choices, timed and weighed on the baseline
QUICK = ("jpeg-1mp", BASELINE)


def corpus(directory: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """Generate each input once; later runs (and `pipeline tune`) reuse the files."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in CORPUS:
        if case.name in names:
            path = directory / case.name
            if not path.exists():
                partial = path.with_suffix(f".{os.getpid()}.partial")
                partial.write_bytes(case.make())
                partial.replace(path)  # atomic: a concurrent run never reads half a file
            paths[case.name] = path
    unknown = set(names) - set(paths)
    if unknown:
        raise ValueError(f"not in the corpus: {', '.join(sorted(unknown))}")
    return paths


# -- the variants ---------------------------------------------------------------------------------


@cache
def _heif_opener() -> None:
    from pi_heif import register_heif_opener

    register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


def open_any(data: bytes) -> Image.Image:
    """Image.open for the baselines, HEIF included (the thumbnailer registers it only on demand)."""
    _heif_opener()
    return Image.open(io.BytesIO(data))


def _largest_first(spec: RenditionSpec) -> list[int]:
    return sorted(set(spec.sizes), reverse=True)


def naive_images(data: bytes, spec: RenditionSpec) -> list[Image.Image]:
    """What most samples do: transpose the full image, then resize it once per size."""
    with open_any(data) as opened:
        full = (ImageOps.exif_transpose(opened) or opened).convert("RGB")
    return [
        full.resize(fit_within(full.width, full.height, size), Image.Resampling.LANCZOS)
        for size in _largest_first(spec)
    ]


def run_project(data: bytes, spec: RenditionSpec) -> None:
    make_renditions(data, spec)


def run_naive(data: bytes, spec: RenditionSpec) -> list[bytes]:
    return [encode(image, spec.format, quality=spec.quality) for image in naive_images(data, spec)]


def run_floor(data: bytes, spec: RenditionSpec) -> None:
    """Only the decode the largest rendition needs: no resize, no encode."""
    with open_any(data) as opened:
        if opened.format == "JPEG":
            swapped = opened.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            width, height = (opened.height, opened.width) if swapped else opened.size
            target = fit_within(width, height, _largest_first(spec)[0])
            opened.draft(None, (target[1], target[0]) if swapped else target)
        opened.load()


RUNNERS: dict[str, Callable[[bytes, RenditionSpec], object]] = {
    "project": run_project,
    "naive": run_naive,
    "floor": run_floor,
}


# -- fidelity -------------------------------------------------------------------------------------


def _to_rgb(image: Image.Image) -> Image.Image:
    """What a careful reference does with every mode: 16-bit scaled, alpha flattened on white."""
    if image.mode.startswith("I;16") or image.mode == "I":
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", image.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def reference(data: bytes, sizes: list[tuple[int, int]]) -> list[Image.Image]:
    """Full decode, oriented, flattened, one LANCZOS resize straight to each rendition's size."""
    with open_any(data) as opened:
        full = _to_rgb(ImageOps.exif_transpose(opened) or opened)
    return [full.resize(size, Image.Resampling.LANCZOS) for size in sizes]


def psnr(image: Image.Image, ref: Image.Image) -> float:
    """PSNR of the luma (Y'), as image codecs are compared; inf when identical."""
    from PIL import ImageChops

    difference = ImageChops.difference(_to_rgb(image).convert("L"), _to_rgb(ref).convert("L"))
    squared_error = sum(count * value**2 for value, count in enumerate(difference.histogram()))
    mse = squared_error / (difference.width * difference.height)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def fidelity(data: bytes, spec: RenditionSpec) -> dict[str, dict[str, list[float]]]:
    """PSNR of each rendition, largest first: of the method's pixels, and of what is delivered."""
    pixels = {
        "project": [image for _, image in resample(data, spec).images],
        "naive": naive_images(data, spec),
    }
    delivered = {
        "project": [Image.open(io.BytesIO(r.body)) for r in make_renditions(data, spec).renditions],
        "naive": [Image.open(io.BytesIO(body)) for body in run_naive(data, spec)],
    }
    refs = reference(data, [image.size for image in pixels["project"]])

    def scores(images: Sequence[Image.Image]) -> list[float]:
        return [psnr(image, ref) for image, ref in zip(images, refs, strict=True)]

    return {
        "psnr_db": {variant: scores(images) for variant, images in pixels.items()},
        "psnr_delivered_db": {variant: scores(images) for variant, images in delivered.items()},
    }


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
    psnr_delivered_db: dict[str, list[float]] = field(default_factory=dict)

    @property
    def speedup_vs_naive(self) -> float:
        return self.median_ms["naive"] / self.median_ms["project"]

    @property
    def x_floor(self) -> float:
        return self.median_ms["project"] / self.median_ms["floor"]


def time_variants(data: bytes, spec: RenditionSpec, repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for variant in VARIANTS:
        RUNNERS[variant](data, spec)  # warm: the first call pays for plugin and codec setup
    for repeat in range(repeats):
        shift = repeat % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            started = time.perf_counter()
            RUNNERS[variant](data, spec)
            samples[variant].append((time.perf_counter() - started) * 1000)
    return {variant: statistics.median(values) for variant, values in samples.items()}


def peak_rss_mb(variant: str, path: Path, spec: RenditionSpec, lambda_python: Path) -> float:
    """VmHWM of a fresh interpreter that imports what the variant needs and runs it once; the
    handler's in the Lambda-like venv, where boto3 finds no SAM CLI extras to load."""
    if variant == "handler":  # resolved here: the worker imports only what the function does
        code_uri, handler = handler_location()
        env = {**handler_environment(), "POWERTOOLS_TRACE_DISABLED": "true"}
        payload = json.dumps({"code_uri": code_uri, "handler": handler, "env": env})
    else:
        payload = json.dumps(asdict(spec))
    python = lambda_python if variant == "handler" else Path(sys.executable)
    completed = subprocess.run(
        [str(python), "-m", "pipeline_cli.bench", "--worker", variant, str(path), payload],
        capture_output=True,
        text=True,
        check=True,
        env=lambda_like_environment(),
    )
    return float(completed.stdout.strip().splitlines()[-1])


def high_water_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the forking parent.
    status = Path("/proc/self/status").read_text(encoding="ascii")
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024


def _worker(variant: str, path: str, payload: str) -> None:
    data, options = Path(path).read_bytes(), json.loads(payload)
    if variant == "handler":
        handler = load_handler(options["code_uri"], options["handler"], options["env"])
        module = sys.modules[handler.__module__]
        make_renditions(data, module.build_thumbnailer(module.clients).spec())  # creates the clients
    else:
        RUNNERS[variant](data, RenditionSpec(**{**options, "sizes": tuple(options["sizes"])}))
    print(high_water_mb())


# What a cold start runs, in a fresh interpreter: the harness is imported before the clock starts.
_COLD_START = """
import json, os, sys, time
from pipeline_cli.lambda_runtime import load_handler
code_uri, handler_name, env = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
started = time.perf_counter()
handler = load_handler(code_uri, handler_name, env)
imported = time.perf_counter()
clients = sys.modules[handler.__module__].clients
for name in ("s3", "dynamodb", "sns"):
    getattr(clients, name)
done = time.perf_counter()
print(json.dumps({"import_ms": (imported - started) * 1000, "clients_ms": (done - imported) * 1000}))
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


def lambda_like_environment() -> dict[str, str]:
    """A region (clients need one, no credentials) and the code on the path as the layer puts it;
    bytecode allowed, as a deployed package ships it."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    layer, tools = PROJECT_ROOT / "layers" / "common" / "python", PROJECT_ROOT / "tools"
    environment.update(AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", PYTHONPATH=f"{layer}{os.pathsep}{tools}")
    return environment


def cold_start(python: Path, runs: int, *, tracing: bool) -> dict[str, list[float]]:
    """Import the handler and create its clients in fresh interpreters, after one unmeasured run
    that writes the bytecode a deployed package ships with."""
    handler_env = dict(handler_environment())
    process_env = lambda_like_environment()
    if tracing:
        process_env["LAMBDA_TASK_ROOT"] = str(PROJECT_ROOT)  # "in Lambda", where Powertools traces
    else:
        handler_env["POWERTOOLS_TRACE_DISABLED"] = "true"
    command = [str(python), "-c", _COLD_START, *handler_location(), json.dumps(handler_env)]

    def once() -> dict[str, float]:
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=process_env, cwd=PROJECT_ROOT)
        parts: dict[str, float] = json.loads(done.stdout)
        return parts

    once()
    samples = [once() for _ in range(runs)]
    return {
        "import_ms": [s["import_ms"] for s in samples],
        "clients_ms": [s["clients_ms"] for s in samples],
        "total_ms": [s["import_ms"] + s["clients_ms"] for s in samples],
    }


def measure(paths: dict[str, Path], spec: RenditionSpec, repeats: int, lambda_python: Path) -> list[InputResult]:
    results = []
    cases = {case.name: case for case in CORPUS}
    for name, path in paths.items():
        data = path.read_bytes()
        with open_any(data) as probe:
            pixels = probe.width * probe.height
        result = InputResult(name, len(data), pixels, cases[name].photographic)
        result.median_ms = time_variants(data, spec, repeats)
        result.peak_rss_mb = {variant: peak_rss_mb(variant, path, spec, lambda_python) for variant in RSS_VARIANTS}
        scores = fidelity(data, spec)
        result.psnr_db, result.psnr_delivered_db = scores["psnr_db"], scores["psnr_delivered_db"]
        results.append(result)
        print(f"  measured {name}", file=sys.stderr, flush=True)
    return results


def output_formats(data: bytes, spec: RenditionSpec, repeats: int) -> dict[str, dict[str, float]]:
    """RenditionFormat's choices on one input: median ms of make_renditions, and the bytes stored."""
    measured = {}
    for fmt in OUTPUT_FORMATS:
        chosen = replace(spec, format=fmt)
        rendered = make_renditions(data, chosen)  # warm
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            rendered = make_renditions(data, chosen)
            samples.append((time.perf_counter() - started) * 1000)
        measured[fmt] = {
            "median_ms": statistics.median(samples),
            "bytes": sum(len(rendition.body) for rendition in rendered.renditions),
        }
    return measured


def print_output_formats(formats: dict[str, dict[str, float]], spec: RenditionSpec) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=190) if not sys.stdout.isatty() else Console()
    table = Table(title=f"RenditionFormat on {BASELINE}: sizes {spec.sizes} q{spec.quality}; medians")
    for column in ("format", "ms", "bytes (all sizes)", "ms vs JPEG", "bytes vs JPEG"):
        table.add_column(column, justify="left" if column == "format" else "right")
    jpeg = formats["JPEG"]
    for fmt, figures in formats.items():
        table.add_row(
            fmt,
            f"{figures['median_ms']:.1f}",
            f"{figures['bytes']:,.0f}",
            f"{figures['median_ms'] / jpeg['median_ms']:.1f}x",
            f"{figures['bytes'] / jpeg['bytes']:.2f}x",
        )
    console.print(table)


# -- reporting ------------------------------------------------------------------------------------


def meets(target: str, value: float) -> bool:
    comparison, limit = TARGETS[target]
    return {">=": value >= limit, "<=": value <= limit, "<": value < limit}[comparison]


def verdicts(results: list[InputResult], cold_start_total_ms: list[float]) -> dict[str, dict[str, Any]]:
    by_name = {result.name: result for result in results}
    values: dict[str, float] = {}
    if BASELINE in by_name:
        values["speedup_vs_naive_12mp"] = by_name[BASELINE].speedup_vs_naive
        values["x_floor_12mp"] = by_name[BASELINE].x_floor
    if LARGEST in by_name:
        values["peak_rss_mb_48mp"] = by_name[LARGEST].peak_rss_mb["project"]
    photographic = [min(r.psnr_db["project"]) for r in results if r.photographic]
    if photographic:
        values["psnr_db"] = min(photographic)
    values["cold_start_ms"] = statistics.median(cold_start_total_ms)
    return {name: {"value": value, "met": meets(name, value)} for name, value in values.items()}


def _db(value: float) -> str:
    return "=" if math.isinf(value) else f"{value:.1f}"


def print_report(
    results: list[InputResult],
    checks: dict[str, dict[str, Any]],
    cold: dict[str, dict[str, list[float]]],
    spec: RenditionSpec,
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=190) if not sys.stdout.isatty() else Console()
    table = Table(title=f"Thumbnailer, sizes {spec.sizes} {spec.format} q{spec.quality} (template defaults); medians")
    for column in ("input", "MP", "project ms", "naive ms", "floor ms", "vs naive", "x floor"):
        table.add_column(column, justify="left" if column == "input" else "right")
    for column in ("peak RSS MB project/naive/floor (handler)", "PSNR dB project (naive min)", "delivered min"):
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
            " / ".join(f"{r.peak_rss_mb[v]:.0f}" for v in VARIANTS) + f" ({r.peak_rss_mb['handler']:.0f})",
            " ".join(_db(p) for p in r.psnr_db["project"]) + f" ({_db(min(r.psnr_db['naive']))})",
            f"{_db(min(r.psnr_delivered_db['project']))} / {_db(min(r.psnr_delivered_db['naive']))}",
        )
    console.print(table)
    console.print("PSNR '=': identical to the reference. delivered: the encoded renditions, project / naive.")
    for mode, parts in cold.items():
        console.print(
            f"cold start, {mode}: import {statistics.median(parts['import_ms']):.0f} ms"
            f" + clients {statistics.median(parts['clients_ms']):.0f} ms"
            f" = {statistics.median(parts['total_ms']):.0f} ms median of {[round(v) for v in parts['total_ms']]}"
        )
    for name, check in checks.items():
        comparison, limit = TARGETS[name]
        mark = "[green]met[/]" if check["met"] else "[red]MISSED[/]"
        console.print(f"  target {name:<24} {comparison} {limit:<6} measured {check['value']:8.2f}  {mark}")


def plot(results: list[InputResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in results]
    figure, (times, memory, quality) = plt.subplots(1, 3, figsize=(18, 5.5))
    width = 0.2
    for index, variant in enumerate(RSS_VARIANTS):
        positions = [i + (index - 1.5) * width for i in range(len(names))]
        memory.bar(positions, [r.peak_rss_mb[variant] for r in results], width, label=variant)
        if variant in VARIANTS:
            times.bar(positions, [r.median_ms[variant] for r in results], width, label=variant)
    worst_db: dict[str, Callable[[InputResult], float]] = {
        "project, pixels": lambda r: min(r.psnr_db["project"]),
        "project, delivered": lambda r: min(r.psnr_delivered_db["project"]),
        "naive, delivered": lambda r: min(r.psnr_delivered_db["naive"]),
    }
    for index, (label, worst) in enumerate(worst_db.items()):
        positions = [i + (index - 1) * width for i in range(len(names))]
        quality.bar(positions, [min(worst(r), 60.0) for r in results], width, label=label)  # identical: 60
    times.set_yscale("log")
    times.set_ylabel("median ms (log)")
    memory.set_ylabel("peak RSS of the whole process, MB")
    memory.axhline(80, color="grey", linestyle="--", linewidth=1)
    quality.set_ylabel("worst rendition's PSNR vs reference, dB (identical at 60)")
    quality.axhline(40, color="grey", linestyle="--", linewidth=1)
    for axis in (times, memory, quality):
        axis.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        axis.legend(fontsize=8)
    figure.suptitle("thumbnailer (project) vs naive Pillow vs decode-only floor; handler = Lambda-like process")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _relative(path: Path) -> str:
    """Paths in the JSON as the repository sees them (it is committed under docs/perf)."""
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def _finite(value: Any) -> Any:
    """JSON has no infinity: identical renditions (PSNR inf) are written as null."""
    if isinstance(value, float):
        return None if math.isinf(value) else round(value, 3)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pipeline bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="timed runs per variant and input (default 7; --quick: 2)")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}: a smoke run")
    parser.add_argument("--only", nargs="+", metavar="INPUT", help="only these inputs, e.g. heic-12mp")
    parser.add_argument("--out", type=Path, default=Path("build/bench"), help="bench.json and bench.png go here")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="generated inputs, reused across runs")
    parser.add_argument("--worker", nargs=3, metavar=("VARIANT", "FILE", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
        return 0
    names = tuple(args.only) if args.only else QUICK if args.quick else tuple(case.name for case in CORPUS)
    repeats = args.repeats or (2 if args.quick else 7)
    spec = project_spec()
    paths = corpus(args.corpus, names)
    # --quick (a smoke run) measures in this interpreter rather than build a Lambda-like venv.
    python = Path(sys.executable) if args.quick else lambda_like_python(args.out / "lambda-venv")
    print(f"benchmarking {len(paths)} inputs, {repeats} repeats each ...", file=sys.stderr)
    results = measure(paths, spec, repeats, python)
    runs = 3 if args.quick else 7
    cold = {
        "tracing off": cold_start(python, runs, tracing=False),
        "tracing on (as deployed)": cold_start(python, runs, tracing=True),
    }
    checks = verdicts(results, cold["tracing off"]["total_ms"])
    print_report(results, checks, cold, spec)
    formats = output_formats(paths[BASELINE].read_bytes(), spec, repeats) if BASELINE in paths else {}
    if formats:
        print_output_formats(formats, spec)
    document = {
        "spec": asdict(spec),
        "handler_environment": handler_environment(),
        "repeats": repeats,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "cold_start_python": _relative(python)},
        "inputs": [{**asdict(r), "speedup_vs_naive": r.speedup_vs_naive, "x_floor": r.x_floor} for r in results],
        "cold_start": cold,
        "output_formats": formats,
        "targets": {
            name: {"comparison": TARGETS[name][0], "target": TARGETS[name][1], **check}
            for name, check in checks.items()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(_finite(document), indent=2) + "\n", encoding="utf-8")
    plot(results, args.out / "bench.png")
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
