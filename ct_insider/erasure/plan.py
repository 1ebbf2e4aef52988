"""What erasing one person means, decided without I/O.

Only identifiers the connector itself sent for the person are targets, derived with the
senders' own mappings: their uuid (the customer id, key, customerNumber or externalId per
`uuid_source`), the customer's mapped email and phone (map_customer: one address), the
`customerEmail` of their orders and of guest orders (no customerId) placed with their
email, and the anonymous ids of those orders and of their carts. Address phones and emails
of orders are never sent (a gift recipient's or a household's number would find someone
else's profile), so they are no targets. Insider may hold a profile for each identifier
that did not merge, so each is a target of its own; a profile proven theirs (their uuid)
can name more (e.g. anonymous ids merged at sign-in). A profile whose uuid is another
registered customer's is never touched, and nothing is followed out of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from ct_insider.commercetools.models import Customer
from ct_insider.deadletters import DeadLetter
from ct_insider.logging import pii_digest, pii_fingerprint
from ct_insider.mapping import normalize
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.customers import map_customer, usable_uuid

IdentifierKind = Literal["uuid", "email", "phone_number", "anonymous_id"]
KINDS: tuple[IdentifierKind, ...] = ("uuid", "email", "phone_number", "anonymous_id")
ErasureAction = Literal["delete", "anonymize"]


class ErasureRequest(BaseModel):
    """Who to erase: a customer (by id) or an email (a customer, else a guest)."""

    customer_id: str | None = None
    email: str | None = None  # normalized (lowercase)
    # The email as the operator typed it: commercetools compares emails case-sensitively,
    # so orders are searched by it as well as by the lowercase form.
    email_as_written: str | None = None
    # Set by the CustomerDeleted path: the record is gone, the message named its uuid.
    uuid: str | None = None


class ProfileTarget(BaseModel):
    kind: IdentifierKind
    value: str

    def identifiers(self, anonymous_identifier: str) -> dict[str, Any]:
        """Insider's identifiers object for a read or a delete by this value."""
        if self.kind == "anonymous_id":
            return {"custom": {anonymous_identifier: self.value}}
        return {self.kind: self.value}

    def masked(self) -> str:
        """For reports and logs: a uuid or an anonymous id is no contact detail."""
        if self.kind in ("email", "phone_number"):
            return pii_fingerprint(self.value)
        return self.value


class ErasureSubject(BaseModel):
    """Everything the connector ever sent Insider to identify the person."""

    customer_id: str | None = None
    uuids: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    phones: list[str] = Field(default_factory=list)
    anonymous_ids: list[str] = Field(default_factory=list)
    order_ids: list[str] = Field(default_factory=list)
    # Why the person's uuid is unknown (a gone customer whose uuid is not its id, named by
    # no message): their uuid profile cannot be erased, which is a failure to report.
    uuid_unknown: str | None = None

    def owns(self, profile_uuid: str | None) -> bool:
        """Whether a profile with this uuid may be the person's: no uuid (a guest or
        anonymous profile) or one of theirs; another uuid is another registered person."""
        return profile_uuid is None or profile_uuid in self.uuids

    def targets(self) -> list[ProfileTarget]:
        """Strongest identifier first: deleting the uuid profile takes what merged into it,
        and the weaker ones then only find profiles that stayed apart."""
        values: dict[IdentifierKind, list[str]] = {
            "uuid": self.uuids,
            "email": self.emails,
            "phone_number": self.phones,
            "anonymous_id": self.anonymous_ids,
        }
        return [ProfileTarget(kind=kind, value=value) for kind in KINDS for value in values[kind]]


def erasure_workflow_id(request: ErasureRequest) -> str:
    """Readable, and one per person: never the raw email (ids are shown everywhere)."""
    if request.customer_id:
        return f"erase-{request.customer_id}"
    return f"erase-email-{email_digest(request.email or '')}"


def email_digest(email: str) -> str:
    # Keyed (HMAC): workflow ids are in Temporal's visibility store, where a plain hash of
    # an email could be matched against a list of addresses. Stable while the codec's key id
    # is, which is what idempotency of a repeated request (USE_EXISTING) needs.
    return pii_digest(email.strip().lower())[:32]


def action_for(config: MappingConfig) -> ErasureAction:
    """`customer_deletion: anonymize` keeps the anonymous behaviour; `delete` and `keep`
    delete (`keep` is what a CustomerDeleted message does: an erasure request is explicit)."""
    return "anonymize" if config.customer_deletion == "anonymize" else "delete"


def collect_subject(
    config: MappingConfig,
    request: ErasureRequest,
    customer: Mapping[str, Any] | None,
    orders: Iterable[Mapping[str, Any]],
    carts: Iterable[Mapping[str, Any]] = (),
) -> ErasureSubject:
    """The identifiers the connector sent for the person in `customer` (None: gone, or a
    guest) and in their orders and carts: another customer's orders (a customerId not
    theirs) and every order address are left out."""
    subject = _Collector()
    customer_id = request.customer_id or (str(customer["id"]) if customer else None)
    subject.add("uuid", usable_uuid(request.uuid))
    uuid_unknown: str | None = None
    if customer is not None:
        _add_mapped_customer(subject, customer, config)
    elif customer_id and config.uuid_source == "id":
        subject.add("uuid", customer_id)
    elif customer_id and not request.uuid:
        uuid_unknown = (
            f"uuid unknown: customer {customer_id} is gone and its {config.uuid_source} "
            "(the Insider uuid) was named by no message; erase that uuid's profile by hand"
        )
    subject.add("email", normalize.email(request.email))
    theirs = [o for o in orders if o.get("customerId") in (None, customer_id)]
    for order in theirs:  # sent by map_order: customerEmail and anonymousId
        subject.add("email", normalize.email(_text(order.get("customerEmail"))))
        subject.add("anonymous_id", _text(order.get("anonymousId")))
    for cart in carts:  # their sessions; a cart's email is never sent
        subject.add("anonymous_id", _text(cart.get("anonymousId")))
    return ErasureSubject(
        customer_id=customer_id,
        uuids=subject.values["uuid"],
        emails=subject.values["email"],
        phones=subject.values["phone_number"],
        anonymous_ids=subject.values["anonymous_id"],
        order_ids=list(dict.fromkeys(str(order["id"]) for order in theirs)),
        uuid_unknown=uuid_unknown,
    )


def _add_mapped_customer(
    subject: _Collector, customer: Mapping[str, Any], config: MappingConfig
) -> None:
    """The uuid, email and phone exactly as the customer sync maps them."""
    try:
        mapped = map_customer(Customer.model_validate(customer), config).user
    except ValidationError:
        mapped = None  # never sent as a profile; its email may still be on orders
    if mapped is None:
        # Not sendable as a profile now, but its uuid and email may have reached Insider
        # with its orders or an earlier sync: they are the person's.
        subject.add("uuid", usable_uuid(_text(customer.get(config.uuid_source))))
        subject.add("email", normalize.email(_text(customer.get("email"))))
        return
    subject.add("uuid", mapped.identifiers.uuid)
    subject.add("email", mapped.identifiers.email)
    subject.add("phone_number", mapped.identifiers.phone_number)


def profile_uuid(attributes: Mapping[str, Any]) -> str | None:
    """The uuid a profile read back holds (Insider answers identifiers among attributes)."""
    return usable_uuid(_text(attributes.get("uuid")))


def identifiers_in_profile(
    attributes: Mapping[str, Any], anonymous_identifier: str
) -> list[ProfileTarget]:
    """What a profile Insider returned names besides the identifier it was read by: its
    email and phone, and the anonymous id merged into it (as a top-level
    `custom.<name>` key, or inside `custom`)."""
    found: list[ProfileTarget] = []
    email = normalize.email(_text(attributes.get("email")))
    if email:
        found.append(ProfileTarget(kind="email", value=email))
    phone = _text(attributes.get("phone_number"))
    if phone:
        found.append(ProfileTarget(kind="phone_number", value=phone))
    custom = attributes.get("custom")
    for anonymous in (
        attributes.get(f"custom.{anonymous_identifier}"),
        custom.get(anonymous_identifier) if isinstance(custom, Mapping) else None,
    ):
        if _text(anonymous):
            found.append(ProfileTarget(kind="anonymous_id", value=str(anonymous)))
    return found


def letter_names_person(letter: DeadLetter, subject: ErasureSubject) -> bool:
    """Whether a dead letter is about the person: its record is their customer or one of
    their orders, or the journey signal it would re-drive names one of their identities."""
    records = {*subject.order_ids, *([subject.customer_id] if subject.customer_id else [])}
    if letter.record_id in records:
        return True
    signal = (letter.redrive or {}).get("signal")
    if not isinstance(signal, Mapping):
        return False
    if signal.get("resource_id") in records:
        return True
    identity = signal.get("identity") or {}
    if not isinstance(identity, Mapping):
        return False
    email = normalize.email(_text(identity.get("email")))
    return (
        (subject.customer_id is not None and identity.get("customer_id") == subject.customer_id)
        or identity.get("anonymous_id") in subject.anonymous_ids
        or (email is not None and email in subject.emails)
    )


class _Collector:
    def __init__(self) -> None:
        self.values: dict[IdentifierKind, list[str]] = {kind: [] for kind in KINDS}

    def add(self, kind: IdentifierKind, value: str | None) -> None:
        if value and value.strip() and value not in self.values[kind]:
            self.values[kind].append(value.strip())


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None
