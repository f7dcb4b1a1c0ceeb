"""CleanupFunction: on its schedule (or by hand), remove what the event-driven path left behind.

Event: the schedule's input, `{}`; an operator may invoke it with `{"dry_run": true}` to see
what a run would change. Returns the run's report; every count is also an EMF metric.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.cleanup import Cleanup
from image_pipeline.clients import AwsClients
from image_pipeline.config import CleanupSettings
from image_pipeline.observability import trace_lambda_handler
from image_pipeline.repository import ImagesRepository

settings = CleanupSettings.from_env()
clients = AwsClients()  # created on first use, reused by warm invocations; tests replace it
logger = Logger()
metrics = Metrics()

# Stop starting new pages this long before the function's timeout; the next run resumes.
SAFETY_MARGIN_MS = 20_000
COUNTS = (
    "items_checked",
    "timed_out",
    "originals_gone",
    "renditions_deleted",
    "orphans_deleted",
    "objects_listed",
    "unreadable",
)


@logger.inject_lambda_context(clear_state=True)
@trace_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    dry_run = event.get("dry_run")
    if dry_run is not None and not isinstance(dry_run, bool):
        raise ValueError(f"dry_run must be true or false, not {dry_run!r}")
    cleanup = Cleanup(settings, s3=clients.s3, repository=ImagesRepository(clients.dynamodb, settings.images_table))
    report = cleanup.run(dry_run=dry_run, out_of_time=lambda: context.get_remaining_time_in_millis() < SAFETY_MARGIN_MS)
    if not report.dry_run:  # a dry run changes nothing: its counts are not the system's
        for name in COUNTS:
            metrics.add_metric(
                name="Cleanup" + name.title().replace("_", ""), unit=MetricUnit.Count, value=getattr(report, name)
            )
    logger.info("cleanup run", extra=report.to_dict())
    return report.to_dict()
