"""The eraser's profile loop against a scripted Insider: whose profile it is, a delete
Insider finishes later, an anonymization Insider answers without an insider id."""

from __future__ import annotations

from typing import Any, cast

import pytest

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.deadletters import DeadLetterStore
from ct_insider.erasure import eraser as eraser_module
from ct_insider.erasure.eraser import Eraser, ErasureReport
from ct_insider.erasure.plan import ErasureAction, ErasureRequest, ErasureSubject
from ct_insider.insider.client import InsiderClient
from ct_insider.mapping.config import MappingConfig


class ScriptedInsider:
    """Profiles by identifier value. `lag`: reads that still find a deleted profile;
    `keeps_identifiers`: an anonymized profile is still found by its identifiers."""

    def __init__(self, *, lag: int = 0, keeps_identifiers: bool = False) -> None:
        self.profiles: dict[str, dict[str, Any]] = {}
        self.lag = lag
        self.keeps_identifiers = keeps_identifiers
        self.reads = 0
        self.deleted: list[str] = []
        self.anonymized: list[str] = []
        self._lagging: dict[str, int] = {}

    def add(self, value: str, **attributes: Any) -> None:
        self.profiles[value] = {"attributes": attributes}

    async def read_profile(self, identifiers: dict[str, Any]) -> dict[str, Any] | None:
        self.reads += 1
        value = _value(identifiers)
        if self._lagging.get(value, 0) > 0:
            self._lagging[value] -= 1
            if self._lagging[value] == 0:
                self.profiles.pop(value, None)
        return self.profiles.get(value)

    async def delete_user(self, identifiers: dict[str, Any]) -> None:
        value = _value(identifiers)
        self.deleted.append(value)
        if self.lag:
            self._lagging[value] = self.lag
        else:
            self.profiles.pop(value, None)

    async def anonymize_user(self, identifiers: dict[str, Any]) -> None:
        value = _value(identifiers)
        self.anonymized.append(value)
        if not self.keeps_identifiers:
            self.profiles.pop(value, None)


def _value(identifiers: dict[str, Any]) -> str:
    [(kind, value)] = identifiers.items()
    if kind == "custom":
        [(_, value)] = value.items()
    return str(value)


async def _erase(
    insider: ScriptedInsider, subject: ErasureSubject, action: ErasureAction = "delete"
) -> ErasureReport:
    eraser = Eraser(
        cast(CommercetoolsClient, None),
        cast(InsiderClient, insider),
        cast(DeadLetterStore, None),
        MappingConfig(),
    )
    report = ErasureReport(action=action)
    await eraser._erase_profiles(subject, subject.targets(), action, report)
    return report


@pytest.fixture(autouse=True)
def quick_settling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eraser_module, "DELETE_SETTLE_DELAYS", (0.0, 0.0, 0.0, 0.0))


async def test_another_customers_profile_is_left_alone_and_not_followed() -> None:
    # Given the person's email lands on a profile of another registered customer, which
    # names that customer's phone and session
    insider = ScriptedInsider()
    insider.add("ada@example.com", iid="i-b", uuid="c-2", phone_number="+4915100000002")
    insider.add("+4915100000002", iid="i-b2", uuid="c-2")
    subject = ErasureSubject(customer_id="c-1", uuids=["c-1"], emails=["ada@example.com"])

    # When the person is erased
    report = await _erase(insider, subject)

    # Then nothing of the other customer is deleted, and the skip is reported
    assert insider.deleted == []
    assert len(report.skipped) == 1
    assert "c-2" in report.skipped[0]
    assert "ada@example.com" not in report.skipped[0]
    assert report.profiles == []


async def test_the_persons_own_profile_names_more_of_theirs() -> None:
    insider = ScriptedInsider()
    insider.add("c-1", iid="i-a", uuid="c-1", **{"custom.ct_anonymous_id": "anon-1"})
    insider.add("anon-1", iid="i-anon")
    report = await _erase(insider, ErasureSubject(customer_id="c-1", uuids=["c-1"]))
    assert insider.deleted == ["c-1", "anon-1"]
    assert [p.kind for p in report.profiles] == ["uuid", "anonymous_id"]
    assert not report.failed


async def test_a_delete_insider_finishes_later_is_no_failure() -> None:
    # Given Insider still finds a deleted profile on the next two reads
    insider = ScriptedInsider(lag=2)
    insider.add("c-1", iid="i-a", uuid="c-1")

    # When the person is erased
    report = await _erase(insider, ErasureSubject(customer_id="c-1", uuids=["c-1"]))

    # Then it is deleted once, re-read until gone, and neither failed nor pending
    assert insider.deleted == ["c-1"]
    assert insider.reads == 3
    assert not report.failed
    assert report.pending == []


async def test_a_delete_still_unfinished_after_the_rereads_is_pending() -> None:
    insider = ScriptedInsider(lag=100)
    insider.add("c-1", iid="i-a", uuid="c-1")
    report = await _erase(insider, ErasureSubject(customer_id="c-1", uuids=["c-1"]))
    assert insider.deleted == ["c-1"]
    assert not report.failed
    assert len(report.pending) == 1


async def test_an_anonymization_without_insider_id_happens_once() -> None:
    # Given Insider keeps the identifier of an anonymized profile and answers no iid
    insider = ScriptedInsider(keeps_identifiers=True)
    insider.add("guest@example.com")
    subject = ErasureSubject(emails=["guest@example.com"])

    # When the guest is anonymized
    report = await _erase(insider, subject, "anonymize")

    # Then once, and it is no failure
    assert insider.anonymized == ["guest@example.com"]
    assert len(report.profiles) == 1
    assert not report.failed


class NoLetters:
    async def list(self) -> tuple[Any, ...]:
        return ()

    async def delete(self, keys: object) -> None:
        assert keys == []


async def test_a_subject_already_read_is_erased_without_reading_commercetools_again() -> None:
    # Given a person the erasure activity already read from commercetools (to cancel their
    # cart timers), and an eraser whose commercetools client must not be used
    insider = ScriptedInsider()
    insider.add("c-1", iid="i-a", uuid="c-1")
    eraser = Eraser(
        cast(CommercetoolsClient, object()),
        cast(InsiderClient, insider),
        cast(DeadLetterStore, NoLetters()),
        MappingConfig(),
    )
    subject = ErasureSubject(customer_id="c-1", uuids=["c-1"])
    # When they are erased with that subject
    report = await eraser.erase(ErasureRequest(customer_id="c-1"), "delete", subject=subject)
    # Then their profile is deleted (commercetools was not asked: its client has no methods)
    assert insider.deleted == ["c-1"]
    assert report.customer_id == "c-1"
