"""Reading an SQS queue until it is drained, as an operator's tool does (redrive, replay).

A short poll asks a sample of SQS's hosts, so one receive can come back empty while messages
remain: the queue counts as drained after a few empty receives in a row, or after one that the
caller can confirm otherwise (e.g. the queue's visible message count).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

SQS_BATCH = 10  # the most messages one ReceiveMessage returns
EMPTY_RECEIVES_BEFORE_STOP = 3


def receive_until_drained(
    sqs: SQSClient,
    queue_url: str,
    *,
    limit: int | None,
    handled: Callable[[], int],
    drained: Callable[[], bool] = lambda: False,
    **receive: Any,
) -> Iterator[list[MessageTypeDef]]:
    """Each non-empty batch received from the queue (ReceiveMessage with `receive`'s arguments),
    until the queue is drained or `handled()` (what the caller has done with the batches so far)
    reaches `limit`."""
    empty_receives = 0
    while limit is None or handled() < limit:
        wanted = SQS_BATCH if limit is None else min(SQS_BATCH, limit - handled())
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=wanted, **receive).get("Messages", [])
        if messages:
            empty_receives = 0
            yield messages
            continue
        empty_receives += 1
        if empty_receives >= EMPTY_RECEIVES_BEFORE_STOP or drained():
            return
