"""Erase one person: find what identifies them, remove their Insider profiles, and remove
the connector's own records about them.

Every step is idempotent (a profile already gone is not found again, a letter already
removed is not listed), so an interrupted erasure is simply run again. Insider is read
before each delete: the read says whether a profile is there (Insider's delete answers
200 either way), whose it is (its uuid: a profile of another registered customer is left
alone and reported in `skipped`) and, for the person's own uuid profile, which other
identifiers it holds. Insider may process a delete asynchronously: a profile still found
with the same insider id right after its delete is re-read a few times with a short
backoff, and if it stays it is reported in `pending`, not as a failure.

What the connector stores about a person, and what becomes of it here:
- dead letters: removed when they name the person (their reasons are masked, but a
  journey letter keeps the signal to re-drive, which may hold an email); the container is
  listed whole per erasure: a letter names the person by its record id or by the email,
  customer id or anonymous id inside its re-drive signal, and that signal's shape varies
  by path, so no query predicate selects them all. The listing is paged and runs in the
  erasure's own workflow (never inside a realtime delivery); a dead-letter container
  meant to be worked down by operators stays small;
- in-flight markers (ledger `PendingOrder.identifiers`: the order's email and anonymous
  id): one per lane, overwritten by each request the lane sends and cleared when the lane
  finishes its run (a delta lane, a backfill chunk); a lane that dies keeps its marker
  until it runs again and settles it (a chunk whose workflow is terminated keeps it until
  the container is cleaned by hand). Not touched here: removing it would make the lane
  re-send instead of verify, and re-sending re-creates the profile;
- the delivery ledger: order ids and event keys only (nothing personal): kept, so an
  order is never sent twice;
- catalog fingerprints and watermarks: nothing personal.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.deadletters import DeadLetterStore
from ct_insider.erasure.plan import (
    ErasureAction,
    ErasureRequest,
    ErasureSubject,
    IdentifierKind,
    ProfileTarget,
    collect_subject,
    identifiers_in_profile,
    letter_names_person,
    profile_uuid,
)
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.errors import InsiderError
from ct_insider.logging import get_logger, mask_pii
from ct_insider.mapping.config import MappingConfig

log = get_logger(__name__)

# Profiles one identifier may still find after each delete (Insider documents no limit
# of profiles per value); beyond that the erasure reports a failure instead of looping.
MAX_PROFILES_PER_IDENTIFIER = 10
# Rounds of "orders by the emails found so far": a customer's orders name emails whose
# guest orders name more.
MAX_EMAIL_ROUNDS = 3
# Re-reads of a profile still found right after its delete (Insider may delete
# asynchronously): seconds to wait before each.
DELETE_SETTLE_DELAYS = (0.25, 0.5, 1.0, 2.0)


class ErasedProfile(BaseModel):
    kind: IdentifierKind  # the identifier it was found by
    identifier: str  # masked when it is an email or a phone number
    insider_id: str | None = None


class ErasureReport(BaseModel):
    customer_id: str | None = None
    action: ErasureAction = "delete"
    looked_up: dict[str, int] = Field(default_factory=dict)  # identifiers per kind
    profiles: list[ErasedProfile] = Field(default_factory=list)
    dead_letters: int = 0  # removed
    orders: int = 0  # of the person, found in commercetools
    failures: list[str] = Field(default_factory=list)  # masked
    # Profiles an identifier of the person found that belong to another registered
    # customer (another uuid): left alone (masked).
    skipped: list[str] = Field(default_factory=list)
    # Deleted, but Insider still found them right after (it deletes asynchronously).
    pending: list[str] = Field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def by_kind(self) -> dict[str, int]:
        return dict(Counter(profile.kind for profile in self.profiles))


class Eraser:
    def __init__(
        self,
        ct: CommercetoolsClient,
        insider: InsiderClient,
        letters: DeadLetterStore,
        mapping: MappingConfig,
    ) -> None:
        self._ct = ct
        self._insider = insider
        self._letters = letters
        self._mapping = mapping

    async def erase(
        self,
        request: ErasureRequest,
        action: ErasureAction,
        *,
        subject: ErasureSubject | None = None,
    ) -> ErasureReport:
        """Raises only what is worth trying again (an unreachable system, 401/403); a
        profile Insider refuses to erase is reported in `failures`. `subject`: the person
        as `subject(request)` read them already (read otherwise)."""
        if subject is None:
            subject = await self.subject(request)
        report = ErasureReport(
            customer_id=subject.customer_id, action=action, orders=len(subject.order_ids)
        )
        if subject.uuid_unknown:
            report.failures.append(subject.uuid_unknown)
        targets = subject.targets()
        await self._erase_profiles(subject, targets, action, report)
        report.looked_up = dict(Counter(target.kind for target in targets))
        report.dead_letters = await self._remove_letters(subject)
        log.info(
            "person erased",
            customer_id=subject.customer_id,
            action=action,
            profiles=report.by_kind(),
            dead_letters=report.dead_letters,
            failures=len(report.failures),
            skipped=len(report.skipped),
            pending=len(report.pending),
        )
        return report

    # -- who: commercetools ------------------------------------------------------------

    async def subject(self, request: ErasureRequest) -> ErasureSubject:
        customer = await self._customer(request)
        customer_id = request.customer_id or (str(customer["id"]) if customer else None)
        orders: dict[str, dict[str, Any]] = {}
        carts: list[dict[str, Any]] = []
        if customer_id:
            by_customer = f"customerId={json.dumps(customer_id)}"
            orders.update({o["id"]: o for o in await self._all("orders", by_customer)})
            carts = await self._all("carts", by_customer)
        asked: set[str] = set()
        for _ in range(MAX_EMAIL_ROUNDS):
            emails = collect_subject(self._mapping, request, customer, orders.values()).emails
            new = [email for email in emails if email not in asked]
            if not new:
                break
            asked.update(new)
            found = await self._ct.find_in(
                "orders", _as_written_and_lower(new, request), lambda q: f"customerEmail in ({q})"
            )
            # another customer's order placed with this email is not the person's
            found = [o for o in found if o.get("customerId") in (None, customer_id)]
            orders.update({o["id"]: o for o in found})
        return collect_subject(self._mapping, request, customer, orders.values(), carts)

    async def cart_ids(self, subject: ErasureSubject) -> list[str]:
        """The person's carts: theirs as a customer, and their sessions' (anonymous ids)."""
        carts: list[dict[str, Any]] = []
        if subject.customer_id:
            by_customer = f"customerId={json.dumps(subject.customer_id)}"
            carts += await self._all("carts", by_customer)
        carts += await self._ct.find_in(
            "carts", subject.anonymous_ids, lambda quoted: f"anonymousId in ({quoted})"
        )
        return list(dict.fromkeys(str(cart["id"]) for cart in carts))

    async def _customer(self, request: ErasureRequest) -> dict[str, Any] | None:
        if request.customer_id:
            return await self._ct.get_by_id("customers", request.customer_id)
        if not request.email:
            return None
        found = await self._ct.find_in(
            "customers", _as_written_and_lower([request.email]), lambda q: f"email in ({q})"
        )
        return found[0] if found else None

    async def _all(self, resource: str, where: str) -> list[dict[str, Any]]:
        return [
            record
            async for page in self._ct.pages(resource, where=where)
            for record in page.results
        ]

    # -- Insider -----------------------------------------------------------------------

    async def _erase_profiles(
        self,
        subject: ErasureSubject,
        targets: list[ProfileTarget],
        action: ErasureAction,
        report: ErasureReport,
    ) -> None:
        """Each identifier in turn, strongest first; the person's own uuid profile names
        more of them (e.g. anonymous ids merged at sign-in), which join the queue."""
        queue = list(targets)
        seen = {(t.kind, t.value) for t in queue}
        erased: set[str] = set()
        while queue:
            target = queue.pop(0)
            try:
                found = await self._erase_by(subject, target, action, erased, report)
            except InsiderError as exc:
                if exc.retryable or exc.status_code in (401, 403):
                    raise
                report.failures.append(f"{target.kind} {target.masked()}: {mask_pii(str(exc))}")
                continue
            for more in found:
                if (more.kind, more.value) not in seen:
                    seen.add((more.kind, more.value))
                    queue.append(more)
                    targets.append(more)

    async def _erase_by(
        self,
        subject: ErasureSubject,
        target: ProfileTarget,
        action: ErasureAction,
        erased: set[str],
        report: ErasureReport,
    ) -> list[ProfileTarget]:
        """Every profile of the person this identifier finds; what they name besides."""
        name = self._mapping.orders.anonymous_identifier
        identifiers = target.identifiers(name)
        named: list[ProfileTarget] = []
        profile = await self._insider.read_profile(identifiers)
        for _ in range(MAX_PROFILES_PER_IDENTIFIER):
            if profile is None:
                return named
            attributes = profile.get("attributes") or {}
            insider_id = str(attributes.get("iid")) if attributes.get("iid") else None
            owner = profile_uuid(attributes)
            shown = f"{target.kind} {target.masked()}: profile {insider_id}"
            if not subject.owns(owner):
                # Someone else's: never touched, and nothing followed out of it.
                report.skipped.append(f"{shown} belongs to uuid {owner}: left alone")
                return named
            if insider_id is not None and insider_id in erased:
                # Found again by another identifier: anonymized (it stays), or a delete
                # Insider has not finished yet.
                if action == "delete":
                    report.pending.append(f"{shown} still found after its deletion")
                return named
            if owner is not None:  # proven theirs: what it names is theirs too
                named.extend(identifiers_in_profile(attributes, name))
            if action == "delete":
                await self._insider.delete_user(identifiers)
            else:
                await self._anonymize(identifiers)
            if insider_id is not None:
                erased.add(insider_id)
            report.profiles.append(
                ErasedProfile(kind=target.kind, identifier=target.masked(), insider_id=insider_id)
            )
            profile, same = await self._read_after(identifiers, insider_id, action)
            if same:
                if action == "delete":
                    report.pending.append(f"{shown} still found after its deletion")
                return named  # anonymized in place (no iid to tell otherwise)
        report.failures.append(
            f"{target.kind} {target.masked()}: still finds a profile after "
            f"{MAX_PROFILES_PER_IDENTIFIER} erasures"
        )
        return named

    async def _read_after(
        self, identifiers: dict[str, Any], insider_id: str | None, action: ErasureAction
    ) -> tuple[dict[str, Any] | None, bool]:
        """The next profile the identifier finds after an erasure, and whether it is the
        one just erased (the same iid, or no iid to tell). A deleted one still found is
        re-read with a short backoff: Insider may delete asynchronously. An anonymized
        one may stay where it is."""
        delays = DELETE_SETTLE_DELAYS if action == "delete" else ()
        profile = await self._insider.read_profile(identifiers)
        for delay in delays:
            if profile is None or not _same_profile(profile, insider_id):
                break
            await asyncio.sleep(delay)
            profile = await self._insider.read_profile(identifiers)
        return profile, profile is not None and _same_profile(profile, insider_id)

    async def _anonymize(self, identifiers: dict[str, Any]) -> None:
        try:
            await self._insider.anonymize_user(identifiers)
        except InsiderError as exc:
            if exc.status_code != 404:  # gone between the read and now: nothing to do
                raise

    # -- the connector's own records ---------------------------------------------------

    async def _remove_letters(self, subject: ErasureSubject) -> int:
        about = [
            letter.key
            for letter in await self._letters.list()
            if letter_names_person(letter, subject)
        ]
        await self._letters.delete(about)
        return len(about)


def _same_profile(profile: dict[str, Any], insider_id: str | None) -> bool:
    found = (profile.get("attributes") or {}).get("iid")
    return insider_id is None or not found or str(found) == insider_id


def _as_written_and_lower(
    emails: Sequence[str], request: ErasureRequest | None = None
) -> list[str]:
    """commercetools compares emails case-sensitively and keeps them as written."""
    raw = (request.email_as_written or request.email) if request else None
    written = [raw.strip()] if raw and raw.strip() else []
    return list(dict.fromkeys(v for e in [*written, *emails] for v in (e, e.lower())))
