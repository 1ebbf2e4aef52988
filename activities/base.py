"""What every activity class holds: the worker's long-lived clients and mapping rules."""

from __future__ import annotations

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.insider.client import InsiderClient
from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.catalog import CatalogSender
from ct_insider.sync.orders import OrderEventSender


class ConnectorActivities:
    """The worker creates one instance per activity class and shares the clients."""

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
