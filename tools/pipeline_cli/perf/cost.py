"""What a memory size costs and which one aws-lambda-power-tuning's strategies would pick."""

from __future__ import annotations

import math
from dataclasses import dataclass

MB_PER_VCPU = 1769
# AWS Lambda prices, us-east-1, first tier (aws.amazon.com/lambda/pricing, checked 2026-11):
# duration per GB-second by architecture, and requests at $0.20 per million.
PRICE_PER_GB_SECOND = {"arm64": 0.0000133334, "x86_64": 0.0000166667}
PRICE_PER_REQUEST = 0.20 / 1_000_000
BALANCED_WEIGHT = 0.5  # power-tuning's default balancedWeight


def vcpu_share(memory_mb: int) -> float:
    return memory_mb / MB_PER_VCPU


@dataclass(frozen=True)
class Configuration:
    memory_mb: int
    duration_ms: float  # mean over the mix of each input's median
    viable: bool  # the measured peak RSS fits
    cost_per_million: dict[str, float]  # USD, duration + requests
    model_ms: float | None = None  # the model's prediction, when the cgroup measured duration_ms


def compute_cost(memory_mb: int, duration_ms: float, architecture: str) -> float:
    """USD for one invocation's duration: billed in whole milliseconds, at the GB-second rate."""
    return memory_mb / 1024 * math.ceil(duration_ms) / 1000 * PRICE_PER_GB_SECOND[architecture]


def cost_per_million(memory_mb: int, duration_ms: float, architecture: str) -> float:
    """USD per million images (one invocation each): duration plus the request charge."""
    return (compute_cost(memory_mb, duration_ms, architecture) + PRICE_PER_REQUEST) * 1_000_000


def configuration(
    memory_mb: int, duration_ms: float, peak_rss_mb: float, model_ms: float | None = None
) -> Configuration:
    return Configuration(
        memory_mb=memory_mb,
        duration_ms=duration_ms,
        viable=peak_rss_mb < memory_mb,
        cost_per_million={arch: cost_per_million(memory_mb, duration_ms, arch) for arch in PRICE_PER_GB_SECOND},
        model_ms=model_ms,
    )


def recommend(configurations: list[Configuration], architecture: str) -> dict[str, int]:
    """The sizes aws-lambda-power-tuning's analyzer picks, among the viable ones.

    Its cost is the duration charge only (ceil(ms) x rate x memory; the request charge is the
    same everywhere). cost: the cheapest, ties to the faster; speed: the fastest, ties to the
    cheaper; balanced: the lowest w x cost/max(cost) + (1 - w) x duration/max(duration), w = 0.5.
    """
    viable = [c for c in configurations if c.viable]
    if not viable:
        raise ValueError("no memory size fits the measured peak RSS")

    def cost(c: Configuration) -> float:
        return compute_cost(c.memory_mb, c.duration_ms, architecture)

    max_cost, max_duration = max(map(cost, viable)), max(c.duration_ms for c in viable)

    def balanced(c: Configuration) -> float:
        return BALANCED_WEIGHT * cost(c) / max_cost + (1 - BALANCED_WEIGHT) * c.duration_ms / max_duration

    return {
        "cost": min(viable, key=lambda c: (cost(c), c.duration_ms)).memory_mb,
        "speed": min(viable, key=lambda c: (c.duration_ms, cost(c))).memory_mb,
        "balanced": min(viable, key=balanced).memory_mb,
    }


def model_duration_ms(cpu_ms: float, memory_mb: int) -> float:
    """CPU-bound, single-threaded work at a fluid share of one vCPU."""
    return cpu_ms / min(1.0, vcpu_share(memory_mb))
