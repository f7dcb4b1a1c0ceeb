"""The backfill's scale model: wall time and cost of re-rendering N images at a concurrency.

Per image, the requests the thumbnailer makes are counted from its code path (and checked
against a local run's counts: `expected_requests` must equal what `pipeline backfill` measured);
the time per image is the tuned ms at the template's memory size (docs/perf/tune.json) plus an
assumed in-region I/O time; prices are AWS's us-east-1 list prices. Limits that cap throughput
whatever the concurrency (account concurrency, S3 per-prefix request rates, DynamoDB on-demand
throughput, Distributed Map's own) are applied as ceilings; docs/backfill.md says what each is.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from pipeline_cli.perf.cost import PRICE_PER_GB_SECOND, PRICE_PER_REQUEST

# us-east-1 list prices (aws.amazon.com/<service>/pricing): USD per unit.
PRICE_PER_TRANSITION = 0.025 / 1000  # Step Functions Standard
PRICE_PER_EXPRESS_REQUEST = 1.00 / 1_000_000
PRICE_PER_EXPRESS_GB_SECOND = 0.00001667  # first tier; billed in 64 MB chunks, 100 ms increments
EXPRESS_MEMORY_GB = 64 / 1024
PRICE_S3_GET = 0.0004 / 1000  # GET, HEAD
PRICE_S3_PUT = 0.005 / 1000  # PUT, POST (DeleteObjects is a POST), LIST
PRICE_INVENTORY_PER_OBJECT = 0.0025 / 1_000_000
PRICE_DYNAMODB_WRITE = 0.625 / 1_000_000  # on-demand write request unit (items < 1 KB)
PRICE_SNS_PUBLISH = 0.50 / 1_000_000

# Ceilings (defaults of a fresh account and table; all but the S3 and Map ones can be raised).
ACCOUNT_CONCURRENCY = 1000  # Lambda concurrent executions per region
DISTRIBUTED_MAP_CHILDREN = 10_000  # concurrent child executions of one Map Run
S3_GETS_PER_PREFIX = 5500  # GET/HEAD per second per partitioned prefix (uploads/ starts as one)
S3_PUTS_PER_PREFIX = 3500  # PUT/POST/DELETE per second per partitioned prefix (renditions/ starts as one)
DYNAMODB_ON_DEMAND_WRITES = 4000  # WRU/s a new on-demand table serves at once (more once it has peaked)
LIST_PAGE_KEYS = 1000
INVOKE_OVERHEAD_SECONDS = 0.02  # Step Functions -> Lambda -> Step Functions per batch


def expected_requests(rendered: int, current: int, failed: int, sizes: int) -> Counter[str]:
    """The thumbnailer's requests for a run's outcomes, by service.operation (as the twin counts them).

    rendered: HEAD (current version), claim, GET, a PUT per rendition object (`sizes`: one per size,
    except that sizes larger than the original share one object), record, publish, delete the
    superseded renditions; current: HEAD and the claim its condition refuses; failed (cannot be decoded): HEAD,
    claim, GET, record the failure, publish it.
    """
    counts: Counter[str] = Counter()
    counts["s3.HeadObject"] = rendered + current + failed
    counts["s3.GetObject"] = rendered + failed
    counts["s3.PutObject"] = rendered * sizes
    counts["s3.DeleteObjects"] = rendered
    counts["dynamodb.UpdateItem"] = 2 * rendered + current + 2 * failed
    counts["sns.Publish"] = rendered + failed
    return +counts  # without the zeros


@dataclass(frozen=True)
class Scenario:
    images: int
    concurrency: int  # BackfillMaxConcurrency
    ms_per_image: float  # CPU, at the function's memory size (tuned)
    io_ms_per_image: float  # S3/DynamoDB/SNS round trips, in-region (an assumption)
    memory_mb: int
    batch: int
    sizes: int
    inventory: bool  # S3 Inventory manifest instead of ListObjectsV2
    reserved_concurrency: int  # ThumbnailReservedConcurrency
    transitions_per_run: int = 4  # Source, Map, Summarize, PublishSummary (measured locally)


@dataclass(frozen=True)
class Estimate:
    scenario: Scenario
    seconds: float
    images_per_second: float
    limited_by: str
    cost: dict[str, float]

    @property
    def total_cost(self) -> float:
        return sum(self.cost.values())


def estimate(s: Scenario) -> Estimate:
    invocations = math.ceil(s.images / s.batch)
    batch_seconds = s.batch * (s.ms_per_image + s.io_ms_per_image) / 1000 + INVOKE_OVERHEAD_SECONDS
    concurrency = min(s.concurrency, s.reserved_concurrency, ACCOUNT_CONCURRENCY, DISTRIBUTED_MAP_CHILDREN)
    requests = expected_requests(s.images, 0, 0, s.sizes)
    ceilings = {
        f"concurrency {concurrency}": concurrency * s.batch / batch_seconds,
        "S3 GET/HEAD per prefix (uploads/)": S3_GETS_PER_PREFIX / 2,
        "S3 PUT per prefix (renditions/)": S3_PUTS_PER_PREFIX / (s.sizes + 1),
        "DynamoDB on-demand writes": DYNAMODB_ON_DEMAND_WRITES / 2,
    }
    limited_by = min(ceilings, key=lambda name: ceilings[name])
    rate = ceilings[limited_by]
    # The listing (ListObjectsV2, ~20,000 keys/s) outpaces every ceiling above, so it costs money
    # (a LIST request per 1,000 keys) rather than time.
    seconds = s.images / rate
    billed_ms = math.ceil(batch_seconds * 1000)
    express_seconds = math.ceil(batch_seconds * 10) / 10
    cost = {
        "Lambda": invocations
        * (s.memory_mb / 1024 * billed_ms / 1000 * PRICE_PER_GB_SECOND["arm64"] + PRICE_PER_REQUEST),
        "Step Functions": s.transitions_per_run * PRICE_PER_TRANSITION
        + invocations * (PRICE_PER_EXPRESS_REQUEST + EXPRESS_MEMORY_GB * express_seconds * PRICE_PER_EXPRESS_GB_SECOND),
        "S3 requests": (requests["s3.HeadObject"] + requests["s3.GetObject"]) * PRICE_S3_GET
        + (requests["s3.PutObject"] + requests["s3.DeleteObjects"]) * PRICE_S3_PUT
        + (
            s.images * PRICE_INVENTORY_PER_OBJECT
            if s.inventory
            else math.ceil(s.images / LIST_PAGE_KEYS) * PRICE_S3_PUT
        ),
        "DynamoDB": requests["dynamodb.UpdateItem"] * PRICE_DYNAMODB_WRITE,
        "SNS": requests["sns.Publish"] * PRICE_SNS_PUBLISH,
    }
    return Estimate(s, seconds, s.images / seconds, limited_by, cost)
