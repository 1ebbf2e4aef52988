"""Which `Matching` (ct_insider/insider/held.py) a worker's settlements use, and where
`ct-insider setup insider` keeps what its probe (ct_insider/insider/probe.py) found:

    container `ct-insider-settle-matching`, key = the Insider partner name,
    value {"matching": "event_id" | "fingerprint", "event_id_returned": ...,
           "timestamp_returned": ..., "probed_at": "<ISO 8601>"}

in the retailer's commercetools project, next to the ledger and the watermarks. Setting
`INSIDER_SETTLE_MATCHING` decides: `event_id` or `fingerprint` as set, or `auto` (the
default): what the probe stored. Until a probe has stored an answer, `event_id`: where that
reading is wrong, settlement sends the settled events again, but it never takes a missing
event for held (fingerprint counting can, for an event identical - name, product, second -
to one delivered in an earlier batch).

Workers never probe (a probe writes to Insider and waits until it reads back): they read
the stored answer at their first settlement and keep it; while none is stored they look
again at each settlement, so a `setup insider` run after they started takes effect without
a restart. A changed answer (a new probe) reaches running workers when they restart.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ValidationError

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsNotFound
from ct_insider.config import InsiderSettings
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.held import Matching
from ct_insider.insider.probe import ProbeAnswer, probe_matching, probe_waits
from ct_insider.logging import get_logger
from ct_insider.sync.reports import validation_reasons

log = get_logger(__name__)

CONTAINER = "ct-insider-settle-matching"
MatchingSetting = Literal["auto", "event_id", "fingerprint"]
Status = Literal["OK", "WARN", "FAIL"]
_KEY_UNSAFE = re.compile(r"[^-_~.a-zA-Z0-9]")


class StoredMatching(BaseModel):
    matching: Matching
    event_id_returned: bool
    timestamp_returned: bool
    probed_at: AwareDatetime


class MatchingStore:
    def __init__(self, ct: CommercetoolsClient, container: str = CONTAINER) -> None:
        self._ct = ct
        self._container = container

    async def get(self, partner_name: str) -> StoredMatching | None:
        """The stored answer; None when there is none, or none this version can read (edited
        by hand, or written by a newer `setup`): settling must go on, by the default, rather
        than fail until someone notices (`doctor` reports the answer it reads)."""
        try:
            obj = await self._ct.get_json(f"custom-objects/{self._container}/{_key(partner_name)}")
        except CommercetoolsNotFound:
            return None
        try:
            return StoredMatching.model_validate(obj.get("value"))
        except (ValidationError, AttributeError) as exc:
            log.error(
                "stored settle matching unreadable: using the default; run `ct-insider setup "
                "insider` again",
                container=self._container,
                reasons=validation_reasons(exc) if isinstance(exc, ValidationError) else [],
            )
            return None

    async def save(self, partner_name: str, answer: ProbeAnswer, probed_at: datetime) -> None:
        stored = StoredMatching(
            matching=answer.matching,
            event_id_returned=answer.event_id_returned,
            timestamp_returned=answer.timestamp_returned,
            probed_at=probed_at,
        )
        # No version: the latest probe of the account wins.
        await self._ct.post_json(
            "custom-objects",
            {
                "container": self._container,
                "key": _key(partner_name),
                "value": stored.model_dump(mode="json"),
            },
        )


def _key(partner_name: str) -> str:
    return _KEY_UNSAFE.sub("_", partner_name)


class EffectiveMatching(BaseModel):
    matching: Matching
    source: Literal["setting", "probe", "default"]
    probed_at: datetime | None = None

    def origin(self) -> str:
        if self.source == "setting":
            return "INSIDER_SETTLE_MATCHING"
        if self.source == "probe":
            return f"the probe `setup insider` stored at {self.probed_at}"
        return "the default: no probe stored yet"


async def effective_matching(
    setting: MatchingSetting, partner_name: str, store: MatchingStore
) -> EffectiveMatching:
    if setting != "auto":
        return EffectiveMatching(matching=setting, source="setting")
    stored = await store.get(partner_name)
    if stored is None:
        return EffectiveMatching(matching="event_id", source="default")
    return EffectiveMatching(matching=stored.matching, source="probe", probed_at=stored.probed_at)


class SettleMatching:
    """The matching of one worker process's settlements (see the module docstring)."""

    def __init__(self, setting: MatchingSetting, partner_name: str, store: MatchingStore) -> None:
        self._setting = setting
        self._partner_name = partner_name
        self._store = store
        self._known: Matching | None = None

    async def current(self) -> Matching:
        if self._known is not None:
            return self._known
        effective = await effective_matching(self._setting, self._partner_name, self._store)
        if effective.source == "default":
            log.warning(
                "settle matching not probed for this Insider account: matching by event_id; "
                "run `ct-insider setup insider` (or set INSIDER_SETTLE_MATCHING)",
                partner=self._partner_name,
            )
            return effective.matching
        log.info("settle matching", matching=effective.matching, source=effective.origin())
        self._known = effective.matching
        return self._known


def judge(effective: EffectiveMatching, probed: ProbeAnswer) -> tuple[Status, str]:
    """The workers' matching (`effective`) against what a probe just found."""
    fix = (
        f"set INSIDER_SETTLE_MATCHING to auto or {probed.matching}"
        if effective.source == "setting"
        else "run `ct-insider setup insider` to store the probe's answer"
    )
    if effective.matching == probed.matching:
        reads = "return" if probed.event_id_returned else "do not return"
        return "OK", (
            f"{probed.matching}: profile reads {reads} custom event params ({effective.origin()})"
        )
    if effective.matching == "event_id":
        return "FAIL", (
            f"workers match by event_id ({effective.origin()}), but this account's profile "
            "reads do not return custom event params: every storefront and sign-up event a "
            f"settlement finds would be sent again; {fix}"
        )
    if not probed.timestamp_returned:
        return "FAIL", (
            f"workers match by fingerprint ({effective.origin()}), but this account's profile "
            "reads do not return an event's timestamp as sent: every storefront and sign-up "
            f"event a settlement finds would be sent again; {fix}"
        )
    return "WARN", (
        f"workers match by fingerprint ({effective.origin()}), though this account's profile "
        "reads return event_id, which also tells apart identical events sent in different "
        f"batches; {fix}"
    )


class MatchingCheck(BaseModel):
    probed: ProbeAnswer
    workers: EffectiveMatching  # what the workers use, after a save
    status: Status
    detail: str


async def check_matching(
    insider: InsiderClient, settings: InsiderSettings, store: MatchingStore, *, save: bool
) -> MatchingCheck:
    """Probe the account, store the answer where the workers read it (`save`: setup), and
    judge the workers' matching against it. Raises ProbeFailed, InsiderError and
    CommercetoolsError."""
    probed = await probe_matching(insider, probe_waits(settings.settle_grace_seconds))
    if save:
        await store.save(settings.partner_name, probed, datetime.now(UTC))
    workers = await effective_matching(settings.settle_matching, settings.partner_name, store)
    status, detail = judge(workers, probed)
    return MatchingCheck(probed=probed, workers=workers, status=status, detail=detail)
