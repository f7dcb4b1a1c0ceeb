"""The memory-tuning report's arithmetic (prices, viability, power-tuning's strategies) and a smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_cli.commands.tune import main
from pipeline_cli.perf.cost import (
    compute_cost,
    configuration,
    cost_per_million,
    model_duration_ms,
    recommend,
    vcpu_share,
)


def test_cost_bills_rounded_up_milliseconds_at_the_architectures_rate_plus_requests() -> None:
    # 1024 MB for 99.2 ms bills 100 ms = 0.1 GB-s: 0.1 x 0.0000133334 x 1e6 + 0.20 (requests)
    assert cost_per_million(1024, 99.2, "arm64") == pytest.approx(1.33334 + 0.20)
    assert cost_per_million(1024, 99.2, "x86_64") == pytest.approx(1.66667 + 0.20)
    assert cost_per_million(2048, 100, "arm64") == pytest.approx(2 * 1.33334 + 0.20)
    assert compute_cost(1024, 99.2, "arm64") == pytest.approx(0.1 * 0.0000133334)  # no request charge


def test_cpu_share_is_proportional_to_memory_and_the_model_stops_at_one_vcpu() -> None:
    assert vcpu_share(1769) == 1.0
    assert vcpu_share(3538) == 2.0
    assert model_duration_ms(100, 884) == pytest.approx(200, rel=1e-3)
    assert model_duration_ms(100, 3008) == 100  # single-threaded work cannot use the second vCPU


def test_a_size_below_the_peak_rss_is_not_viable() -> None:
    assert not configuration(128, 500, peak_rss_mb=130).viable
    assert configuration(256, 500, peak_rss_mb=130).viable


def test_the_strategies_pick_cheapest_fastest_and_the_weighted_middle() -> None:
    # CPU-bound work: time halves with memory until one vCPU, then stays flat.
    measured = {128: 2000.0, 256: 1000.0, 512: 500.0, 1024: 260.0, 1769: 160.0, 3008: 158.0}
    configurations = [configuration(memory, duration, peak_rss_mb=150) for memory, duration in measured.items()]

    picks = recommend(configurations, "arm64")

    assert picks["cost"] == 512  # as many GB-s as 256 MB, and faster; 128 MB is below the peak RSS
    assert picks["speed"] == 3008
    # 0.5 x cost/max + 0.5 x ms/max: 1769 MB scores 0.38, 1024 MB 0.41, 512 MB 0.52, 3008 MB 0.58
    assert picks["balanced"] == 1769
    assert recommend(configurations, "x86_64") == picks  # prices differ by a constant factor


def test_no_viable_size_is_an_error_not_a_recommendation() -> None:
    with pytest.raises(ValueError, match="peak RSS"):
        recommend([configuration(128, 100, peak_rss_mb=500)], "arm64")


@pytest.mark.slow
def test_a_quick_model_run_writes_the_json_and_the_plot(tmp_path: Path) -> None:
    argv = ["--quick", "--method", "model", "--out", str(tmp_path), "--corpus", str(tmp_path / "corpus")]
    assert main(argv) == 0
    document = json.loads((tmp_path / "tune.json").read_text())
    assert document["method"] == "model"
    assert [c["memory_mb"] for c in document["configurations"]] == [512, 1769]
    slow, fast = document["configurations"]
    assert slow["duration_ms"] == pytest.approx(fast["duration_ms"] * 1769 / 512)  # the model, nothing else
    assert set(document["recommendations"]) == {"arm64", "x86_64"}
    assert set(document["recommendations"]["arm64"]) == {"cost", "speed", "balanced"}
    assert document["peak_rss_mb"] > 0
    assert (tmp_path / "tune.png").stat().st_size > 10_000
