"""Category paths of products, for events' `taxonomy` (and the catalog's `category`)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.models import Category, LocalizedString


def category_path(category: Category, categories: dict[str, Category]) -> list[LocalizedString]:
    """Names from the root down to `category`, following parent links (commercetools-mock
    fills `ancestors` with the parent only); a cycle or a missing parent ends the walk."""
    chain = [category]
    seen = {category.id}
    parent = category.parent
    while parent is not None and parent.id in categories and parent.id not in seen:
        ancestor = categories[parent.id]
        chain.append(ancestor)
        seen.add(ancestor.id)
        parent = ancestor.parent
    return [c.name for c in reversed(chain)]


class TaxonomyResolver:
    """Caches the category tree (refreshed after `ttl_seconds`) and product -> category links.

    Orders repeat the same products, and categories change rarely; a stale path for a few
    minutes is acceptable for analytics events.
    """

    def __init__(
        self, ct: CommercetoolsClient, *, ttl_seconds: float = 300.0, max_products: int = 50_000
    ) -> None:
        self._ct = ct
        self._ttl = ttl_seconds
        self._max_products = max_products
        self._categories: dict[str, Category] = {}
        self._loaded_at: float | None = None
        self._product_categories: OrderedDict[str, list[str]] = OrderedDict()

    async def _category_tree(self) -> dict[str, Category]:
        now = time.monotonic()
        if self._loaded_at is None or now - self._loaded_at > self._ttl:
            categories: dict[str, Category] = {}
            async for page in self._ct.pages("categories"):
                for raw in page.results:
                    category = Category.model_validate(raw)
                    categories[category.id] = category
            self._categories, self._loaded_at = categories, now
            self._product_categories.clear()
        return self._categories

    async def _load_products(self, product_ids: Sequence[str]) -> None:
        missing = [pid for pid in dict.fromkeys(product_ids) if pid not in self._product_categories]
        found = {
            str(p["id"]): [str(ref["id"]) for ref in p.get("categories", [])]
            for p in await self._ct.find_in(
                "product-projections", missing, lambda q: f"id in ({q})"
            )
        }
        for pid in missing:  # unpublished or deleted products have no path
            self._product_categories[pid] = found.get(pid, [])
        while len(self._product_categories) > self._max_products:
            self._product_categories.popitem(last=False)

    def invalidate(self) -> None:
        """Categories changed: read the tree again on next use."""
        self._loaded_at = None

    async def with_descendants(self, category_ids: Sequence[str]) -> list[str]:
        """The categories and every category below them (a renamed parent changes the
        path of products filed under its children)."""
        categories = await self._category_tree()
        children: dict[str, list[str]] = {}
        for category in categories.values():
            if category.parent is not None:
                children.setdefault(category.parent.id, []).append(category.id)
        found: list[str] = []
        pending = list(category_ids)
        while pending:
            current = pending.pop()
            if current in found:
                continue
            found.append(current)
            pending.extend(children.get(current, []))
        return found

    async def path(self, category_ids: Sequence[str]) -> list[LocalizedString]:
        """Names of the first existing category's path, ancestors first."""
        categories = await self._category_tree()
        for cid in category_ids:
            if cid in categories:
                return category_path(categories[cid], categories)
        return []

    async def taxonomies(self, product_ids: Sequence[str]) -> dict[str, list[LocalizedString]]:
        """product id -> names of its first category's path, ancestors first."""
        categories = await self._category_tree()
        await self._load_products(product_ids)
        result: dict[str, list[LocalizedString]] = {}
        for pid in product_ids:
            linked = [cid for cid in self._product_categories.get(pid, []) if cid in categories]
            if linked:
                result[pid] = category_path(categories[linked[0]], categories)
        return result
