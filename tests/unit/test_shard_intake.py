"""The rules a journey shard applies to arriving signals and to the batches it delivers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from ct_insider.journeys.intake import Verdict, accept, mark_deleted, take_batch
from ct_insider.journeys.memory import SeenKeys, ShardMemory
from ct_insider.journeys.signals import JourneyIdentity, JourneySignal, Market, digest
from ct_insider.journeys.storefront import EventIdentity, StorefrontEvent

NOW = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
BATCH_BYTES = 512_000


def _memory(seen_capacity: int = 1_000) -> ShardMemory:
    return ShardMemory(seen_capacity=seen_capacity, identity_capacity=1_000)


def _view(
    event_id: str,
    *,
    customer_id: str | None = "c-1",
    anonymous_id: str | None = None,
    occurred_at: datetime = NOW,
    currency: str | None = None,
    country: str | None = None,
    sequence_number: int | None = None,
) -> JourneySignal:
    """A storefront product view, as the bridge hands it to a shard."""
    event = StorefrontEvent(
        event_id=event_id,
        type="product_view",
        occurred_at=occurred_at,
        identity=EventIdentity(customer_id=customer_id, anonymous_id=anonymous_id),
        sku="SKU-1",
        currency=currency,
        country=country,
    )
    return JourneySignal(
        dedupe_key=event_id,
        kind="storefront",
        type="product_view",
        occurred_at=occurred_at,
        identity=JourneyIdentity(customer_id=customer_id, anonymous_id=anonymous_id),
        sequence_number=sequence_number,
        market=Market(currency=currency, country=country),
        storefront=event,
    )


def _customer(
    message_type: str,
    version: int,
    *,
    customer_id: str = "c-1",
    occurred_at: datetime = NOW,
) -> JourneySignal:
    return JourneySignal(
        dedupe_key=f"msg-{message_type}-{version}",
        kind="customer",
        type=message_type,
        occurred_at=occurred_at,
        identity=JourneyIdentity(customer_id=customer_id),
        resource_id=customer_id,
        resource_version=version,
    )


def _order(
    order_id: str,
    *,
    customer_id: str = "c-1",
    occurred_at: datetime = NOW,
    market: Market | None = None,
) -> JourneySignal:
    return JourneySignal(
        dedupe_key=f"msg-{order_id}",
        kind="order",
        type="OrderCreated",
        occurred_at=occurred_at,
        identity=JourneyIdentity(customer_id=customer_id),
        resource_id=order_id,
        resource_version=1,
        market=market or Market(),
    )


def _forgetful_memory(through: datetime) -> ShardMemory:
    """A small memory that has forgotten signals it received up to `through`."""
    memory = _memory(seen_capacity=16)
    for number in range(20):
        verdict = accept(memory, _view(f"filler-{number}", occurred_at=through), through)
        assert verdict is Verdict.ACCEPTED
    assert isinstance(memory.seen, SeenKeys)
    assert memory.seen.forgotten_through is not None
    return memory


# --- accept ---------------------------------------------------------------------------------


def test_a_signal_with_a_seen_dedupe_key_is_a_duplicate() -> None:
    # Given a shard that accepted a storefront event
    memory = _memory()
    assert accept(memory, _view("e-1"), NOW) is Verdict.ACCEPTED
    # When the same event arrives again (a retry of the storefront)
    verdict = accept(memory, _view("e-1"), NOW + timedelta(seconds=5))
    # Then it is a duplicate, while another event is not
    assert verdict is Verdict.DUPLICATE
    assert accept(memory, _view("e-2"), NOW) is Verdict.ACCEPTED


def test_a_redriven_signal_is_accepted_although_seen_and_never_doubted() -> None:
    # Given a shard that forgot old signals and then accepted an old one (thus forgotten)
    old = NOW - timedelta(hours=2)
    memory = _forgetful_memory(through=NOW - timedelta(hours=1))
    original = _view("e-old", occurred_at=old)
    assert accept(memory, original, NOW) is Verdict.ACCEPTED
    assert original.forgotten
    assert digest("e-old") in memory.seen
    # When an operator re-drives it from the dead-letter store
    redriven = _view("e-old", occurred_at=old)
    redriven.redrive_of = "dead-letter-1@3"
    verdict = accept(memory, redriven, NOW)
    # Then it is accepted and not looked up as forgotten, while a plain repeat is still a duplicate
    assert verdict is Verdict.ACCEPTED
    assert not redriven.forgotten
    assert accept(memory, _view("e-old", occurred_at=old), NOW) is Verdict.DUPLICATE
    # And re-driving the same version of the letter again is a duplicate too (a retried
    # `dlq retry`), while its next version (it failed again since) goes through
    again = _view("e-old", occurred_at=old)
    again.redrive_of = "dead-letter-1@3"
    assert accept(memory, again, NOW) is Verdict.DUPLICATE
    newer = _view("e-old", occurred_at=old)
    newer.redrive_of = "dead-letter-1@4"
    assert accept(memory, newer, NOW) is Verdict.ACCEPTED


def test_a_customer_change_at_or_below_the_known_version_is_stale() -> None:
    # Given a shard that accepted version 5 of a customer's change
    memory = _memory()
    assert accept(memory, _customer("CustomerFirstNameSet", 5), NOW) is Verdict.ACCEPTED
    # When changes of versions 5, 4 and 6 arrive (different messages)
    same = accept(memory, _customer("CustomerLastNameSet", 5), NOW)
    older = accept(memory, _customer("CustomerAddressAdded", 4), NOW)
    newer = accept(memory, _customer("CustomerAddressAdded", 6), NOW)
    # Then only the newer one is accepted
    assert same is Verdict.STALE
    assert older is Verdict.STALE
    assert newer is Verdict.ACCEPTED
    # And the known version moved on
    state = memory.identities.get("customer-c-1")
    assert state is not None
    assert state.version == 6


def test_versions_are_tracked_per_customer() -> None:
    # Given version 9 of one customer
    memory = _memory()
    assert accept(memory, _customer("CustomerFirstNameSet", 9, customer_id="c-1"), NOW) is (
        Verdict.ACCEPTED
    )
    # When another customer's version 2 arrives
    verdict = accept(memory, _customer("CustomerFirstNameSet", 2, customer_id="c-2"), NOW)
    # Then it is not stale
    assert verdict is Verdict.ACCEPTED


@pytest.mark.parametrize(
    "message_type", ["CustomerCreated", "CustomerEmailChanged", "CustomerDeleted"]
)
def test_eventful_customer_messages_are_never_stale(message_type: str) -> None:
    # Given a shard that accepted version 5 of a customer's change
    memory = _memory()
    assert accept(memory, _customer("CustomerFirstNameSet", 5), NOW) is Verdict.ACCEPTED
    # When an eventful message of an older version arrives
    verdict = accept(memory, _customer(message_type, 3), NOW)
    # Then it is accepted all the same, and the known version does not go back
    assert verdict is Verdict.ACCEPTED
    state = memory.identities.get("customer-c-1")
    assert state is not None
    assert state.version == 5


def test_signals_of_a_deleted_identity_are_deleted() -> None:
    # Given a customer whose deletion was delivered
    memory = _memory()
    mark_deleted(memory, ["customer-c-1"], NOW)
    # When new signals of them and of someone else arrive
    theirs = accept(memory, _view("e-1", customer_id="c-1"), NOW)
    change = accept(memory, _customer("CustomerFirstNameSet", 99, customer_id="c-1"), NOW)
    others = accept(memory, _view("e-2", customer_id="c-2"), NOW)
    # Then theirs are dropped as deleted, the other person's are not
    assert theirs is Verdict.DELETED
    assert change is Verdict.DELETED
    assert others is Verdict.ACCEPTED


def test_a_signal_older_than_the_memory_reaches_is_marked_forgotten() -> None:
    # Given a small memory that forgot signals that happened up to an hour ago
    memory = _forgetful_memory(through=NOW - timedelta(hours=1))
    # When a signal that happened two hours ago arrives, and one that happened now
    old = _view("e-old", occurred_at=NOW - timedelta(hours=2))
    fresh = _view("e-fresh", occurred_at=NOW)
    old_verdict = accept(memory, old, NOW)
    fresh_verdict = accept(memory, fresh, NOW)
    # Then both are accepted, only the old one marked forgotten (its delivery looks it up)
    assert old_verdict is Verdict.ACCEPTED
    assert fresh_verdict is Verdict.ACCEPTED
    assert old.forgotten
    assert not fresh.forgotten


def test_nothing_is_marked_forgotten_while_nothing_was_forgotten() -> None:
    # Given a memory with room to spare
    memory = _memory()
    # When a very old signal arrives
    old = _view("e-old", occurred_at=NOW - timedelta(days=30))
    verdict = accept(memory, old, NOW)
    # Then it is accepted, not marked forgotten
    assert verdict is Verdict.ACCEPTED
    assert not old.forgotten


# --- take_batch -----------------------------------------------------------------------------


def test_take_batch_drops_pending_signals_of_a_deleted_identity() -> None:
    # Given pending signals of two customers
    memory = _memory()
    pending = [
        _view("e-1", customer_id="c-1", occurred_at=NOW),
        _view("e-2", customer_id="c-2", occurred_at=NOW + timedelta(seconds=1)),
        _view("e-3", customer_id="c-1", occurred_at=NOW + timedelta(seconds=2)),
    ]
    for signal in pending:
        assert accept(memory, signal, NOW) is Verdict.ACCEPTED
    # When one customer's deletion is delivered before the batch is taken
    mark_deleted(memory, ["customer-c-1"], NOW)
    batch = take_batch(memory, pending, max_batch=10, now=NOW, max_bytes=BATCH_BYTES)
    # Then their pending signals are dropped, the other customer's are delivered
    assert [s.dedupe_key for s in batch.deleted] == ["e-1", "e-3"]
    assert [s.dedupe_key for s in batch.signals] == ["e-2"]
    assert batch.rest == []


def test_take_batch_orders_by_time_then_sequence_and_caps_the_batch() -> None:
    # Given pending signals that arrived out of order, some at the same moment
    memory = _memory()
    t = NOW
    expected = [
        _order("o-0", occurred_at=t - timedelta(seconds=10)),
        _customer("CustomerFirstNameSet", 1, occurred_at=t),
        _order("o-1", occurred_at=t),
        _view("e-a", occurred_at=t, sequence_number=2),
        _view("e-b", occurred_at=t, sequence_number=7),
        _view("e-c", occurred_at=t + timedelta(milliseconds=1)),
        _view("e-d", occurred_at=t + timedelta(minutes=1)),
    ]
    expected[1].sequence_number = 0
    expected[2].sequence_number = 1
    pending = list(expected)
    random.Random(4).shuffle(pending)
    assert [s.dedupe_key for s in pending] != [s.dedupe_key for s in expected]
    # When a batch of at most four is taken
    batch = take_batch(memory, pending, max_batch=4, now=NOW, max_bytes=BATCH_BYTES)
    # Then it holds the first four in order of occurrence, the rest waits in order
    keys = [s.dedupe_key for s in expected]
    assert [s.dedupe_key for s in batch.signals] == keys[:4]
    assert [s.dedupe_key for s in batch.rest] == keys[4:]
    assert batch.deleted == []


def test_a_later_signal_gets_the_currency_of_its_identity_earlier_signal() -> None:
    # Given an order placed in EUR in Germany, then a view that names no market
    memory = _memory()
    order = _order("o-1", occurred_at=NOW, market=Market(currency="EUR", country="DE"))
    view = _view("e-1", occurred_at=NOW + timedelta(minutes=1))
    # When both are batched
    batch = take_batch(memory, [view, order], max_batch=10, now=NOW, max_bytes=BATCH_BYTES)
    # Then the view carries the order's market
    assert batch.signals[1] is view
    assert view.market.currency == "EUR"
    assert view.market.country == "DE"
    # And another person's view is not filled from it
    stranger = _view("e-2", customer_id="c-2", occurred_at=NOW + timedelta(minutes=2))
    take_batch(memory, [stranger], max_batch=10, now=NOW, max_bytes=BATCH_BYTES)
    assert stranger.market.currency is None


def test_market_is_carried_across_batches_and_a_signal_own_fields_win() -> None:
    # Given a batch that established the identity's market
    memory = _memory()
    take_batch(
        memory,
        [_order("o-1", market=Market(currency="EUR", country="DE", channel="web"))],
        max_batch=10,
        now=NOW,
        max_bytes=BATCH_BYTES,
    )
    # When a later signal says USD (but not the country), and then one says nothing
    later = NOW + timedelta(minutes=1)
    in_usd = _view("e-usd", occurred_at=later, currency="USD")
    silent = _view("e-silent", occurred_at=later + timedelta(seconds=1))
    take_batch(memory, [in_usd], max_batch=10, now=later, max_bytes=BATCH_BYTES)
    take_batch(memory, [silent], max_batch=10, now=later, max_bytes=BATCH_BYTES)
    # Then its own currency wins, the rest is filled; the next one inherits the new market
    assert in_usd.market == Market(currency="USD", country="DE", channel="web")
    assert silent.market == Market(currency="USD", country="DE", channel="web")


def test_signals_left_in_rest_do_not_touch_the_identity_market() -> None:
    # Given a batch cap of one and two signals of one identity, the later one in GBP
    memory = _memory()
    first = _view("e-1", occurred_at=NOW)
    second = _view("e-2", occurred_at=NOW + timedelta(seconds=1), currency="GBP")
    # When the batch is taken
    batch = take_batch(memory, [second, first], max_batch=1, now=NOW, max_bytes=BATCH_BYTES)
    # Then only the first was delivered and the market did not learn GBP yet
    assert batch.signals == [first]
    assert batch.rest == [second]
    state = memory.identities.get("customer-c-1")
    assert state is not None
    assert state.market.currency is None


def test_a_redelivery_of_a_signal_from_a_fast_clock_is_recognised_until_long_after_its_date() -> (
    None
):
    # Given a storefront whose clock runs 20 minutes ahead sent an event at NOW
    memory = _memory(seen_capacity=16)
    ahead = NOW + timedelta(minutes=20)
    assert accept(memory, _view("e-ahead", occurred_at=ahead), NOW) is Verdict.ACCEPTED
    # And 12 minutes later the memory had overflowed twice over
    later = NOW + timedelta(minutes=12)
    for number in range(32):
        assert accept(memory, _view(f"e-{number}", occurred_at=later), later) is Verdict.ACCEPTED
    # When the storefront redelivers it (same id, same stated time)
    redelivery = _view("e-ahead", occurred_at=ahead)
    # Then it is still known: its key is kept apart until our clock reaches its date
    assert accept(memory, redelivery, later) is Verdict.DUPLICATE
    # And then it joins the others, known as long as they are
    after = ahead + timedelta(seconds=1)
    accept(memory, _view("e-tick", occurred_at=after), after)
    assert accept(memory, _view("e-ahead", occurred_at=ahead), after) is Verdict.DUPLICATE
    # And once the memory has rolled over past it, a redelivery is doubtful (Insider is
    # asked), while a signal that happens now is not
    for number in range(32):
        at = after + timedelta(seconds=number)
        accept(memory, _view(f"e-last-{number}", occurred_at=at), at)
    last = after + timedelta(seconds=40)
    again = _view("e-ahead", occurred_at=ahead)
    assert accept(memory, again, last) is Verdict.ACCEPTED
    assert again.forgotten
    fresh = _view("e-fresh", occurred_at=last)
    accept(memory, fresh, last)
    assert not fresh.forgotten


# --- clock skew -----------------------------------------------------------------------------

# A shard remembering 3,000 keys fed 37.5 signals a second remembers them for 80 s: the
# horizon of the default 30,000 keys at 375 signals/s (1,500 events/s over 4 shards).
SKEW_CAPACITY = 3_000
SKEW_RATE = 37.5
SKEW_VISITORS = 5_000  # 20,000 visitors over 4 shards
IN_FLIGHT = timedelta(milliseconds=300)  # from a sane clock to the shard


def _lead(number: int) -> timedelta:
    """How far a sender's clock runs ahead: one sender in a thousand by 5 minutes, one in
    20,000 by 9 hours (a time-zone bug), the others not at all."""
    if number % 20_000 == 7_777:
        return timedelta(hours=9)
    if number % 1_000 == 500:
        return timedelta(minutes=5)
    return timedelta(0)


def test_senders_with_fast_clocks_make_no_ordinary_signal_doubtful() -> None:
    # Given a stream of 12 minutes (the memory rolls over about 9 times) where a few senders'
    # clocks run minutes or hours ahead
    memory = ShardMemory(seen_capacity=SKEW_CAPACITY, identity_capacity=SKEW_VISITORS)
    accepted: dict[str, tuple[JourneySignal, timedelta]] = {}
    doubtful_ordinary = 0
    count = int(12 * 60 * SKEW_RATE)
    for number in range(count):
        now = NOW + timedelta(seconds=number / SKEW_RATE)
        lead = _lead(number)
        signal = _view(
            f"e-{number}",
            customer_id=None,
            anonymous_id=f"v-{number % SKEW_VISITORS}",
            occurred_at=now - IN_FLIGHT + lead,
        )
        # When the shard accepts each one as it arrives
        assert accept(memory, signal, now) is Verdict.ACCEPTED
        accepted[signal.dedupe_key] = (signal, lead)
        if not lead:
            doubtful_ordinary += signal.doubt or signal.forgotten
    # Then no signal from a sane clock was doubtful (none would be read from Insider)
    assert len(memory.seen) <= SKEW_CAPACITY
    assert doubtful_ordinary == 0
    # And a redelivery of any of them is recognised, or doubtful once its key is forgotten:
    # never taken as new
    end = NOW + timedelta(seconds=count / SKEW_RATE)
    verdicts: dict[str, list[str]] = {"ordinary": [], "minutes": [], "hours": []}
    for key, (original, lead) in accepted.items():
        if lead or int(key.split("-")[1]) % 100 == 0:
            again = _view(
                original.dedupe_key,
                customer_id=None,
                anonymous_id=original.identity.anonymous_id,
                occurred_at=original.occurred_at,
            )
            verdict = accept(memory, again, end)
            kind = "hours" if lead > timedelta(hours=1) else "minutes" if lead else "ordinary"
            verdicts[kind].append(
                "forgotten" if again.forgotten else "doubt" if again.doubt else verdict.value
            )
    assert "accepted" not in verdicts["ordinary"] + verdicts["minutes"] + verdicts["hours"]
    # (the stream is long enough that many were forgotten - from generations, so looked up
    # in the dedupe archive; keys dated hours ahead are kept until their date)
    assert verdicts["ordinary"].count("forgotten") > len(verdicts["ordinary"]) * 0.8
    assert set(verdicts["minutes"]) == {"forgotten", "duplicate"}
    assert set(verdicts["hours"]) == {"duplicate"}


def test_a_storefront_dated_hours_ahead_overflows_nothing_into_ordinary_doubt() -> None:
    # Given a stream where one storefront in ten dates its events 9 hours ahead (a time-zone
    # bug): more future-dated keys than the memory keeps apart
    memory = ShardMemory(seen_capacity=SKEW_CAPACITY, identity_capacity=SKEW_VISITORS)
    ahead: list[JourneySignal] = []
    doubtful_ordinary = 0
    count = int(12 * 60 * SKEW_RATE)
    for number in range(count):
        now = NOW + timedelta(seconds=number / SKEW_RATE)
        lead = timedelta(hours=9) if number % 10 == 3 else timedelta(0)
        signal = _view(
            f"e-{number}",
            customer_id=None,
            anonymous_id=f"v-{number % SKEW_VISITORS}",
            occurred_at=now - IN_FLIGHT + lead,
        )
        # When the shard accepts each one as it arrives
        assert accept(memory, signal, now) is Verdict.ACCEPTED
        if lead:
            ahead.append(signal)
        else:
            doubtful_ordinary += signal.doubt or signal.forgotten
    # Then no signal from a sane clock was doubtful
    assert doubtful_ordinary == 0
    # And a redelivery of a future-dated one is recognised or doubtful, never taken as new;
    # doubtful because its key was dropped early from those kept apart, which no generation
    # held: in doubt at once (Insider is asked), not looked up in the dedupe archive
    end = NOW + timedelta(seconds=count / SKEW_RATE)
    outcomes = []
    for original in ahead:
        again = _view(
            original.dedupe_key,
            customer_id=None,
            anonymous_id=original.identity.anonymous_id,
            occurred_at=original.occurred_at,
        )
        verdict = accept(memory, again, end)
        assert not again.forgotten
        outcomes.append("doubt" if again.doubt else verdict.value)
    assert "accepted" not in outcomes
    assert {"doubt", "duplicate"} <= set(outcomes)  # more than the memory keeps apart


def test_a_backlog_accepted_at_once_is_measured_by_when_the_bridge_received_it() -> None:
    # Given twice as many signals as the memory keeps, received by the bridge over 160 s
    # while the shard's workers were down
    memory = ShardMemory(seen_capacity=SKEW_CAPACITY, identity_capacity=SKEW_VISITORS)
    back = NOW + timedelta(minutes=10)
    doubtful = 0
    for number in range(2 * SKEW_CAPACITY):
        received = NOW + timedelta(seconds=number / SKEW_RATE)
        signal = _view(
            f"e-{number}",
            customer_id=None,
            anonymous_id=f"v-{number % SKEW_VISITORS}",
            occurred_at=received - IN_FLIGHT,
        )
        signal.received_at = received
        # When the shard accepts them all at once, once it is back
        assert accept(memory, signal, back) is Verdict.ACCEPTED
        doubtful += signal.doubt or signal.forgotten
    # Then none of them is doubtful, while a redelivery of the first one is
    assert doubtful == 0
    again = _view("e-0", customer_id=None, anonymous_id="v-0", occurred_at=NOW - IN_FLIGHT)
    again.received_at = back
    assert accept(memory, again, back) is Verdict.ACCEPTED
    assert again.forgotten
