"""How the connector is pointed at the emulators: one place for the dev stack, tests and bench."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from ct_insider.config import CommercetoolsSettings, InsiderSettings


@dataclass(frozen=True)
class EmulatorWiring:
    ct_url: str
    insider_url: str
    project_key: str
    partner_name: str
    # The emulators accept any OAuth client; Insider tokens are the emulator's defaults.
    client_id: str = "emulator-client"
    client_secret: str = "emulator-secret"  # noqa: S105 - the emulators accept any secret
    api_key: str = "ucd-token"
    catalog_api_key: str = "catalog-token"

    def ct_settings(self) -> CommercetoolsSettings:
        return CommercetoolsSettings(
            project_key=self.project_key,
            client_id=self.client_id,
            client_secret=SecretStr(self.client_secret),
            auth_url=self.ct_url,
            api_url=self.ct_url,
            scopes=f"manage_project:{self.project_key}",
        )

    def insider_settings(self, **overrides: object) -> InsiderSettings:
        values: dict[str, object] = {
            "partner_name": self.partner_name,
            "api_key": SecretStr(self.api_key),
            "catalog_api_key": SecretStr(self.catalog_api_key),
            "unification_url": self.insider_url,
            "catalog_url": self.insider_url,
        }
        values.update(overrides)
        return InsiderSettings.model_validate(values)

    def ct(self, method: str, path: str, body: Any = None) -> Any:
        """Call the commercetools emulator's API as a retailer's app would (tests, bench)."""
        token = httpx.post(
            f"{self.ct_url}/oauth/token",
            auth=(self.client_id, self.client_secret),
            data={
                "grant_type": "client_credentials",
                "scope": f"manage_project:{self.project_key}",
            },
        ).json()["access_token"]
        response = httpx.request(
            method,
            f"{self.ct_url}/{self.project_key}/{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        response.raise_for_status()
        return response.json()

    def environment(self, temporal_address: str, task_queue: str) -> dict[str, str]:
        """The variables a `ct-insider worker` process reads (see docs/operations.md, Configuration)."""
        return {
            "CTP_PROJECT_KEY": self.project_key,
            "CTP_CLIENT_ID": self.client_id,
            "CTP_CLIENT_SECRET": self.client_secret,
            "CTP_AUTH_URL": self.ct_url,
            "CTP_API_URL": self.ct_url,
            "CTP_SCOPES": f"manage_project:{self.project_key}",
            "INSIDER_PARTNER_NAME": self.partner_name,
            "INSIDER_API_KEY": self.api_key,
            "INSIDER_CATALOG_API_KEY": self.catalog_api_key,
            "INSIDER_UNIFICATION_URL": self.insider_url,
            "INSIDER_CATALOG_URL": self.insider_url,
            "TEMPORAL_ADDRESS": temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_TASK_QUEUE": task_queue,
            "TEMPORAL_JOURNEY_TASK_QUEUE": f"{task_queue}-journeys",
            # The demo accounts take the example mapping rules a production process refuses.
            "CT_INSIDER_MAPPING_ALLOW_EXAMPLE": "true",
        }
