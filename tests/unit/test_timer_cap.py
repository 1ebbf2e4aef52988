"""The cap on open timer workflows per kind: one visibility count per cache period, a refusal
at the cap, one log line per count."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ct_insider.config import TimerCapSettings
from ct_insider.logging import configure_logging
from ct_insider.timers.cap import OpenTimerCap, caps_of, open_timers_query


class Visibility:
    """What a Temporal visibility count answers, by query; counts the calls made."""

    def __init__(self, open_by_query: dict[str, int]) -> None:
        self.open = open_by_query
        self.queries: list[str] = []

    async def count(self, query: str) -> int:
        self.queries.append(query)
        return self.open.get(query, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _warnings(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    return [line for line in lines if line.get("level") == "warning"]


@pytest.fixture(autouse=True)
def _json_logging() -> None:
    configure_logging("INFO", json=True)


async def test_starts_within_a_cache_period_cost_one_count_and_stop_at_the_cap(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given 7 open cart timers and a cap of 10, counts reused for 5 s
    visibility = Visibility({open_timers_query("cart"): 7})
    clock = Clock()
    cap = OpenTimerCap(
        visibility.count, {"cart": 10, "replenishment": 100}, cache_seconds=5, clock=clock
    )
    # When 6 cart timers ask to start within the period
    answers = [await cap.admits_new("cart") for _ in range(6)]
    # Then 3 are admitted (7 + 3 = 10), 3 refused, with one count made
    assert answers == [True, True, True, False, False, False]
    assert visibility.queries == ['CtTimerKind="cart" AND ExecutionStatus="Running"']
    # And one warning names the kind, the count, the cap and the setting (not one per refusal)
    [line] = _warnings(capsys)
    assert line["event"] == "timer cap reached: new timer workflows are not started"
    assert (line["kind"], line["open"], line["cap"], line["setting"]) == (
        "cart",
        10,
        10,
        "TIMERS_MAX_CART",
    )
    assert cap.open_timer_workflows() == {"cart": 10}


async def test_a_new_count_after_the_period_admits_again_once_timers_closed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    query = open_timers_query("cart")
    visibility = Visibility({query: 10})
    clock = Clock()
    cap = OpenTimerCap(visibility.count, {"cart": 10, "replenishment": 1}, clock=clock)
    # Given a kind at its cap
    assert not await cap.admits_new("cart")
    # When 4.9 s later it asks again: the count is reused, still refused
    clock.now += 4.9
    assert not await cap.admits_new("cart")
    assert len(visibility.queries) == 1
    # When timers closed meanwhile and the period is over
    visibility.open[query] = 8
    clock.now += 0.1
    # Then it counts again and admits two
    assert [await cap.admits_new("cart") for _ in range(3)] == [True, True, False]
    assert len(visibility.queries) == 2
    # And each count that refused logged once
    assert len(_warnings(capsys)) == 2


async def test_each_kind_has_its_own_count_and_cap() -> None:
    visibility = Visibility({open_timers_query("cart"): 5, open_timers_query("replenishment"): 0})
    caps = caps_of(TimerCapSettings(max_cart=5, max_replenishment=2))
    cap = OpenTimerCap(visibility.count, caps, clock=Clock())
    # Given carts at their cap and no replenishment timer
    # Then carts are refused while replenishment timers start, up to their own cap
    assert not await cap.admits_new("cart")
    assert [await cap.admits_new("replenishment") for _ in range(3)] == [True, True, False]
    assert sorted(visibility.queries) == [
        'CtTimerKind="cart" AND ExecutionStatus="Running"',
        'CtTimerKind="replenishment" AND ExecutionStatus="Running"',
    ]


def test_caps_come_from_the_timer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMERS_MAX_CART", "1234")
    monkeypatch.setenv("TIMERS_MAX_REPLENISHMENT", "99")
    assert caps_of(TimerCapSettings()) == {"cart": 1234, "replenishment": 99}
