"""What every activity class holds: the worker's long-lived clients and mapping rules."""

from __future__ import annotations

from ct_insider.clients import ConnectorClients


class ConnectorActivities(ConnectorClients):
    """The worker creates one instance per activity class and shares the clients."""
