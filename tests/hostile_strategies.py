"""Hypothesis strategies for commercetools resources and storefront events of the documented
shape (/work/shared/reference/commercetools.md, ct_insider/commercetools/models.py), drawn
hostile: optional fields missing, any Unicode, huge strings, odd locales, zero and negative
quantities, many lines, missing and extreme prices.

Each strategy draws the JSON document commercetools (or a storefront) sends, so the tests
parse it the way the connector does (Order.model_validate, ...) before mapping it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

from hypothesis import strategies as st

from ct_insider.journeys.storefront import StorefrontEventType

# Any Unicode scalar value but surrogates (JSON from commercetools is valid UTF-8).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


def _repeat(parts: tuple[str, int]) -> str:
    return parts[0] * parts[1]


# A huge string is cheap to draw as a short one repeated (drawing 100 KB char by char is not).
HUGE_TEXT = st.tuples(st.text(min_size=1, max_size=4), st.integers(1_000, 30_000)).map(_repeat)
ANY_TEXT = st.one_of(TEXT, HUGE_TEXT, st.sampled_from(["", " ", "\t\n", "null", "0", "🛒" * 3]))
OPTIONAL_TEXT = st.none() | ANY_TEXT

LOCALES = st.one_of(
    st.sampled_from(
        [
            "en",
            "de-DE",
            "en-US",
            "en_GB",
            "EN-us",
            "pt-BR",
            "zh-Hant-TW",
            "sr-Latn-RS",
            "x",
            "",
            " de ",
            "de-",
            "-DE",
            "deu-DEU",
            "İs-TR",
            "ß",
        ]
    ),
    TEXT,
)
LOCALIZED = st.dictionaries(LOCALES, ANY_TEXT, max_size=4)
COUNTRY = st.sampled_from(["DE", "US", "GB", "de", "XX", "", "D", "DEU", "1A", "ÄÖ"])
COUNTRIES = st.none() | COUNTRY
CURRENCIES = st.sampled_from(["EUR", "USD", "GBP", "JPY", "KWD", "CHF"])
# Amounts up to commercetools' Long; fractionDigits up to 20 (highPrecision money).
CENTS = st.one_of(
    st.integers(-1_000_000, 10_000_000),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, -1, 999_999_999_999_999, 10**15, 10**16]),
)
FRACTION_DIGITS = st.one_of(st.sampled_from([0, 2, 3]), st.integers(0, 20))
QUANTITIES = st.one_of(st.integers(-3, 5), st.integers(-(2**31), 2**31 - 1))
USUAL_SKUS = st.sampled_from(["SKU-1", "SKU-2", "sku 3", "ÄÖÜ-1"])
SKUS = st.one_of(
    USUAL_SKUS,
    USUAL_SKUS,
    st.none(),
    st.sampled_from(["", " "]),
    TEXT,
    st.text(min_size=120, max_size=140),
)
TIMEZONES = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=TIMEZONES
)


def iso(moment: datetime) -> str:
    return moment.isoformat()


TIMESTAMPS = MOMENTS.map(iso)
# A storefront's clock can say anything: the calendar's edges, with offsets.
ANY_MOMENT = st.one_of(
    st.datetimes(timezones=TIMEZONES).map(iso),
    st.sampled_from(
        ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "0999-01-01T00:00:00Z"]
    ),
)
# Resource ids: commercetools gives UUIDs; any non-empty text here.
IDS = st.sampled_from(["1f3c9a52-2d7e-4b1a-9c3e-5a6b7c8d9e0f", " ", "ü-∑"]) | st.text(
    st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12
)
EMAILS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "jane@example.com",
            " Jane@Example.COM ",
            "not-an-email",
            "a@b",
            "@example.com",
            "jane@exa mple.com",
            "jäne@bücher.de",
            "",
        ]
    ),
    st.emails().map(str),
    ANY_TEXT,
)
PHONES = st.one_of(
    st.none(),
    st.sampled_from(["+49 30 901820", "030 901820", "+1 202-555-0143", "12", "+999", "phone"]),
    ANY_TEXT,
)
ATTRIBUTE_VALUES = st.one_of(
    st.none(),
    ANY_TEXT,
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.fixed_dictionaries({"key": TEXT, "label": ANY_TEXT}),
    st.fixed_dictionaries({"key": TEXT, "label": LOCALIZED}),
    LOCALIZED,
    st.lists(TEXT, max_size=3),
)
ATTRIBUTES = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["color", "size", "brand", "material", "replenish-days"])
            | TEXT,
            "value": ATTRIBUTE_VALUES | st.sampled_from([30, "14", 0.5, 1e9, -3, "1e400"]),
        }
    ),
    max_size=6,
)
IMAGES = st.lists(
    st.fixed_dictionaries(
        {
            "url": st.sampled_from(["https://img.example.com/a.jpg", "https://i.test/ü 1.png"])
            | st.sampled_from(["ftp://x", "", "a b"])
            | TEXT
        },
        optional={"label": TEXT},
    ),
    max_size=2,
)


@st.composite
def money(draw: st.DrawFn, currency: str | None = None) -> dict[str, Any]:
    return {
        "type": draw(st.sampled_from(["centPrecision", "highPrecision"])),
        "currencyCode": currency or draw(CURRENCIES),
        "centAmount": draw(CENTS),
        "fractionDigits": draw(FRACTION_DIGITS),
    }


@st.composite
def price(draw: st.DrawFn, currency: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"value": draw(money(currency))}
    if draw(st.booleans()):
        doc["id"] = draw(TEXT)
    if draw(st.booleans()):
        doc["country"] = draw(st.sampled_from(["DE", "US", "GB", "FR"]))
    if draw(st.booleans()):
        doc["discounted"] = {"value": draw(money(doc["value"]["currencyCode"]))}
    if draw(st.booleans()):
        doc["validFrom"] = draw(TIMESTAMPS)
    if draw(st.booleans()):
        doc["validUntil"] = draw(TIMESTAMPS)
    if draw(st.booleans()):
        doc["channel"] = {"typeId": "channel", "id": draw(TEXT)}
    return doc


def _maybe(draw: st.DrawFn, doc: dict[str, Any], name: str, strategy: Any) -> None:
    """Set `name` from `strategy`, or leave the optional field out."""
    if draw(st.booleans()):
        doc[name] = draw(strategy)


@st.composite
def address(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"country": draw(COUNTRY)}
    for name in ("id", "city", "firstName", "streetName", "postalCode"):
        _maybe(draw, doc, name, ANY_TEXT)
    _maybe(draw, doc, "phone", PHONES)
    _maybe(draw, doc, "mobile", PHONES)
    return doc


CUSTOM_FIELD_VALUES = st.one_of(
    st.booleans(), st.none(), ANY_TEXT, st.integers(), st.lists(TEXT, max_size=2), LOCALIZED
)


@st.composite
def custom_fields(draw: st.DrawFn) -> dict[str, Any]:
    names = st.sampled_from(
        ["emailOptIn", "smsOptIn", "whatsappOptIn", "gdprOptIn", "gender", "channel", "loyalty"]
    )
    return {
        "type": {"typeId": "type", "id": draw(TEXT)},
        "fields": draw(st.dictionaries(names | TEXT, CUSTOM_FIELD_VALUES, max_size=6)),
    }


@st.composite
def customer(draw: st.DrawFn) -> dict[str, Any]:
    addresses: list[dict[str, Any]] = draw(st.lists(address(), max_size=3))
    doc: dict[str, Any] = {
        "id": draw(IDS),
        "version": draw(st.integers(1, 2**31)),
        "addresses": addresses,
        "isEmailVerified": draw(st.booleans()),
        "createdAt": draw(TIMESTAMPS),
        "lastModifiedAt": draw(TIMESTAMPS),
        "stores": draw(st.lists(st.fixed_dictionaries({"key": TEXT}), max_size=2)),
    }
    for name in ("key", "customerNumber", "externalId", "firstName", "lastName", "companyName"):
        _maybe(draw, doc, name, OPTIONAL_TEXT)
    _maybe(draw, doc, "email", EMAILS)
    _maybe(draw, doc, "locale", st.none() | LOCALES)
    _maybe(
        draw,
        doc,
        "dateOfBirth",
        st.sampled_from(["1990-02-28", "1899-12-31", "2000-02-30", "0001-01-01", "tomorrow", ""])
        | st.dates().map(str),
    )
    _maybe(draw, doc, "custom", custom_fields())
    _maybe(
        draw,
        doc,
        "customerGroup",
        st.fixed_dictionaries(
            {"typeId": st.just("customer-group"), "id": TEXT},
            optional={"obj": st.fixed_dictionaries({}, optional={"key": ANY_TEXT})},
        ),
    )
    shipping_default: bool = draw(st.booleans())
    if addresses and shipping_default:
        ids = [a.get("id") for a in addresses if a.get("id")] or ["missing"]
        doc["defaultShippingAddressId"] = draw(st.sampled_from(ids))
    return doc


@st.composite
def line_item(draw: st.DrawFn, currency: str) -> dict[str, Any]:
    variant: dict[str, Any] = {"id": draw(st.integers(1, 100)), "sku": draw(SKUS)}
    _maybe(draw, variant, "images", IMAGES)
    _maybe(draw, variant, "attributes", ATTRIBUTES)
    doc: dict[str, Any] = {
        "id": draw(st.sampled_from(["li-1", "li-2", "li-3"]) | TEXT),
        "name": draw(LOCALIZED),
        "variant": variant,
        "price": draw(price(currency if draw(st.booleans()) else None)),
        "quantity": draw(QUANTITIES),
    }
    doc["productId"] = draw(st.sampled_from(["p-1", "p-2"]) | TEXT)
    _maybe(draw, doc, "totalPrice", money(currency))
    _maybe(draw, doc, "productSlug", LOCALIZED)
    return doc


@st.composite
def custom_line_item(draw: st.DrawFn, currency: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": draw(st.sampled_from(["cli-1", "cli-2"]) | TEXT),
        "name": draw(LOCALIZED),
        "money": draw(money(currency)),
        "quantity": draw(QUANTITIES),
    }
    _maybe(draw, doc, "slug", OPTIONAL_TEXT)
    _maybe(draw, doc, "totalPrice", money(currency))
    return doc


@st.composite
def payment(draw: st.DrawFn, currency: str) -> dict[str, Any]:
    transactions = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.sampled_from(["tx-1", "tx-2"]) | TEXT,
                    "type": st.sampled_from(
                        ["Authorization", "CancelAuthorization", "Charge", "Refund", "Chargeback"]
                    ),
                    "amount": money(currency),
                    "state": st.sampled_from(["Initial", "Pending", "Success", "Failure"]),
                },
                optional={"timestamp": TIMESTAMPS},
            ),
            max_size=3,
        )
    )
    return {
        "id": draw(TEXT),
        "version": 1,
        "amountPlanned": draw(money(currency)),
        "transactions": transactions,
    }


@st.composite
def order(draw: st.DrawFn, max_lines: int = 4) -> dict[str, Any]:
    currency = draw(CURRENCIES)
    lines = draw(
        st.one_of(
            st.lists(line_item(currency), max_size=max_lines),
            # many lines: one drawn line repeated under distinct ids
            st.tuples(line_item(currency), st.integers(30, 120)).map(
                lambda pair: [{**pair[0], "id": f"li-{n}"} for n in range(pair[1])]
            ),
        )
    )
    doc: dict[str, Any] = {
        "id": draw(IDS),
        "version": draw(st.integers(1, 2**31)),
        "lineItems": lines,
        "customLineItems": draw(st.lists(custom_line_item(currency), max_size=2)),
        "totalPrice": draw(money(currency)),
        "createdAt": draw(TIMESTAMPS),
        "lastModifiedAt": draw(TIMESTAMPS),
    }
    _maybe(draw, doc, "orderNumber", OPTIONAL_TEXT)
    for name in ("customerId", "anonymousId"):
        _maybe(draw, doc, name, st.sampled_from(["c-1", "anon-1"]) | OPTIONAL_TEXT)
    _maybe(draw, doc, "customerEmail", EMAILS)
    _maybe(draw, doc, "locale", st.none() | LOCALES)
    _maybe(draw, doc, "country", COUNTRIES)
    _maybe(draw, doc, "store", st.fixed_dictionaries({"typeId": st.just("store"), "key": TEXT}))
    _maybe(draw, doc, "orderState", st.sampled_from(["Open", "Confirmed", "Complete", "Cancelled"]))
    _maybe(draw, doc, "completedAt", TIMESTAMPS)
    _maybe(draw, doc, "shippingAddress", address())
    _maybe(draw, doc, "custom", custom_fields())
    _maybe(
        draw,
        doc,
        "shippingInfo",
        st.fixed_dictionaries({}, optional={"price": money(currency), "shippingMethodName": TEXT}),
    )
    _maybe(
        draw,
        doc,
        "discountCodes",
        st.lists(
            st.fixed_dictionaries(
                {
                    "discountCode": st.fixed_dictionaries(
                        {"typeId": st.just("discount-code"), "id": TEXT},
                        optional={"obj": st.fixed_dictionaries({}, optional={"code": ANY_TEXT})},
                    )
                }
            ),
            max_size=2,
        ),
    )
    line_ids = [line["id"] for line in lines[:3]] + ["unknown"]
    _maybe(
        draw,
        doc,
        "returnInfo",
        st.lists(
            st.fixed_dictionaries(
                {
                    "items": st.lists(
                        st.fixed_dictionaries(
                            {
                                "id": TEXT,
                                "quantity": QUANTITIES,
                                "lineItemId": st.sampled_from(line_ids),
                                "paymentState": st.sampled_from(
                                    ["NonRefundable", "Initial", "Refunded", "NotRefunded"]
                                ),
                            },
                            optional={"lastModifiedAt": TIMESTAMPS},
                        ),
                        max_size=3,
                    )
                },
                optional={"returnDate": TIMESTAMPS},
            ),
            max_size=2,
        ),
    )
    if draw(st.booleans()):
        references = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"typeId": st.just("payment"), "id": TEXT},
                    optional={"obj": payment(currency)},
                ),
                max_size=2,
            )
        )
        doc["paymentInfo"] = {"payments": references}
    return doc


@st.composite
def variant(draw: st.DrawFn, number: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": number, "sku": draw(SKUS)}
    _maybe(draw, doc, "prices", st.lists(price(), max_size=4))
    _maybe(draw, doc, "attributes", ATTRIBUTES)
    doc["images"] = draw(IMAGES)
    _maybe(
        draw,
        doc,
        "availability",
        st.fixed_dictionaries(
            {},
            optional={
                "isOnStock": st.none() | st.booleans(),
                "availableQuantity": st.none() | QUANTITIES,
            },
        ),
    )
    return doc


SLUGS = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_-]{2,256}\Z"),  # commercetools' documented slug pattern
    st.dictionaries(LOCALES, st.from_regex(r"\A[A-Za-z0-9_-]{2,40}\Z"), max_size=3),
)


@st.composite
def product(draw: st.DrawFn) -> dict[str, Any]:
    more = draw(st.integers(0, 3))
    slug = draw(SLUGS)
    doc: dict[str, Any] = {
        "id": draw(st.just("p-1") | IDS),
        "version": draw(st.integers(1, 2**31)),
        "name": draw(LOCALIZED),
        "slug": slug if isinstance(slug, dict) else {"en": slug},
        "masterVariant": draw(variant(1)),
        "variants": [draw(variant(n)) for n in range(2, 2 + more)],
    }
    _maybe(draw, doc, "key", OPTIONAL_TEXT)
    _maybe(draw, doc, "description", st.none() | LOCALIZED)
    _maybe(draw, doc, "priceMode", st.sampled_from(["Embedded", "Standalone", "Platform"]))
    return doc


@st.composite
def cart(draw: st.DrawFn) -> dict[str, Any]:
    currency = draw(CURRENCIES)
    lines = draw(
        st.one_of(
            st.lists(line_item(currency), max_size=5),
            st.tuples(line_item(currency), st.integers(190, 260)).map(
                lambda pair: [
                    {**pair[0], "id": f"li-{n}", "variant": {"id": 1, "sku": f"S{n}"}}
                    for n in range(pair[1])
                ]
            ),
        )
    )
    doc: dict[str, Any] = {
        "id": draw(st.just("cart-1") | IDS),
        "version": draw(st.integers(1, 2**31)),
        "lastModifiedAt": draw(TIMESTAMPS),
        "lineItems": lines,
        "customLineItems": draw(st.lists(st.just({"id": "cli"}), max_size=2)),
    }
    _maybe(draw, doc, "cartState", st.sampled_from(["Active", "Merged", "Ordered", "Frozen", "X"]))
    for name in ("customerId", "anonymousId"):
        _maybe(draw, doc, name, OPTIONAL_TEXT)
    _maybe(draw, doc, "customerEmail", EMAILS)
    _maybe(draw, doc, "locale", st.none() | LOCALES)
    _maybe(draw, doc, "country", COUNTRIES)
    _maybe(draw, doc, "store", st.fixed_dictionaries({"typeId": st.just("store"), "key": TEXT}))
    _maybe(draw, doc, "totalPrice", money(currency))
    return doc


DECIMALS = st.one_of(
    st.decimals(min_value=0, max_value=10**9, allow_nan=False, allow_infinity=False, places=2),
    st.decimals(min_value=0, allow_nan=False, allow_infinity=False),
    st.sampled_from(["0", "129.99", "0.000000000000000001", "1e20", "129.990000000000000000"]),
).map(str)


@st.composite
def storefront_product(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"sku": draw(st.text(min_size=1, max_size=256))}
    _maybe(draw, doc, "quantity", st.integers(1, 2**40))
    _maybe(draw, doc, "price", DECIMALS)
    _maybe(draw, doc, "sale_price", DECIMALS)
    _maybe(draw, doc, "name", st.text(max_size=1024))
    _maybe(draw, doc, "categories", st.lists(TEXT, max_size=20))
    return doc


STOREFRONT_TYPES = st.sampled_from(get_args(StorefrontEventType))


@st.composite
def storefront_event(draw: st.DrawFn) -> dict[str, Any]:
    """A storefront event as the /events schema documents it (the fields a type needs are
    present: an event without them is refused at the bridge, tested there)."""
    kind = draw(STOREFRONT_TYPES)
    identity = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "customer_id": st.text(min_size=1, max_size=256),
                "anonymous_id": st.text(min_size=1, max_size=256),
                "email": st.sampled_from(["jane@example.com", "bad", "x@y"]),
            },
        ).filter(bool)
    )
    doc: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=128)),
        "type": kind,
        "occurred_at": draw(TIMESTAMPS | ANY_MOMENT),
        "identity": identity,
    }
    if kind in {"product_view", "add_to_cart", "remove_from_cart", "wishlist_add"} or (
        kind == "wishlist_remove"
    ):
        doc["sku"] = draw(st.text(min_size=1, max_size=256))
    if kind in {"cart_view", "checkout_started"}:
        doc["cart_id"] = draw(st.text(max_size=256).filter(bool))
        doc["currency"] = draw(CURRENCIES)
    _maybe(draw, doc, "quantity", st.integers(1, 2**40))
    _maybe(draw, doc, "price", DECIMALS)
    _maybe(draw, doc, "sale_price", DECIMALS)
    _maybe(draw, doc, "cart_total", DECIMALS)
    _maybe(draw, doc, "currency", CURRENCIES)
    _maybe(draw, doc, "locale", st.text(max_size=16) | LOCALES.filter(lambda s: len(s) <= 16))
    _maybe(draw, doc, "country", st.sampled_from(["DE", "US", "ZZ"]))
    _maybe(draw, doc, "categories", st.lists(TEXT, max_size=20))
    _maybe(draw, doc, "products", st.lists(storefront_product(), max_size=8))
    _maybe(draw, doc, "channel", st.text(max_size=64))
    _maybe(draw, doc, "store", st.text(max_size=256))
    return doc
