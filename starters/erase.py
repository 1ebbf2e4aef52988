"""`ct-insider erase --customer ID | --email ADDRESS`: erase one person (GDPR).

Starts an ErasureWorkflow on the worker (ID `erase-<customer id>`, or `erase-email-<hash>`:
never the address itself); `--wait` waits for it and lists what was erased. Emails and
phone numbers are shown masked (the fingerprint the logs use).

A customer still in commercetools is refused (exit 2): the next delta, backfill or repair
would send them to Insider again. Delete the customer in commercetools instead: its
CustomerDeleted message erases every identity. `--force` erases now anyway.
"""

from __future__ import annotations

import argparse
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.erasure.eraser import ErasureReport
from ct_insider.erasure.plan import ErasureRequest, erasure_workflow_id
from ct_insider.mapping import normalize
from starters.output import (
    EXIT_CODES_HELP,
    ExitCode,
    UsageError,
    add_json_flag,
    fail,
    print_json,
    stdout,
    table,
)
from workflows.erasure import ErasureWorkflow


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "erase",
        help="erase one person from Insider and the connector's records",
        description=__doc__,
        epilog="example: ct-insider erase --customer 6f1c2d7e-... --wait\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer", metavar="ID", help="the commercetools customer id")
    who.add_argument(
        "--email", metavar="ADDRESS", help="an email: its customer, else a guest's orders"
    )
    parser.add_argument(
        "--wait", action="store_true", help="wait for the erasure and list what was erased"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="erase a customer that still exists in commercetools (the next sync of it "
        "re-creates the profile)",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=run_erase)


def erasure_request(customer: str | None, email: str | None) -> ErasureRequest:
    if customer is not None:
        if not customer.strip():
            raise UsageError("--customer needs a customer id")
        return ErasureRequest(customer_id=customer.strip())
    normalized = normalize.email(email)
    if normalized is None:
        raise UsageError("--email is not a valid email address")
    return ErasureRequest(email=normalized, email_as_written=(email or "").strip())


async def registered_customer(ct: CommercetoolsClient, request: ErasureRequest) -> str | None:
    """The id of the commercetools customer the request names, if it still exists."""
    if request.customer_id:
        found = await ct.get_by_id("customers", request.customer_id)
        return request.customer_id if found else None
    emails = [e for e in (request.email_as_written, request.email) if e]
    matches: list[dict[str, Any]] = await ct.find_in(
        "customers", emails, lambda q: f"email in ({q})"
    )
    return str(matches[0]["id"]) if matches else None


def still_registered(customer_id: str) -> UsageError:
    return UsageError(
        f"customer {customer_id} still exists in commercetools: delete the customer in "
        "commercetools first; its CustomerDeleted message erases every identity; or pass "
        "--force to erase now knowing the next sync of this customer re-creates the profile"
    )


async def start_erasure(
    client: Client, task_queue: str, request: ErasureRequest
) -> WorkflowHandle[ErasureWorkflow, ErasureReport]:
    """One erasure per person at a time: asking again while it runs attaches to it; a
    finished one may run again (it finds what appeared since)."""
    return await client.start_workflow(
        ErasureWorkflow.run,
        request,
        id=erasure_workflow_id(request),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


async def run_erase(args: argparse.Namespace) -> int:
    from ct_insider.config import CommercetoolsSettings, TemporalSettings, load
    from ct_insider.temporal import connect
    from starters.watch import require_search_attributes, watched

    request = erasure_request(args.customer, args.email)
    if not args.force:
        async with CommercetoolsClient(load(CommercetoolsSettings)) as ct:
            registered = await registered_customer(ct, request)
        if registered is not None:
            raise still_registered(registered)
    temporal = load(TemporalSettings)
    client = await connect(temporal)
    await require_search_attributes(client)
    handle = await start_erasure(client, temporal.task_queue, request)
    if not args.wait:
        if args.json:
            print_json({"workflow_id": handle.id, "status": "started"})
        else:
            stdout().print(f"erasure started: workflow {handle.id}", markup=False)
        return ExitCode.OK
    try:
        report = await watched(client, handle.id, handle.result())
    except WorkflowFailureError as exc:
        # e.g. Insider refused the credentials: nothing more is tried until it is fixed
        fail(f"erase: workflow {handle.id} failed: {exc.cause}")
        return ExitCode.FAILURES
    if args.json:
        print_json({"workflow_id": handle.id, **report.model_dump(mode="json")})
    else:
        show(handle.id, report)
    if report.failed:
        fail(f"erase: {len(report.failures)} identifier(s) could not be erased")
        return ExitCode.FAILURES
    return ExitCode.OK


def show(workflow_id: str, report: ErasureReport) -> None:
    counts = report.by_kind()
    rows = [(kind, looked_up, counts.get(kind, 0)) for kind, looked_up in report.looked_up.items()]
    title = (
        f"erasure {workflow_id} ({report.action}): {len(report.profiles)} Insider "
        f"profile(s), {report.dead_letters} dead letter(s) removed, "
        f"{report.orders} order(s) of the person"
    )
    stdout().print(table(title, ("identifier", "looked up", "profiles erased"), rows))
    if report.profiles:
        stdout().print(
            table(
                "profiles",
                ("found by", "identifier", "insider id"),
                ((p.kind, p.identifier, p.insider_id) for p in report.profiles),
            )
        )
    for failure in report.failures:
        stdout().print(f"not erased: {failure}", markup=False)
    for skipped in report.skipped:
        stdout().print(f"another person's profile, left alone: {skipped}", markup=False)
    for pending in report.pending:
        stdout().print(f"deleted, Insider still finishing: {pending}", markup=False)
