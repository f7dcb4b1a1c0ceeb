"""The twin's moto server answers each DynamoDB and S3 request atomically, as AWS does.

moto's server serves requests on several threads and applies an UpdateItem's SET clauses one by
one: without the twin's serialisation a Scan served meanwhile returns an item half-updated.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from pipeline_cli.twin.server import Endpoint, embedded_moto

ATTRIBUTES = [f"a{index}" for index in range(40)]  # many clauses: a wide window between the first and the last
UPDATES = 60


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with embedded_moto() as running:
        yield running


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Threads switch every 0.1 ms instead of 5 ms, so requests interleave as on a busy server."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(interval)


def test_a_scan_never_sees_an_update_item_half_applied(endpoint: Endpoint, frequent_thread_switches: None) -> None:
    dynamodb = endpoint.client("dynamodb")
    dynamodb.create_table(
        TableName="items",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    dynamodb.put_item(TableName="items", Item={"id": {"S": "x"}} | {name: {"N": "0"} for name in ATTRIBUTES})
    expression = "SET " + ", ".join(f"{name} = :v" for name in ATTRIBUTES)
    done = threading.Event()

    def update() -> None:
        try:
            for value in range(1, UPDATES + 1):
                dynamodb.update_item(
                    TableName="items",
                    Key={"id": {"S": "x"}},
                    UpdateExpression=expression,
                    ExpressionAttributeValues={":v": {"N": str(value)}},
                )
        finally:
            done.set()

    writer = threading.Thread(target=update)
    writer.start()
    seen: list[set[str]] = []
    while not done.is_set():
        [item] = dynamodb.scan(TableName="items")["Items"]
        seen.append({item[name]["N"] for name in ATTRIBUTES})
    writer.join()

    mixed = [values for values in seen if len(values) > 1]
    assert seen
    assert not mixed, f"{len(mixed)} of {len(seen)} scans saw an item half-updated, e.g. {mixed[:1]}"
