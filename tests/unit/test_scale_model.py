"""The backfill's scale model: its arithmetic, its ceilings, and the command's check."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline_cli.commands import scale_model
from pipeline_cli.perf.scale import Scenario, estimate, expected_requests

BASE = Scenario(
    images=10**6,
    concurrency=10,
    ms_per_image=140.0,
    io_ms_per_image=40.0,
    memory_mb=1769,
    batch=10,
    sizes=3,
    inventory=True,
    reserved_concurrency=10,
)


def test_time_scales_with_images_over_concurrency_until_a_ceiling() -> None:
    small, large = estimate(BASE), estimate(replace(BASE, concurrency=100, reserved_concurrency=100))
    assert small.limited_by == "concurrency 10"
    assert small.seconds == pytest.approx(10 * large.seconds, rel=1e-9)
    huge = estimate(replace(BASE, concurrency=1000, reserved_concurrency=1000))
    assert huge.limited_by == "S3 PUT per prefix (renditions/)"  # 4 PUT-class requests per image
    assert huge.images_per_second == pytest.approx(3500 / 4)


def test_the_reserved_concurrency_bounds_the_map() -> None:
    bounded = estimate(replace(BASE, concurrency=100, reserved_concurrency=20))
    assert bounded.limited_by == "concurrency 20"


def test_cost_is_linear_in_images_and_s3_puts_dominate() -> None:
    million, ten_million = estimate(BASE), estimate(replace(BASE, images=10**7))
    assert ten_million.total_cost == pytest.approx(10 * million.total_cost, rel=1e-3)
    assert max(million.cost, key=lambda service: million.cost[service]) == "S3 requests"
    # 3 renditions + the superseded ones' DeleteObjects: 4 x $0.005 per 1,000 = $20 per million
    # plus HEAD + GET at $0.0004 per 1,000, and the inventory at $0.0025 per million objects
    assert million.cost["S3 requests"] == pytest.approx(20 + 0.8 + 0.0025, rel=1e-6)


def test_listing_instead_of_an_inventory_is_a_list_request_per_thousand_images() -> None:
    listing, inventory = estimate(replace(BASE, inventory=False)), estimate(BASE)
    # 1,000 LIST requests at $0.005 per 1,000, against $0.0025 per million objects inventoried
    assert listing.cost["S3 requests"] - inventory.cost["S3 requests"] == pytest.approx(0.005 - 0.0025, rel=1e-6)
    assert listing.seconds == inventory.seconds


def test_expected_requests_of_each_outcome() -> None:
    assert expected_requests(rendered=1, current=0, failed=0, sizes=3) == {
        "s3.HeadObject": 1,
        "s3.GetObject": 1,
        "s3.PutObject": 3,
        "s3.DeleteObjects": 1,
        "dynamodb.UpdateItem": 2,
        "sns.Publish": 1,
    }
    assert expected_requests(rendered=0, current=1, failed=0, sizes=3) == {"s3.HeadObject": 1, "dynamodb.UpdateItem": 1}


def test_the_command_writes_table_json_plot_and_checks_a_runs_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = tmp_path / "counts.json"
    run = {"images": 21, "counts": {"rendered": 20, "current": 0, "failed": 1, "skipped": 0}, "transitions": 4}
    measured = {**run, "lambda_invocations": 3, "requests": dict(expected_requests(20, 0, 1, 3))}
    counts.write_text(json.dumps([measured]), encoding="utf-8")

    code = scale_model.main(["--out", str(tmp_path), "--check", str(counts)])

    assert code == 0
    assert "matches" in capsys.readouterr().out
    written = json.loads((tmp_path / "scale.json").read_text(encoding="utf-8"))
    assert len(written) == 15  # 5 sizes x 3 concurrencies
    assert (tmp_path / "scale.png").stat().st_size > 10_000

    measured["requests"]["s3.PutObject"] += 1  # a request the model does not know about
    counts.write_text(json.dumps([measured]), encoding="utf-8")
    assert scale_model.main(["--out", str(tmp_path), "--check", str(counts)]) == 1
