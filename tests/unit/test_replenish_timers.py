"""A customer's replenishment timers (the workflow's pure state) and the grouping of
timer changes per customer: arm once, move on a repeat purchase, disarm on a refund,
only future timers from a backfill, bounded SKUs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ct_insider.config import ReplenishmentSettings
from ct_insider.insider.models import Identifiers
from ct_insider.mapping.config import MappingConfig
from ct_insider.replenishment.model import ArmTimer, DisarmTimer, TimerChange
from ct_insider.replenishment.port import by_customer
from ct_insider.replenishment.reminders import reminder_event, reminder_id
from ct_insider.replenishment.state import CustomerTimers
from ct_insider.setup.inone import inone_requirements

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 86_400.0


def arm(
    order: str = "o-1",
    sku: str = "SKU-A",
    at: datetime = T0,
    period: float = 30,
    customer: str = "c-1",
    line: str = "l-1",
) -> ArmTimer:
    return ArmTimer(
        customer_key=customer,
        identifiers=Identifiers(uuid=customer),
        sku=sku,
        order_id=order,
        line_id=line,
        name="Coffee",
        quantity=2,
        purchased_at=at,
        period_days=period,
        period_source="attribute",
    )


def disarm(order: str = "o-1", sku: str = "SKU-A", line: str = "l-1") -> DisarmTimer:
    return DisarmTimer(customer_key="c-1", sku=sku, order_id=order, line_id=line, reason="refund")


def test_replenish_a_purchase_arms_once_however_often_it_arrives() -> None:
    # Given a customer's timers
    timers = CustomerTimers(customer_key="c-1")
    # When the same purchase arrives three times (redeliveries, replays)
    outcomes = [timers.apply(arm(), DAY, 10) for _ in range(3)]
    # Then it armed once, due 30 days after the purchase
    assert outcomes == ["armed", "unchanged", "unchanged"]
    [armed] = timers.armed()
    assert (armed.kind, armed.key, armed.due_at) == (
        "replenishment",
        "c-1/SKU-A",
        T0 + timedelta(days=30),
    )
    assert armed.what == "replenishment of SKU-A (every 30 days, attribute)"


def test_replenish_a_repeat_purchase_moves_the_timer_and_an_older_one_does_not() -> None:
    timers = CustomerTimers(customer_key="c-1")
    timers.apply(arm("o-2", at=T0 + timedelta(days=10)), DAY, 10)
    # When an older purchase arrives late, then nothing moves
    assert timers.apply(arm("o-1", at=T0), DAY, 10) == "unchanged"
    # When a newer one arrives, the timer moves to it
    assert timers.apply(arm("o-3", at=T0 + timedelta(days=20)), DAY, 10) == "moved"
    assert timers.earliest_due() == T0 + timedelta(days=50)
    assert timers.skus["SKU-A"].purchase.order_id == "o-3"


def test_replenish_a_refund_disarms_only_the_line_holding_the_timer() -> None:
    timers = CustomerTimers(customer_key="c-1")
    timers.apply(arm("o-2", at=T0 + timedelta(days=10)), DAY, 10)
    # When an earlier purchase's line is refunded, the later purchase still counts
    assert timers.apply(disarm("o-1"), DAY, 10) == "unchanged"
    assert timers.earliest_due() is not None
    # When the line holding the timer is refunded, nothing is armed
    assert timers.apply(disarm("o-2"), DAY, 10) == "disarmed"
    assert timers.earliest_due() is None
    assert timers.armed() == []
    # And a replay of that purchase does not arm it again
    assert timers.apply(arm("o-2", at=T0 + timedelta(days=10)), DAY, 10) == "unchanged"


def test_replenish_due_timers_and_sent_ones_are_not_sent_again() -> None:
    timers = CustomerTimers(customer_key="c-1")
    timers.apply(arm(sku="SKU-A", period=10), DAY, 10)
    timers.apply(arm(sku="SKU-B", period=20, line="l-2"), DAY, 10)
    # When 15 days have passed, only SKU-A is due
    due = timers.due(T0 + timedelta(days=15))
    assert [t.purchase.sku for t in due] == ["SKU-A"]
    timers.mark_sent(due)
    assert timers.due(T0 + timedelta(days=15)) == []
    assert timers.earliest_due() == T0 + timedelta(days=20)


def test_replenish_a_purchase_arriving_while_its_reminder_goes_out_keeps_its_timer() -> None:
    timers = CustomerTimers(customer_key="c-1")
    timers.apply(arm(period=10), DAY, 10)
    due = timers.due(T0 + timedelta(days=10))
    # When a new purchase of the SKU arrives before the send is recorded
    timers.apply(arm("o-2", at=T0 + timedelta(days=10), period=10), DAY, 10)
    timers.mark_sent(due)
    # Then the new purchase's timer is still armed
    assert timers.earliest_due() == T0 + timedelta(days=20)


def test_replenish_skus_per_customer_are_bounded() -> None:
    timers = CustomerTimers(customer_key="c-1")
    # Given a cap of 2 SKUs, both armed
    timers.apply(arm(sku="A", line="a"), DAY, 2)
    timers.apply(arm(sku="B", line="b"), DAY, 2)
    # When a third SKU arrives, it is refused and counted
    assert timers.apply(arm(sku="C", line="c"), DAY, 2) == "refused"
    assert timers.refused == 1
    assert len(timers.skus) == 2
    # When one of them was sent, its record makes room
    timers.mark_sent(timers.due(T0 + timedelta(days=30))[:1])
    assert timers.apply(arm(sku="C", line="c"), DAY, 2) == "armed"
    assert sorted(timers.skus) == ["B", "C"]


def test_replenish_grouping_marks_past_due_arms_lapsed_and_drops_lines_undone_at_once() -> None:
    now = T0 + timedelta(days=40)
    changes: list[TimerChange] = [
        arm("old", at=T0),  # due at day 30: past
        arm("new", at=T0 + timedelta(days=20), customer="c-2"),  # due at day 50
        arm("cancelled", at=T0 + timedelta(days=20), line="l-9"),
        DisarmTimer(
            customer_key="c-1",
            sku="SKU-A",
            order_id="cancelled",
            line_id="l-9",
            reason="cancellation",
        ),
        disarm("elsewhere"),
    ]
    # When grouped per customer at day 40
    groups, past_due = by_customer(changes, now, DAY)
    # Then the past-due arm is counted and marked lapsed, the line armed and cancelled at
    # once is dropped
    assert past_due == 1
    assert {
        g.customer_key: [(c.action, c.order_id, getattr(c, "lapsed", None)) for c in g.changes]
        for g in groups
    } == {
        "c-1": [("arm", "old", True), ("disarm", "elsewhere", None)],
        "c-2": [("arm", "new", False)],
    }


def test_replenish_a_later_purchase_already_due_ends_the_earlier_timer_without_arming() -> None:
    timers = CustomerTimers(customer_key="c-1")
    # Given a purchase with a long period, armed
    timers.apply(arm("o-1", period=60), DAY, 10)
    # When a later purchase arrives whose own (shorter) reminder was already due
    late = arm("o-2", at=T0 + timedelta(days=10), period=5).model_copy(update={"lapsed": True})
    # Then the earlier purchase's timer ends, and nothing is armed
    assert timers.apply(late, DAY, 10) == "lapsed"
    assert timers.earliest_due() is None
    # And a lapsed purchase alone creates no record
    assert CustomerTimers(customer_key="c-2").apply(late, DAY, 10) == "unchanged"


def test_replenish_reminder_event_is_deterministic() -> None:
    timers = CustomerTimers(customer_key="c-1")
    timers.apply(arm(), DAY, 10)
    [timer] = timers.due(T0 + timedelta(days=30))
    event = reminder_event(timer, "replenishment_due")
    # Then its id and timestamp come from the purchase alone (a repeat is recognisable)
    assert event == reminder_event(timer.model_copy(deep=True), "replenishment_due")
    assert event.event_name == "replenishment_due"
    assert event.timestamp == "2026-01-31T00:00:00Z"
    assert event.event_params == {
        "product_id": "SKU-A",
        "name": "Coffee",
        "quantity": 2,
        "custom": {
            "event_id": reminder_id(timer),
            "last_purchase_date": "2026-01-01T00:00:00Z",
            "period_days": 30.0,
            "period_source": "attribute",
            "order_id": "o-1",
        },
    }


def test_replenish_inone_list_holds_the_reminder_event_and_every_param_it_sends() -> None:
    # Given a reminder as it is sent
    timers = CustomerTimers(customer_key="c-1")
    timers.apply(arm(), DAY, 10)
    [timer] = timers.due(T0 + timedelta(days=30))
    event = reminder_event(timer, "refill_due")
    # When the InOne requirements are listed with replenishment on (and off)
    on = inone_requirements(
        MappingConfig(), ReplenishmentSettings(enabled=True, event_name="refill_due")
    )
    off = inone_requirements(MappingConfig(), ReplenishmentSettings())
    # Then the custom event and each of its custom params are listed, only when on
    [listed] = [e for e in on.events if e.name == "refill_due"]
    assert listed.custom
    assert set(event.event_params["custom"]) == set(listed.params)
    assert "refill_due" not in off.custom_events
