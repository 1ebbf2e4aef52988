"""Which Insider identifiers a commercetools identity maps to: one resolver for every path.

An identity is what an event or an order says about its person: a customer id, an
anonymous (session) id, an email. The customer becomes Insider's `uuid` (the customer id
itself, or its key / customerNumber / externalId per `uuid_source`, which the caller looks
up in batches), the email is normalized, and the anonymous id becomes a custom identifier,
so that an event carrying both ids makes Insider merge the visitor's profile into the
customer's.
"""

from __future__ import annotations

from collections.abc import Mapping

from ct_insider.insider.models import Identifiers
from ct_insider.mapping import normalize
from ct_insider.mapping.config import MappingConfig


def resolve_identifiers(
    config: MappingConfig,
    *,
    customer_id: str | None,
    email: str | None,
    anonymous_id: str | None,
    customer_uuids: Mapping[str, str],
    warnings: list[str] | None = None,
) -> Identifiers:
    """`customer_uuids` maps customer ids to their uuid when `uuid_source` is not the id;
    what cannot be resolved is left out (with a warning), and the rest still identifies."""
    uuid: str | None = None
    if customer_id:
        uuid = customer_id if config.uuid_source == "id" else customer_uuids.get(customer_id)
        if uuid is None and warnings is not None:
            warnings.append(
                f"customer {customer_id} has no {config.uuid_source}: "
                "its events attach by its other identifiers"
            )
    normalized = normalize.email(email)
    if email and normalized is None and warnings is not None:
        warnings.append("email dropped: not a valid address")
    anonymous = config.orders.anonymous_identifier
    return Identifiers(
        uuid=uuid,
        email=normalized,
        custom={anonymous: anonymous_id} if anonymous_id else None,
    )
