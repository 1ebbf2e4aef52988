"""Deterministic demo and test data, written into the commercetools emulator over HTTP."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import httpx

FIRST_NAMES = [
    "Ann",
    "Ben",
    "Cara",
    "Dev",
    "Eli",
    "Fay",
    "Gus",
    "Hana",
    "Ivo",
    "Jade",
    "Kai",
    "Lena",
]
LAST_NAMES = [
    "Lee",
    "Meyer",
    "Novak",
    "Ortiz",
    "Park",
    "Quinn",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Ueda",
]
MARKETS: list[tuple[str, str, Callable[[int], str], str]] = [
    # country, city, mobile number of the n-th customer, locale
    ("US", "Portland", lambda n: f"+1503{2_000_000 + n % 8_000_000:07d}", "en-US"),
    ("DE", "Berlin", lambda n: f"+49151{n % 100_000_000:08d}", "de-DE"),
]
CONSENT_TYPE_KEY = "customer-consent"


def consent_type_draft() -> dict[str, Any]:
    fields = ["emailOptIn", "smsOptIn", "whatsappOptIn", "gdprOptIn"]
    return {
        "key": CONSENT_TYPE_KEY,
        "name": {"en": "Customer consent"},
        "resourceTypeIds": ["customer"],
        "fieldDefinitions": [
            {
                "name": name,
                "label": {"en": name},
                "required": False,
                "type": {"name": "Boolean"},
                "inputHint": "SingleLine",
            }
            for name in fields
        ]
        + [
            {
                "name": "gender",
                "label": {"en": "Gender"},
                "required": False,
                "type": {"name": "String"},
                "inputHint": "SingleLine",
            }
        ],
    }


def customer_drafts(count: int, *, seed: int = 1, prefix: str = "customer") -> list[dict[str, Any]]:
    return list(iter_customer_drafts(count, seed=seed, prefix=prefix))


def iter_customer_drafts(
    count: int, *, seed: int = 1, prefix: str = "customer"
) -> Iterator[dict[str, Any]]:
    """The drafts one at a time: a benchmark seeds 1,000,000 customers without holding them."""
    rng = random.Random(seed)
    for n in range(count):
        country, city, mobile, _locale = MARKETS[n % len(MARKETS)]
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        yield (
            {
                "email": f"{prefix}.{n:06d}@example.com",
                "password": "not-a-real-password",
                "firstName": first,
                "lastName": last,
                "customerNumber": f"C{n:06d}",
                "dateOfBirth": f"{1950 + rng.randrange(50)}-{1 + rng.randrange(12):02d}-{1 + rng.randrange(28):02d}",
                "addresses": [
                    {
                        "country": country,
                        "city": city,
                        "streetName": "Main St",
                        # unique per customer: a shared number would merge profiles
                        "mobile": mobile(n),
                    }
                ],
                "defaultShippingAddress": 0,
                "custom": {
                    "type": {"typeId": "type", "key": CONSENT_TYPE_KEY},
                    "fields": {
                        "emailOptIn": rng.random() < 0.7,
                        "smsOptIn": rng.random() < 0.4,
                        "whatsappOptIn": rng.random() < 0.2,
                        "gdprOptIn": True,
                        "gender": rng.choice(["female", "male", "diverse"]),
                    },
                },
            }
        )


CATEGORY_TREE = [  # key, parent key, en, de
    ("apparel", None, "Apparel", "Bekleidung"),
    ("shoes", "apparel", "Shoes", "Schuhe"),
    ("running", "shoes", "Running", "Laufen"),
    ("shirts", "apparel", "Shirts", "Hemden"),
    ("accessories", None, "Accessories", "Accessoires"),
]


def category_drafts() -> list[dict[str, Any]]:
    return [
        {
            "key": key,
            "name": {"en": en, "de": de},
            "slug": {"en": key, "de": f"{key}-de"},
            **({"parent": {"typeId": "category", "key": parent}} if parent else {}),
        }
        for key, parent, en, de in CATEGORY_TREE
    ]


def product_type_draft() -> dict[str, Any]:
    return {
        "key": "apparel",
        "name": "Apparel",
        "description": "Apparel",
        "attributes": [
            {
                "name": name,
                "label": {"en": name},
                "isRequired": False,
                "isSearchable": True,
                "type": {"name": "text"},
                "attributeConstraint": "None",
            }
            for name in ("brand", "color", "size")
        ],
    }


def product_drafts(count: int, *, seed: int = 2) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    leaf_categories = ["running", "shirts", "accessories"]
    drafts = []
    for n in range(count):
        base = 1000 + rng.randrange(9000)
        variants = []
        for v, size in enumerate(("S", "M", "L")):
            variants.append(
                {
                    "sku": f"SKU-{n:05d}-{size}",
                    "prices": [
                        {"value": {"currencyCode": "USD", "centAmount": base}, "country": "US"},
                        {
                            "value": {"currencyCode": "EUR", "centAmount": base - 100},
                            "country": "DE",
                        },
                        {
                            "value": {"currencyCode": "GBP", "centAmount": base - 300},
                            "country": "GB",
                        },
                    ],
                    "images": [
                        {
                            "url": f"https://images.example.com/p{n}-{v}.jpg",
                            "dimensions": {"w": 800, "h": 800},
                        }
                    ],
                    "attributes": [
                        {"name": "brand", "value": "Acme"},
                        {"name": "size", "value": size},
                        {"name": "color", "value": rng.choice(["red", "blue", "black"])},
                    ],
                }
            )
        drafts.append(
            {
                "key": f"product-{n:05d}",
                "productType": {"typeId": "product-type", "key": "apparel"},
                "name": {"en": f"Product {n}", "de": f"Produkt {n}"},
                "description": {
                    "en": f"Description of product {n}",
                    "de": f"Beschreibung von Produkt {n}",
                },
                "slug": {"en": f"product-{n}", "de": f"produkt-{n}"},
                "categories": [
                    {"typeId": "category", "key": leaf_categories[n % len(leaf_categories)]}
                ],
                "masterVariant": variants[0],
                "variants": variants[1:],
                "publish": True,
            }
        )
    return drafts


def order_import_drafts(
    count: int,
    customers: Sequence[tuple[str, str]],
    skus: Sequence[str],
    *,
    seed: int = 3,
    first_number: int = 0,
) -> list[dict[str, Any]]:
    """Orders for (customer id, email) pairs; every fifth one is a guest order (email only).
    Order numbers count from `first_number` (they are unique in a commercetools project)."""
    rng = random.Random(seed)
    drafts = []
    for n in range(count):
        customer_id, email = customers[n % len(customers)]
        currency, country = ("USD", "US") if n % 2 == 0 else ("EUR", "DE")
        lines = []
        total = 0
        for sku in rng.sample(list(skus), k=min(len(skus), 1 + rng.randrange(3))):
            cents, quantity = 1000 + rng.randrange(9000), 1 + rng.randrange(3)
            total += cents * quantity
            lines.append(
                {
                    "name": {"en": f"Item {sku}"},
                    "variant": {"sku": sku},
                    "quantity": quantity,
                    "price": {
                        "value": {"currencyCode": currency, "centAmount": cents},
                        "country": country,
                    },
                }
            )
        guest = n % 5 == 4
        drafts.append(
            {
                "orderNumber": f"ORD-{first_number + n:07d}",
                **({} if guest else {"customerId": customer_id}),
                "customerEmail": email if not guest else f"guest.{n:06d}@example.com",
                "totalPrice": {"currencyCode": currency, "centAmount": total},
                "lineItems": lines,
                "orderState": "Complete",
                "shippingAddress": {"country": country},
                "country": country,
            }
        )
    return drafts


class CommercetoolsSeeder:
    """Writes drafts through the emulator's bulk route, which uses the API's own repositories."""

    def __init__(self, base_url: str, project_key: str, client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.project_key = project_key
        self.http = client or httpx.Client(timeout=300.0)

    def bulk(self, type_id: str, drafts: Iterable[dict[str, Any]], chunk: int = 1_000) -> list[str]:
        ids: list[str] = []
        batch: list[dict[str, Any]] = []
        for draft in drafts:
            batch.append(draft)
            if len(batch) >= chunk:
                ids.extend(self._post(type_id, batch))
                batch = []
        if batch:
            ids.extend(self._post(type_id, batch))
        return ids

    def _post(self, type_id: str, batch: list[dict[str, Any]]) -> list[str]:
        response = self.http.post(
            f"{self.base_url}/_emulator/bulk/{self.project_key}/{type_id}", json=batch
        )
        response.raise_for_status()
        return list(response.json()["ids"])

    def ensure(self, type_id: str, path: str, draft: dict[str, Any]) -> None:
        """Create a keyed resource unless the API already has it."""
        token = self.http.post(
            f"{self.base_url}/oauth/token",
            auth=("seeder", "seeder"),
            data={
                "grant_type": "client_credentials",
                "scope": f"manage_project:{self.project_key}",
            },
        ).json()["access_token"]
        found = self.http.get(
            f"{self.base_url}/{self.project_key}/{path}/key={draft['key']}",
            headers={"Authorization": f"Bearer {token}"},
        )
        if found.status_code == 404:
            self.bulk(type_id, [draft])

    def customers(
        self, count: int, *, seed: int = 1, prefix: str = "customer"
    ) -> list[tuple[str, str]]:
        self.ensure("type", "types", consent_type_draft())
        emails: list[str] = []

        def drafts() -> Iterator[dict[str, Any]]:
            for draft in iter_customer_drafts(count, seed=seed, prefix=prefix):
                emails.append(str(draft["email"]))
                yield draft

        ids = self.bulk("customer", drafts())
        return list(zip(ids, emails, strict=True))

    def catalog(self, products: int) -> list[str]:
        self.ensure("product-type", "product-types", product_type_draft())
        self.bulk("category", category_drafts())
        drafts = product_drafts(products)
        self.bulk("product", drafts)
        return [v["sku"] for d in drafts for v in [d["masterVariant"], *d["variants"]]]

    def orders(
        self,
        count: int,
        customers: Sequence[tuple[str, str]],
        skus: Sequence[str],
        *,
        first_number: int = 0,
    ) -> list[str]:
        drafts = order_import_drafts(count, customers, skus, first_number=first_number)
        return self.bulk("order-import", drafts)


def seed_demo(base_url: str, project_key: str) -> dict[str, int]:
    """The `make run` data set: 200 customers, 100 products (2 locales, 2 currencies), 300 orders."""
    seeder = CommercetoolsSeeder(base_url, project_key)
    customers = seeder.customers(200)
    skus = seeder.catalog(100)
    orders = seeder.orders(300, customers, skus)
    return {
        "customers": len(customers),
        "products": 100,
        "variants": len(skus),
        "orders": len(orders),
    }
