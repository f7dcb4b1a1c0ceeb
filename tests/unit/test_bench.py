"""The benchmark's measuring instruments: PSNR, the corpus, the verdicts, and a smoke run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from pipeline_cli.bench import CORPUS, InputResult, main, psnr, run_floor, run_naive, run_project, verdicts


def test_psnr_is_infinite_for_identical_images_and_falls_with_the_error() -> None:
    image = Image.linear_gradient("L").convert("RGB")
    assert psnr(image, image) == float("inf")
    off_by_two = image.point(lambda value: min(255, value + 2))
    off_by_eight = image.point(lambda value: min(255, value + 8))
    assert psnr(off_by_two, image) == pytest.approx(20 * math.log10(255 / 2), abs=0.3)
    assert psnr(off_by_eight, image) < psnr(off_by_two, image)


def test_the_corpus_covers_what_issue_6_names() -> None:
    names = {case.name for case in CORPUS}
    assert {"jpeg-1mp", "jpeg-12mp", "jpeg-24mp", "jpeg-48mp", "jpeg-12mp-progressive", "jpeg-12mp-exif6"} <= names
    assert {"jpeg-cmyk-12mp", "png-rgba-3mp", "webp-6mp", "gif-animated", "tiff-16bit-3mp"} <= names


def test_the_variants_make_the_same_sizes_and_the_floor_makes_none(tmp_path: Path) -> None:
    data = next(case for case in CORPUS if case.name == "jpeg-1mp").make()
    project, naive = run_project(data), run_naive(data)
    assert [image.size for image in project] == [image.size for image in naive] == [(1024, 768), (512, 384), (128, 96)]
    assert run_floor(data) == []


def test_verdicts_mark_each_target_met_or_missed() -> None:
    fast = InputResult("jpeg-12mp", 1, 12_000_000, True, {"project": 60.0, "naive": 360.0, "floor": 45.0})
    fast.psnr_db = {"project": [44.0, 47.0, 50.0], "naive": [60.0, 60.0, 60.0]}
    checks = verdicts([fast], cold_start=[240.0, 260.0, 245.0])
    assert checks["speedup_vs_naive_12mp"] == {"value": 6.0, "met": True}
    assert checks["x_floor_12mp"]["met"] is True
    assert checks["psnr_db"] == {"value": 44.0, "met": True}
    assert checks["cold_start_ms"] == {"value": 245.0, "met": True}
    slow = InputResult("jpeg-12mp", 1, 12_000_000, True, {"project": 200.0, "naive": 360.0, "floor": 45.0})
    slow.psnr_db = {"project": [39.0], "naive": [60.0]}
    missed = verdicts([slow], cold_start=[300.0])
    assert not any(check["met"] for check in missed.values())


@pytest.mark.slow
def test_a_quick_run_writes_the_json_and_the_plot(tmp_path: Path) -> None:
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "bench.json").read_text())
    assert [entry["name"] for entry in document["inputs"]] == ["jpeg-1mp", "jpeg-12mp"]
    for entry in document["inputs"]:
        assert set(entry["median_ms"]) == set(entry["peak_rss_mb"]) == {"project", "naive", "floor"}
        assert len(entry["psnr_db"]["project"]) == 3
    assert set(document["targets"]) >= {"speedup_vs_naive_12mp", "x_floor_12mp", "psnr_db", "cold_start_ms"}
    assert (tmp_path / "bench.png").stat().st_size > 10_000
