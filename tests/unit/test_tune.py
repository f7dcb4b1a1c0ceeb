"""The memory-tuning report's arithmetic: prices, viability and the power-tuning strategies."""

from __future__ import annotations

import pytest

from pipeline_cli.tune import configuration, cost_per_million, recommend, vcpu_share


def test_cost_per_million_bills_rounded_up_milliseconds_at_the_architectures_rate() -> None:
    # 1024 MB for 99.2 ms bills 100 ms = 0.1 GB-s: 0.1 x 0.0000133334 x 1e6 + 0.20 (requests)
    assert cost_per_million(1024, 99.2, "arm64") == pytest.approx(1.33334 + 0.20)
    assert cost_per_million(1024, 99.2, "x86_64") == pytest.approx(1.66667 + 0.20)
    assert cost_per_million(2048, 100, "arm64") == pytest.approx(2 * 1.33334 + 0.20)


def test_cpu_share_is_proportional_to_memory_with_one_vcpu_at_1769_mb() -> None:
    assert vcpu_share(1769) == 1.0
    assert vcpu_share(884.5) == 0.5


def test_a_size_below_the_peak_rss_is_not_viable() -> None:
    assert not configuration(128, 500, peak_rss_mb=120).viable
    assert configuration(256, 500, peak_rss_mb=120).viable


def test_the_strategies_pick_cheapest_fastest_and_the_weighted_middle() -> None:
    # CPU-bound work: time halves with memory until one vCPU, then stays flat.
    measured = {128: 2000.0, 256: 1000.0, 512: 500.0, 1024: 260.0, 1769: 160.0, 3008: 158.0}
    configurations = [configuration(memory, duration, peak_rss_mb=100) for memory, duration in measured.items()]

    picks = recommend(configurations, "arm64")

    assert picks["cost"] == 512  # as many GB-s as 256 MB, and faster; 128 MB does not fit 100 MB x 1.15
    assert picks["speed"] == 3008
    assert picks["balanced"] == 1769  # one vCPU: the speed of 3008 MB at 61% of its cost


def test_no_viable_size_is_an_error_not_a_recommendation() -> None:
    with pytest.raises(ValueError, match="peak RSS"):
        recommend([configuration(128, 100, peak_rss_mb=500)], "arm64")
