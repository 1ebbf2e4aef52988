"""The worker's long-lived clients and mapping rules, in one place.

Activity classes hold them (activities/base.py), and so do the services activities run
that need more than one of them (consistency checks, re-drives).
"""

from __future__ import annotations

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.insider.client import InsiderClient
from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.catalog import CatalogSender
from ct_insider.sync.orders import OrderEventSender


class ConnectorClients:
    def __init__(
        self,
        ct: CommercetoolsClient,
        insider: InsiderClient,
        mapping: MappingConfig,
        orders: OrderEventSender,
        catalog: CatalogSender,
    ) -> None:
        self._ct = ct
        self._insider = insider
        self._mapping = mapping
        self._orders = orders
        self._catalog = catalog
