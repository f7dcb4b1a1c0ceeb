"""Retrying failed SQS records later and later: exponential backoff with jitter, per record.

A queue's visibility timeout retries every failure after the same fixed interval, so
maxReceiveCount x VisibilityTimeout is all the outage a consumer survives (5 x 420 s: 35
minutes). Instead, each failed record of a partial batch response is made invisible for
`delay_seconds(receive count)`: base x 2^(n-1), capped, with "equal jitter" (half fixed,
half random) so retries of many records spread out while the window keeps a guaranteed
minimum, `min_window_seconds(max receives)`. docs/reliability.md has the figures; the
processor that applies it is image_pipeline.subscriber.BackoffBatchProcessor.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

SQS_MAX_VISIBILITY_SECONDS = 43_200  # 12 hours, SQS's limit


@dataclass(frozen=True)
class Backoff:
    base_seconds: int  # the delay after the first failure (its fixed half, then doubled)
    max_seconds: int  # no delay grows beyond this

    def ceiling(self, receive_count: int) -> int:
        """The longest delay after the `receive_count`-th failed receive (1-based)."""
        exponent = min(max(receive_count, 1) - 1, 32)  # 2^32 x any base is far past every cap
        return min(self.max_seconds, self.base_seconds << exponent, SQS_MAX_VISIBILITY_SECONDS)

    def delay_seconds(self, receive_count: int, uniform: Callable[[float, float], float] = random.uniform) -> int:
        ceiling = self.ceiling(receive_count)
        return round(ceiling / 2 + uniform(0, ceiling / 2))

    def min_window_seconds(self, max_receive_count: int) -> int:
        """The shortest time from the first receive to the last, before SQS dead-letters: the
        outage a message always survives (the jitter only ever lengthens it)."""
        return sum(self.ceiling(n) // 2 for n in range(1, max_receive_count))

    def max_window_seconds(self, max_receive_count: int) -> int:
        return sum(self.ceiling(n) for n in range(1, max_receive_count))


def queue_url_from_arn(arn: str) -> str:
    """arn:aws:sqs:<region>:<account>:<name> -> the queue URL (SQS identifies queues by it)."""
    _, partition, _, region, account, name = arn.split(":", 5)
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"
