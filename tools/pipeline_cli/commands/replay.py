"""`pipeline replay`: replay the events ThumbnailFunction gave up on (ThumbnailFailuresQueue).

    pipeline replay --queue URL|ARN|NAME [--function NAME|ARN] [--max N]
    pipeline replay --queue URL|ARN|NAME --workflow STATE_MACHINE_ARN [--max N]

Each record in the queue is Lambda's destination record of an upload event whose every attempt
failed. By default the original event is sent to the function again (asynchronously: Lambda
retries it, and a new record comes back should it fail again); with --workflow, the objects it
names are re-rendered by one reprocess run of BackfillStateMachine, waited for. A record is deleted only once its
replay was accepted; what cannot be read stays in the queue. The work is image_pipeline.replay.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from image_pipeline.replay import ReplayReport, replay_failures, replay_through_workflow
from image_pipeline.reprocess import MAX_OBJECTS
from pipeline_cli.commands.redrive import RedriveError, queue_url


def describe(report: ReplayReport) -> str:
    lines = [f"received {report.received} destination records; replayed {report.replayed}"]
    lines += [f"  {obj}" for obj in report.objects]
    if report.execution:
        lines.append(f"reprocess execution: {report.execution}")
    if report.unreadable:
        lines.append(f"{report.unreadable} records are not destination records and stay in the queue")
    if report.not_accepted:
        lines.append(f"{report.not_accepted} replays were not accepted and stay in the queue")
    if report.first_problem:
        lines.append(f"first problem: {report.first_problem}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pipeline replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", required=True, help="ThumbnailFailuresQueue: URL, ARN or name")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--function", help="invoke this function (default: the one each record names)")
    target.add_argument("--workflow", help="re-render in a reprocess run of BackfillStateMachine (its ARN)")
    parser.add_argument("--max", type=int, dest="max_records", help="replay at most N records")
    args = parser.parse_args(list(argv))
    if args.max_records is not None and args.max_records < 1:
        parser.error("--max must be at least 1")
    return args


def main(argv: Sequence[str]) -> int:
    from image_pipeline.clients import AwsClients

    args = parse_args(argv)
    clients = AwsClients()
    try:
        url = queue_url(clients.sqs, args.queue)
    except RedriveError as error:
        print(f"pipeline replay: {error}", file=sys.stderr)
        return 1
    if args.workflow:
        stepfunctions = clients.session.client("stepfunctions")
        limit = args.max_records or MAX_OBJECTS
        report = replay_through_workflow(clients.sqs, stepfunctions, url, args.workflow, max_records=limit)
    else:
        report = replay_failures(
            clients.sqs, clients.lambda_, url, function=args.function, max_records=args.max_records
        )
    print(describe(report))
    return 0 if report.ok else 1
