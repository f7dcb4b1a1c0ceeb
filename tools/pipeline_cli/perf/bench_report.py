"""`pipeline bench`'s verdicts against its targets, console table, plot and JSON helpers."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from image_pipeline.imaging import RenditionSpec
from pipeline_cli.perf.corpus import BASELINE, LARGEST
from pipeline_cli.perf.peers import Peers
from pipeline_cli.perf.timing import RSS_VARIANTS, InputResult
from pipeline_cli.perf.variants import VARIANTS
from pipeline_cli.project import PROJECT_ROOT

TARGETS: dict[str, tuple[str, float]] = {  # docs/design.md, "Measurements"
    "speedup_vs_naive_12mp": (">=", 5.0),
    "x_floor_12mp": ("<=", 1.5),
    "peak_rss_mb_48mp": ("<", 80.0),
    "psnr_db": (">=", 40.0),  # every rendition of the photographic inputs
    "cold_start_ms": ("<=", 250.0),  # imports + clients, tracing off
}


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
    from rich.table import Table

    from pipeline_cli.console import table_console

    console = table_console(width=190)
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


def print_engines(results: list[InputResult], peers: Peers) -> None:
    """The thumbnailer and the peers side by side: time, worst delivered PSNR, bytes per rendition."""
    from rich.table import Table

    from pipeline_cli.console import table_console

    console = table_console(width=190)
    names = ("project", *peers.runners)
    table = Table(title="Engines side by side, one thread: median ms; worst delivered PSNR dB; KB per rendition")
    table.add_column("input")
    for name in names:
        table.add_column(name, justify="right")
    for r in results:
        cells = []
        for name in names:
            if name in r.skipped:
                cells.append("skipped")
                continue
            kilobytes = "/".join(f"{size / 1000:.0f}" for size in r.rendition_bytes[name])
            cells.append(f"{r.median_ms[name]:.1f}  {_db(min(r.psnr_delivered_db[name]))}  {kilobytes}")
        table.add_row(r.name, *cells)
    console.print(table)
    for engine, description in peers.describe().items():
        console.print(f"  {engine}: {description}")
    for r in results:
        for name, reason in r.skipped.items():
            console.print(f"  skipped {name} on {r.name}: {reason[:160]}")


def print_breakdown(name: str, steps: dict[str, float]) -> None:
    """Each step's median ms and its share of the summed steps, then the whole call."""
    from pipeline_cli.perf.breakdown import WHOLE_CALL

    measured = {step: ms for step, ms in steps.items() if step != WHOLE_CALL}
    total = sum(measured.values())
    print(f"Where the time goes on {name} (each step timed on its own, medians):")
    for step, ms in measured.items():
        print(f"  {step:<44} {ms:8.1f} ms  {ms / total:6.1%}")
    print(f"  {'sum of the steps':<44} {total:8.1f} ms\n  {WHOLE_CALL:<44} {steps[WHOLE_CALL]:8.1f} ms")


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


def relative(path: Path) -> str:
    """Paths in the JSON as the repository sees them (it is committed under docs/perf)."""
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def finite(value: Any) -> Any:
    """JSON has no infinity: identical renditions (PSNR inf) are written as null."""
    if isinstance(value, float):
        return None if math.isinf(value) else round(value, 3)
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def print_output_formats(formats: dict[str, dict[str, float]], spec: RenditionSpec) -> None:
    from rich.table import Table

    from pipeline_cli.console import table_console

    console = table_console(width=190)
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
