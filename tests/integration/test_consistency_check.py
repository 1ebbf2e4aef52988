"""Consistency checks: drift planted in the Insider emulator is reported, then repaired."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from ct_insider.checks.drift import DriftReport
from ct_insider.checks.sampling import sample_ids
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.logging import pii_fingerprint
from ct_insider.sync.ledger import DeliveryLedger
from starters.backfill import start_backfill
from starters.check import outcome, start_check
from starters.output import ExitCode
from tests.conftest import Emulators, eventually, run_cli, running_worker
from workflows.backfill import BackfillInput
from workflows.check import CheckInput

pytestmark = pytest.mark.integration

# The worker's profile quota in this test (units a minute), and the emulator's.
PROFILE_UNITS_PER_MINUTE = 100


def plant(emulators: Emulators, **drift: Any) -> None:
    httpx.post(f"{emulators.insider_url}/_emulator/drift", json=drift).raise_for_status()


def purchases_of(emulators: Emulators, order_number: str) -> Counter[str]:
    return Counter(
        e["event_params"]["product_id"]
        for e in emulators.insider_events("purchase")
        if e["event_params"]["event_group_id"] == order_number
    )


def order_lines(emulators: Emulators, order_number: str) -> dict[str, Any]:
    [order] = emulators.ct("GET", f'orders?where=orderNumber="{order_number}"')["results"]
    return dict(order)


async def test_planted_drift_is_reported_and_repaired(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emulators = clean_emulators
    httpx.post(
        f"{emulators.insider_url}/_emulator/limits", json={"profile": PROFILE_UNITS_PER_MINUTE}
    ).raise_for_status()
    # Given 6 customers and 8 orders (the fifth a guest order), synced to Insider
    seeder = emulators.seeder()
    customers = seeder.customers(6)
    seeder.orders(8, customers, seeder.catalog(3))
    async with running_worker(
        client, task_queue, emulators, profile_units_per_minute=PROFILE_UNITS_PER_MINUTE
    ):
        await (await start_backfill(client, task_queue, BackfillInput(target="all"))).result()

        # And drift planted behind the connector's back
        deleted_id, _ = customers[4]  # no orders of its own
        stale_id, _ = customers[5]
        plant(emulators, action="delete_profile", identifiers={"uuid": deleted_id})
        plant(
            emulators,
            action="set_attribute",
            identifiers={"uuid": stale_id},
            name="name",
            value="Mallory Planted",
        )
        plant(
            emulators,
            action="set_attribute",
            identifiers={"uuid": stale_id},
            name="language",
            value="xx_XX",
        )
        lost = order_lines(emulators, "ORD-0000002")
        lost_sku = lost["lineItems"][0]["variant"]["sku"]
        plant(
            emulators,
            action="delete_event",
            identifiers={"uuid": customers[2][0]},
            match={
                "event_name": "purchase",
                "event_group_id": "ORD-0000002",
                "product_id": lost_sku,
            },
        )
        doubled = order_lines(emulators, "ORD-0000003")
        doubled_sku = doubled["lineItems"][0]["variant"]["sku"]
        plant(
            emulators,
            action="duplicate_event",
            identifiers={"uuid": customers[3][0]},
            match={
                "event_name": "purchase",
                "event_group_id": "ORD-0000003",
                "product_id": doubled_sku,
            },
        )

        # When customers and orders are checked
        customers_report = await (
            await start_check(client, task_queue, CheckInput(entity="customers"))
        ).result()
        # (orders placed just now: judged at once, with no freshness margin)
        orders_report = await (
            await start_check(
                client, task_queue, CheckInput(entity="orders", recent_margin_seconds=0)
            )
        ).result()

        # Then the report names exactly the planted drift
        assert (customers_report.sampled, customers_report.checked) == (6, 6)
        assert [d.record_id for d in customers_report.missing] == [deleted_id]
        [stale] = customers_report.stale
        assert stale.record_id == stale_id
        assert {f.field: f.found for f in stale.fields} == {
            "name": pii_fingerprint("Mallory Planted"),
            "language": "xx_XX",
        }
        assert "Mallory" not in customers_report.model_dump_json()  # personal values masked
        assert customers_report.counts.total == 2
        assert outcome(customers_report) == ExitCode.FAILURES

        lost_line = next(li for li in lost["lineItems"] if li["variant"]["sku"] == lost_sku)
        assert [(d.record_id, d.item) for d in orders_report.missing] == [
            (lost["id"], f"purchase:{lost_line['id']}")
        ]
        [duplicate] = orders_report.duplicated
        assert (duplicate.record_id, duplicate.count) == (doubled["id"], 1)
        assert orders_report.extra == []
        assert orders_report.stale == []
        assert orders_report.counts.total == 2

        # When both are checked again with repair
        repaired = [
            await (
                await start_check(
                    client,
                    task_queue,
                    CheckInput(entity=entity, repair=True, recent_margin_seconds=0),
                )
            ).result()
            for entity in ("customers", "orders")
        ]
        assert [r.repaired for r in repaired] == [2, 1]

        # Then a further check finds nothing but the duplicate, which needs manual action
        # (every record this time, paged instead of sampled)
        after = [
            await (
                await start_check(
                    client, task_queue, CheckInput(entity=entity, all=True, recent_margin_seconds=0)
                )
            ).result()
            for entity in ("customers", "orders")
        ]
    assert [(r.sampled, r.checked) for r in after] == [(6, 6), (8, 8)]
    assert after[0].counts.total == 0
    assert outcome(after[0]) == ExitCode.OK
    assert after[1].counts.total == 1
    assert [d.record_id for d in after[1].duplicated] == [doubled["id"]]
    assert any("manual" in note for note in after[1].notes)
    # The lost purchase was sent once more, and nothing else was
    expected_lost = Counter(li["variant"]["sku"] for li in lost["lineItems"] for _ in range(1))
    assert purchases_of(emulators, "ORD-0000002") == expected_lost
    assert (
        emulators.insider_stats()["events"]
        == sum(len(order_lines(emulators, f"ORD-{n:07d}")["lineItems"]) for n in range(8)) + 1
    )  # the planted duplicate stays
    # The ledger lists every event of the repaired order as delivered
    async with CommercetoolsClient(emulators.ct_settings()) as ct:
        entry = (await DeliveryLedger(ct).entries([lost["id"]]))[lost["id"]]
    assert entry.delivered == {f"purchase:{li['id']}" for li in lost["lineItems"]}
    # The reads stayed within the profile quota: none refused, units as Insider charged
    reports = [customers_report, orders_report, *repaired, *after]
    units = sum(r.units_spent for r in reports)
    assert units == 2.5 * sum(r.profile_reads for r in reports)
    assert units <= PROFILE_UNITS_PER_MINUTE
    assert "profile:429" not in emulators.insider_stats()["statuses"]
    assert emulators.insider_stats()["requests"]["profile"] == sum(r.profile_reads for r in reports)

    # And the Temporal UI finds the checks by entity, and those that left drift: the first
    # check of each, and every later orders check (its duplicate stays)
    async def listed() -> tuple[int, int]:
        runs = f'CtRunKind="check" AND TaskQueue="{task_queue}"'
        found = await client.count_workflows(f'{runs} AND CtEntity="customers"')
        drifted = await client.count_workflows(f'{runs} AND CtOutcome="drift"')
        return found.count, drifted.count

    await eventually(listed, until=lambda counts: counts == (3, 4), what="3 checks, 4 drifted")


async def test_a_wrong_catalog_price_is_reported_from_the_fingerprints_and_repaired(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emulators = clean_emulators
    # Given 2 products (3 variants, 3 markets each) that Insider's catalog holds
    emulators.seeder().catalog(2)
    async with running_worker(client, task_queue, emulators):
        await (await start_backfill(client, task_queue, BackfillInput(target="catalog"))).result()
        # And a price change that never reached Insider (its item now shows a wrong price)
        product = emulators.ct("GET", "products?limit=1&sort=id+asc")["results"][0]
        variant = product["masterData"]["current"]["masterVariant"]
        price_id = variant["prices"][0]["id"]
        new_price = {"value": {"currencyCode": "USD", "centAmount": 4321}, "country": "US"}
        emulators.ct(
            "POST",
            f"products/{product['id']}",
            {
                "version": product["version"],
                "actions": [
                    {
                        "action": "changePrice",
                        "priceId": price_id,
                        "price": new_price,
                        "staged": False,
                    }
                ],
            },
        )
        wrong_key = (variant["sku"], "en_US")
        assert catalog_item(emulators, *wrong_key)["price"] != {"USD": 43.21}

        # When the catalog is checked
        report = await (
            await start_check(client, task_queue, CheckInput(entity="catalog"))
        ).result()

        # Then exactly that item is stale in price, compared with the fingerprint store
        assert report.source == "fingerprint-store"
        assert (report.sampled, report.checked) == (2, 2)
        [stale] = report.stale
        assert (stale.record_id, stale.item) == (product["id"], f"{variant['sku']}@en_US")
        assert {f.field: f.expected for f in stale.fields}["price"] == repr({"USD": 43.21})
        assert report.counts.total == 1
        assert any("cannot be read" in note for note in report.notes)

        # And the operator's command says so too (and exits 1: drift left)
        shown = await cli(client, task_queue, emulators, "check", "catalog", "--wait")
        assert shown.returncode == ExitCode.FAILURES, shown.stderr
        assert f"{variant['sku']}@en_US" in shown.stdout

        # When it is checked with repair, and once more (by the command, for a script)
        repaired = await (
            await start_check(client, task_queue, CheckInput(entity="catalog", repair=True))
        ).result()
        checked = await cli(client, task_queue, emulators, "check", "catalog", "--wait", "--json")
        assert checked.returncode == ExitCode.OK, checked.stderr
        after = DriftReport.model_validate(json.loads(checked.stdout)["report"])

    # Then Insider holds the right price, and the fingerprints agree (no drift left)
    assert repaired.repaired == 1
    assert catalog_item(emulators, *wrong_key)["price"] == {"USD": 43.21}
    assert after.counts.total == 0
    assert outcome(after) == ExitCode.OK


async def cli(
    client: Client, task_queue: str, emulators: Emulators, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run `ct-insider <args>` wired to the emulators and this test's worker."""
    env = emulators.environment(client.service_client.config.target_host, task_queue)
    return await asyncio.to_thread(run_cli, env, *args)


def catalog_item(emulators: Emulators, item_id: str, locale: str) -> dict[str, Any]:
    body = httpx.get(f"{emulators.insider_url}/_emulator/catalog", params={"locale": locale}).json()
    [item] = [i for i in body["items"] if i["item_id"] == item_id]
    return dict(item)


class Pivots(random.Random):
    """A "random" source that picks the given pivots, in order: a sample made of them is
    known in advance."""

    def __init__(self, pivots: list[str]) -> None:
        super().__init__(0)
        self._pivots = [uuid.UUID(p).int for p in pivots]

    def getrandbits(self, k: int, /) -> int:
        return self._pivots.pop(0)


async def test_a_sample_takes_runs_after_random_pivots_and_is_distinct(
    clean_emulators: Emulators,
) -> None:
    # Given 40 customers (s: their ids in order)
    s = sorted(customer_id for customer_id, _ in clean_emulators.seeder().customers(40))
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        # When samples of 12 are taken after two sets of pivots (a run of 10 after each,
        # then the 2 still wanted), one of them past the last id (wrapping to the first)
        first = await sample_ids(ct, "customers", None, 12, Pivots([s[19], s[29]]))
        wrapped = await sample_ids(ct, "customers", None, 12, Pivots([s[39], s[9]]))
        # And one larger than the population
        everyone = await sample_ids(ct, "customers", None, 100)
    # Then each holds the runs after its pivots, distinct, and "all" is all
    assert first == sorted(s[20:30] + s[30:32])
    assert wrapped == sorted(s[0:10] + s[10:12])
    assert len(set(first)) == 12
    assert set(everyone) == set(s)
