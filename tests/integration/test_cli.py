"""The commands users run: `pipeline demo` (make demo) and `pipeline invoke`, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_cli.commands import demo, invoke
from pipeline_cli.imagefactory import make_jpeg, make_png

pytestmark = pytest.mark.slow


def test_demo_processes_a_folder_and_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "mine"
    (images / "trip").mkdir(parents=True)
    (images / "trip" / "beach day.jpg").write_bytes(make_jpeg(1600, 1200, orientation=6))
    (images / "logo.png").write_bytes(make_png(300, 200, mode="RGBA"))
    (images / "notes.jpg").write_bytes(b"not an image")
    report = tmp_path / "out" / "report.html"

    code = demo.main(["--no-samples", "--images", str(images), "--report", str(report), "--run-cleanup"])

    assert code == 0
    printed = capsys.readouterr().out
    assert "trip/beach day.jpg" in printed
    assert "SUCCEEDED" in printed
    assert "not_an_image" in printed
    html = report.read_text(encoding="utf-8")
    assert html.count('<div class="image">') == 3
    assert "uploads/demo/trip/beach day.jpg" in html
    # the contact sheet links the original and its three renditions, files written next to it
    linked = [part.split('"')[0] for part in html.split('src="')[1:]]
    assert len(linked) == 2 + 3 * 2  # two originals a browser shows, three renditions for each good image
    assert all((report.parent / name).is_file() for name in linked)
    assert (report.parent / "logs" / "ThumbnailFunction.log").stat().st_size > 0


def test_invoke_runs_a_function_from_the_template_on_an_event_file(capsys: pytest.CaptureFixture[str]) -> None:
    code = invoke.main(["ThumbnailFunction", "-e", "events/s3-put.json", "--seed"])

    assert code == 0
    result = json.loads(capsys.readouterr().out)
    [image] = result["results"]
    assert image["outcome"] == "SUCCEEDED"
    assert image["key"] == "uploads/2026/11/beach day.jpg"  # '+' in the event's key is a space
    assert image["renditions"] == 3


def test_invoke_names_what_env_json_must_supply_against_another_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    code = invoke.main(["ThumbnailFunction", "-e", "events/s3-put.json", "--endpoint-url", "http://localhost:1"])

    assert code == 2
    needed = "set EVENTS_TOPIC_ARN, IMAGES_TABLE, INGEST_BUCKET, RENDITIONS_BUCKET in --env-vars"
    assert needed in capsys.readouterr().err
