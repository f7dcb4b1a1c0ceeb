"""Timing the variants side by side, and everything measured per input."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from image_pipeline.imaging import RenditionSpec, make_renditions
from pipeline_cli.perf.corpus import CORPUS, OUTPUT_FORMATS
from pipeline_cli.perf.fidelity import fidelity
from pipeline_cli.perf.lambda_process import peak_rss_mb
from pipeline_cli.perf.peers import PeerRun, Runner, usable_on
from pipeline_cli.perf.variants import RUNNERS, VARIANTS, open_any

RSS_VARIANTS = (*VARIANTS, "handler")


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
    rendition_bytes: dict[str, list[int]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # peer variant -> why it cannot render this input

    @property
    def speedup_vs_naive(self) -> float:
        return self.median_ms["naive"] / self.median_ms["project"]

    @property
    def x_floor(self) -> float:
        return self.median_ms["project"] / self.median_ms["floor"]


def time_variants(
    data: bytes, spec: RenditionSpec, repeats: int, peers: Mapping[str, Runner] | None = None
) -> dict[str, float]:
    """Median ms per variant, the peers' (timed in their own processes) included."""
    return time_in_turns({**RUNNERS, **(peers or {})}, data, spec, repeats)


def time_in_turns(
    runners: Mapping[str, Callable[[bytes, RenditionSpec], object]], data: bytes, spec: RenditionSpec, repeats: int
) -> dict[str, float]:
    """Median ms of each runner; they take turns in every repeat, in rotating order, so drift on
    this shared machine hits all of them alike. A PeerRun's own time counts, not the pipe's."""
    names = tuple(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        runners[name](data, spec)  # warm: the first call pays for plugin and codec setup
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            outcome = runners[name](data, spec)
            elapsed = (time.perf_counter() - started) * 1000
            samples[name].append(outcome.ms if isinstance(outcome, PeerRun) else elapsed)
    return {name: statistics.median(values) for name, values in samples.items()}


def measure(
    paths: dict[str, Path],
    spec: RenditionSpec,
    repeats: int,
    lambda_python: Path,
    peers: Mapping[str, Runner] | None = None,
) -> list[InputResult]:
    results = []
    cases = {case.name: case for case in CORPUS}
    for name, path in paths.items():
        data = path.read_bytes()
        with open_any(data) as probe:
            pixels = probe.width * probe.height
        result = InputResult(name, len(data), pixels, cases[name].photographic)
        usable, result.skipped = usable_on(data, spec, peers or {})
        result.median_ms = time_variants(data, spec, repeats, usable)
        result.peak_rss_mb = {variant: peak_rss_mb(variant, path, spec, lambda_python) for variant in RSS_VARIANTS}
        scores = fidelity(data, spec, usable)
        result.psnr_db, result.psnr_delivered_db = scores.psnr_db, scores.psnr_delivered_db
        result.rendition_bytes = scores.rendition_bytes
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
