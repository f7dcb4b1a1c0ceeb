"""The benchmark's instruments: PSNR, the corpus, the template-derived spec, the verdicts, a smoke run."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import pytest
from PIL import Image

from image_pipeline.imaging import RenditionSpec, make_renditions
from pipeline_cli.commands.bench import SDK_COLD, SNAPSTART_COLD, main
from pipeline_cli.imagefactory import encode, make_jpeg
from pipeline_cli.perf.bench_report import verdicts
from pipeline_cli.perf.corpus import CORPUS, corpus
from pipeline_cli.perf.fidelity import fidelity, psnr
from pipeline_cli.perf.handler import handler_environment, project_spec
from pipeline_cli.perf.timing import InputResult, output_formats
from pipeline_cli.perf.variants import naive_images
from pipeline_cli.twin.template import load_template


def test_psnr_is_infinite_for_identical_images_and_falls_with_the_error() -> None:
    image = Image.linear_gradient("L").convert("RGB")
    assert psnr(image, image) == math.inf
    off_by_two = image.point(lambda value: min(255, value + 2))
    off_by_eight = image.point(lambda value: min(255, value + 8))
    assert psnr(off_by_two, image) == pytest.approx(20 * math.log10(255 / 2), abs=0.3)
    assert psnr(off_by_eight, image) < psnr(off_by_two, image)


def test_the_corpus_covers_every_input_kind() -> None:
    names = {case.name for case in CORPUS}
    assert {"jpeg-1mp", "jpeg-12mp", "jpeg-24mp", "jpeg-48mp", "jpeg-12mp-progressive", "jpeg-12mp-exif6"} <= names
    assert {"jpeg-cmyk-12mp", "png-rgba-3mp", "webp-6mp", "gif-animated", "tiff-16bit-3mp"} <= names
    assert {"heic-12mp", "avif-12mp"} <= names


def test_each_rendition_format_is_timed_and_weighed() -> None:
    formats = output_formats(make_jpeg(800, 600), RenditionSpec(sizes=(512, 128)), repeats=1)
    assert sorted(formats) == ["AVIF", "JPEG", "WEBP"]
    assert all(figures["median_ms"] > 0 and figures["bytes"] > 1000 for figures in formats.values())


def test_the_corpus_is_generated_once_and_unknown_names_are_refused(tmp_path: Path) -> None:
    first = corpus(tmp_path, ("gif-animated",))["gif-animated"]
    with Image.open(first) as image:
        assert (image.format, getattr(image, "n_frames", 1)) == ("GIF", 12)
    first.write_bytes(b"cached")  # a second run must reuse the file, not regenerate it
    assert corpus(tmp_path, ("gif-animated",))["gif-animated"].read_bytes() == b"cached"
    with pytest.raises(ValueError, match="jpeg-2mp"):
        corpus(tmp_path, ("jpeg-2mp",))


def test_the_spec_and_environment_are_the_templates_defaults() -> None:
    parameters = load_template()["Parameters"]
    spec = project_spec()
    assert spec.sizes == tuple(int(size) for size in parameters["RenditionSizes"]["Default"].split(","))
    assert (spec.format, spec.quality) == (
        parameters["RenditionFormat"]["Default"],
        parameters["RenditionQuality"]["Default"],
    )
    environment = handler_environment()
    assert environment["EVENTS_TOPIC_ARN"].startswith("arn:aws:sns:")  # a topic's Ref is its ARN
    assert environment["POWERTOOLS_SERVICE_NAME"]  # from Globals


def test_fidelity_scores_every_rendition_and_catches_a_black_background() -> None:
    spec = RenditionSpec(sizes=(256, 64), quality=82)
    upright = fidelity(make_jpeg(600, 400, orientation=6), spec)
    assert len(upright.psnr_db["project"]) == len(upright.psnr_delivered_db["naive"]) == 2
    assert min(upright.psnr_db["project"]) >= 40
    rgba = Image.new("RGBA", (300, 200), (0, 0, 255, 0))  # fully transparent: white once flattened
    scores = fidelity(encode(rgba, "PNG"), spec)
    assert min(scores.psnr_db["project"]) >= 40  # flattened on white, like the reference
    assert max(scores.psnr_db["naive"]) < 10  # convert("RGB") turned it black
    assert [image.size for image in naive_images(encode(rgba, "PNG"), spec)] == [(256, 171), (64, 43)]


def test_verdicts_mark_each_target_met_or_missed() -> None:
    fast = InputResult("jpeg-12mp", 1, 12_000_000, True, {"project": 60.0, "naive": 360.0, "floor": 45.0})
    fast.psnr_db = {"project": [44.0, 47.0, math.inf], "naive": [60.0, 60.0, 60.0]}
    checks = verdicts([fast], cold_start_total_ms=[240.0, 260.0, 245.0])
    assert checks["speedup_vs_naive_12mp"] == {"value": 6.0, "met": True}
    assert checks["x_floor_12mp"] == {"value": pytest.approx(60 / 45), "met": True}
    assert checks["psnr_db"] == {"value": 44.0, "met": True}
    assert checks["cold_start_ms"] == {"value": 245.0, "met": True}
    assert "peak_rss_mb_48mp" not in checks  # not measured, not judged
    slow = InputResult("jpeg-12mp", 1, 12_000_000, True, {"project": 200.0, "naive": 360.0, "floor": 45.0})
    slow.psnr_db = {"project": [39.0], "naive": [60.0]}
    missed = verdicts([slow], cold_start_total_ms=[300.0])
    assert not any(check["met"] for check in missed.values())


@pytest.mark.slow
def test_a_quick_run_writes_the_json_and_the_plot(tmp_path: Path) -> None:
    assert main(["--quick", "--repeats", "1", "--out", str(tmp_path), "--corpus", str(tmp_path / "corpus")]) == 0
    document = json.loads((tmp_path / "bench.json").read_text())
    assert [entry["name"] for entry in document["inputs"]] == ["jpeg-1mp", "jpeg-12mp"]
    # The peers ran in their own processes (libvips never loads in this one), or say why not.
    running = [engine for engine, description in document["peers"].items() if not description.startswith("skipped")]
    assert "pyvips" in running  # pinned in requirements/dev.txt
    peer_variants = {f"{engine} {way}" for engine in running for way in ("per-size", "cascade")}
    assert "pyvips" not in sys.modules
    for entry in document["inputs"]:
        assert set(entry["median_ms"]) == {"project", "naive", "floor", *peer_variants}
        assert set(entry["rendition_bytes"]) == {"project", "naive", *peer_variants}
        assert set(entry["peak_rss_mb"]) == {"project", "naive", "floor", "handler"}
        assert entry["peak_rss_mb"]["handler"] > entry["peak_rss_mb"]["project"]  # boto3 and Powertools
        assert len(entry["psnr_db"]["project"]) == len(entry["psnr_delivered_db"]["naive"]) == 3
    assert set(document["cold_start"]["tracing off"]) == {"import_ms", "clients_ms", "total_ms"}
    after_restore = document["cold_start"][SNAPSTART_COLD]
    assert len(after_restore["clients_ms"]) == len(document["cold_start"]["tracing off"]["clients_ms"])
    assert set(document["cold_start"][SDK_COLD]) == {"import_ms", "clients_ms", "total_ms"}
    assert set(document["targets"]) == {"speedup_vs_naive_12mp", "x_floor_12mp", "psnr_db", "cold_start_ms"}
    assert document["spec"]["sizes"] == list(project_spec().sizes)
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_the_trials_start_from_the_thumbnailers_own_jpeg_path() -> None:
    from pipeline_cli.perf.trials import TRIALS

    photo = make_jpeg(1600, 1200)
    spec = RenditionSpec(sizes=(400, 200, 50), quality=82)  # 3/8 of 1600 px leaves 1.5x for 400 px
    ours = [rendition.body for rendition in make_renditions(photo, spec).renditions]
    # byte for byte: the trials' parts put together as the thumbnailer does are its path
    assert TRIALS["3/8 DCT, smaller from largest, gap 3.0"](photo, spec) == ours
    earlier = TRIALS["earlier path (draft, cascade)"](photo, spec)
    bilinear = TRIALS["first step BILINEAR"](photo, spec)
    for trial in (earlier, bilinear):
        assert [Image.open(io.BytesIO(body)).size for body in trial] == [(400, 300), (200, 150), (50, 38)]
    assert earlier[0] != ours[0]  # draft()'s 2/8 is exactly 400 px: no resize at all
