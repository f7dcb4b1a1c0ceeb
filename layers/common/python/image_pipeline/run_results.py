"""A Distributed Map run's results, as its ResultWriter leaves them in S3: the children's counts
summed, and the batches that failed for good (their input, for a redrive).

A child's Output is {"counts": {...}} (a batch ThumbnailFunction answered: `rerender.count`) or,
for a reprocess batch that failed after its retries and whose images were failed on their items
instead, {"recorded": [{"outcome": "ERROR" | "SKIPPED"}, ...]} (one per image: recorded, or the
item had moved on). The backfill's summary and the reprocess run's ReprocessCompleted read them so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_RECORDED_COUNTS = {"ERROR": "errors", "SKIPPED": "skipped"}


@dataclass
class RunResults:
    counts: dict[str, int]
    failed_batches: list[dict[str, Any]] = field(default_factory=list)  # Input, Error, Cause

    @property
    def images_in_failed_batches(self) -> int:
        return sum(len(batch["Input"].get("Items", [])) for batch in self.failed_batches)


def read_results(
    read: Callable[[str, str], bytes], details: Mapping[str, str] | None, names: Sequence[str]
) -> RunResults:
    """Sum the results of the run whose ResultWriter manifest `details` names ({"Bucket", "Key"});
    `read(bucket, key)` fetches an object. Counts start at zero for each of `names`."""
    results = RunResults(dict.fromkeys(names, 0))
    if details is None:
        return results
    bucket = details["Bucket"]
    manifest = json.loads(read(bucket, details["Key"]))
    for status, files in manifest["ResultFiles"].items():
        for entry in (entry for file in files for entry in json.loads(read(bucket, file["Key"]))):
            if status != "SUCCEEDED":
                results.failed_batches.append(
                    {"Input": json.loads(entry["Input"]), "Error": entry.get("Error"), "Cause": entry.get("Cause")}
                )
                continue
            output = json.loads(entry["Output"])
            for name, value in output.get("counts", {}).items():
                results.counts[name] = results.counts.get(name, 0) + int(value)
            for recorded in output.get("recorded", []):
                name = _RECORDED_COUNTS[recorded["outcome"]]
                results.counts[name] = results.counts.get(name, 0) + 1
    return results
