"""`ct-insider consume sqs`: the bridge, pulling a commercetools `SQS` subscription's queue
into its group commit (bridge/sqs.py) beside its HTTP routes (health, readiness, /stats)."""

from __future__ import annotations

import argparse

from ct_insider.config import (
    BridgeSettings,
    CommercetoolsSettings,
    SqsSettings,
    TemporalSettings,
    load,
)
from ct_insider.logging import get_logger
from starters.output import ExitCode, UsageError

log = get_logger(__name__)


async def consume_sqs(args: argparse.Namespace) -> int:
    sqs = load(SqsSettings)
    import boto3

    if boto3.session.Session(region_name=sqs.region).region_name is None:
        raise UsageError("no AWS region: set SQS_REGION (or AWS_REGION, or a profile's region)")
    bridge, temporal, ct = load(BridgeSettings), load(TemporalSettings), load(CommercetoolsSettings)
    from bridge.server import serve

    log.info("consuming SQS", queue=sqs.queue_url, region=sqs.region, endpoint=sqs.endpoint_url)
    await serve(bridge, temporal, ct, sqs=sqs)
    return ExitCode.OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    consume = commands.add_parser(
        "consume",
        help="serve the bridge and pull a queue commercetools delivers to into it",
        epilog="example: SQS_QUEUE_URL=https://sqs.eu-west-1.amazonaws.com/123/ct "
        "ct-insider consume sqs",
    )
    queues = consume.add_subparsers(dest="queue", required=True)
    sqs = queues.add_parser(
        "sqs",
        help="long-poll an SQS queue (SQS_QUEUE_URL, SQS_REGION, AWS credentials from the "
        "standard chain); its messages are deleted once Temporal stored them, or once "
        "dead-lettered; serves the bridge's routes too (BRIDGE_TOKEN, BRIDGE_PORT)",
        epilog="example: SQS_QUEUE_URL=https://sqs.eu-west-1.amazonaws.com/123/ct "
        "SQS_REGION=eu-west-1 ct-insider consume sqs",
    )
    sqs.set_defaults(handler=consume_sqs)
