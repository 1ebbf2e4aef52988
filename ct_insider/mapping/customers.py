"""commercetools Customer -> Insider user (identifiers + attributes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ct_insider.commercetools.models import Address, Customer
from ct_insider.insider.models import Attributes, Identifiers, User
from ct_insider.mapping import normalize
from ct_insider.mapping.config import MappingConfig


@dataclass(frozen=True)
class MappedUser:
    """The mapping of one record: a user to send, or the reason it cannot be sent."""

    source_id: str
    user: User | None
    warnings: list[str] = field(default_factory=list)
    rejection: str | None = None


def preferred_address(customer: Customer) -> Address | None:
    """Default shipping, else default billing, else the first address."""
    by_id = {address.id: address for address in customer.addresses if address.id}
    for address_id in (customer.default_shipping_address_id, customer.default_billing_address_id):
        if address_id and address_id in by_id:
            return by_id[address_id]
    return customer.addresses[0] if customer.addresses else None


def customer_uuid(customer: Customer, config: MappingConfig) -> str | None:
    value = {
        "id": customer.id,
        "key": customer.key,
        "customerNumber": customer.customer_number,
        "externalId": customer.external_id,
    }[config.uuid_source]
    return usable_uuid(value)


def usable_uuid(value: str | None) -> str | None:
    """An identifier as Insider's uuid: without surrounding whitespace, None when blank
    (the same whether read from the customer or from a deletion message)."""
    return value.strip() if value and value.strip() else None


def _custom_fields(customer: Customer) -> dict[str, Any]:
    return customer.custom.fields if customer.custom else {}


def _consent(fields: dict[str, Any], name: str | None, warnings: list[str]) -> bool | None:
    if name is None or name not in fields:
        return None
    value = fields[name]
    if isinstance(value, bool):
        return value
    warnings.append(f"consent field {name} dropped: not a boolean")
    return None


def _language(customer: Customer, country: str | None, config: MappingConfig) -> str:
    """The customer's locale, else their store's language, else the project default."""
    from_locale = normalize.insider_language(customer.locale, country)
    if from_locale:
        return from_locale
    for store in customer.stores:
        if store.key in config.store_languages:
            return config.store_languages[store.key]
    return config.default_language


def map_customer(customer: Customer, config: MappingConfig) -> MappedUser:
    warnings: list[str] = []
    address = preferred_address(customer)
    country = normalize.country_code(address.country if address else None)

    email = normalize.email(customer.email)
    if customer.email and email is None:
        warnings.append("email dropped: not a valid address")
    raw_phone = (address.mobile or address.phone) if address else None
    phone = normalize.phone_e164(raw_phone, country)
    if raw_phone and phone is None:
        warnings.append("phone dropped: not a valid number for the address country")

    identifiers = Identifiers(uuid=customer_uuid(customer, config), email=email, phone_number=phone)
    if identifiers.is_empty():
        return MappedUser(
            customer.id, None, warnings, rejection="no usable identifier (uuid, email or phone)"
        )

    birthday = normalize.birthday(customer.date_of_birth)
    if customer.date_of_birth and birthday is None:
        warnings.append("birthday dropped: not a valid date")

    fields = _custom_fields(customer)
    gender = fields.get(config.gender_field) if config.gender_field else None
    custom: dict[str, Any] = {
        "ct_customer_number": customer.customer_number,
        "ct_is_email_verified": customer.is_email_verified,
        "ct_signup_date": normalize.timestamp(customer.created_at),
        "ct_customer_group": customer.customer_group.obj.get("key")
        if customer.customer_group and customer.customer_group.obj
        else None,
        "ct_stores": [store.key for store in customer.stores] or None,
    }
    for source, target in config.custom_field_attributes.items():
        if source in fields:
            custom[target] = fields[source]
    consent = config.consent_fields
    attributes = Attributes(
        name=customer.first_name or None,
        surname=customer.last_name or None,
        email=email,
        phone_number=phone,
        gender=str(gender) if isinstance(gender, str) and gender else None,
        birthday=birthday,
        language=_language(customer, country, config),
        country=country,
        city=address.city if address and address.city else None,
        email_optin=_consent(fields, consent.email_optin, warnings),
        sms_optin=_consent(fields, consent.sms_optin, warnings),
        whatsapp_optin=_consent(fields, consent.whatsapp_optin, warnings),
        gdpr_optin=_consent(fields, consent.gdpr_optin, warnings),
        custom={key: value for key, value in custom.items() if value is not None} or None,
    )
    return MappedUser(customer.id, User(identifiers=identifiers, attributes=attributes), warnings)
