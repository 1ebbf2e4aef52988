"""Credential checks shared by `ct-insider setup` and `ct-insider doctor`."""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsError, CommercetoolsRequestError
from ct_insider.commercetools.scopes import Feature, missing_scopes
from ct_insider.config import CommercetoolsSettings
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.models import CatalogLocale
from ct_insider.mapping.config import MappingConfig

# A profile no one has: reading it answers 404 once the token is accepted (a refused token
# answers 401/403 first). Insider documents no call that only checks a token.
PROBE_IDENTIFIERS = {"uuid": "ct-insider-token-check"}


class MissingScopeReport(BaseModel):
    scope: str
    features: list[Feature]
    why: list[str]
    # CTP_SCOPES: the configuration does not ask for it; API client: it asks, but the
    # API client was not given the scope in commercetools.
    where: str


class ScopeCheck(BaseModel):
    configured: list[str]
    granted: list[str]
    missing: list[MissingScopeReport]


async def _client_scopes(
    settings: CommercetoolsSettings, http: httpx.AsyncClient
) -> frozenset[str]:
    """Every scope the API client has: a token asked for without `scope` gets them all."""
    response = await http.post(
        settings.auth_url.rstrip("/") + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(settings.client_id, settings.client_secret.get_secret_value()),
    )
    if response.status_code != 200:
        raise CommercetoolsError.from_response(response)
    return frozenset(str(response.json().get("scope") or "").split())


async def check_scopes(
    settings: CommercetoolsSettings, http: httpx.AsyncClient | None = None
) -> ScopeCheck:
    """The scopes the connector's features need that the configuration or the API client
    lacks, each named. Raises CommercetoolsAuthError for refused credentials."""
    project = settings.project_key
    configured = settings.effective_scopes.split()
    try:
        async with CommercetoolsClient(settings, http=http) as ct:
            granted = await ct.granted_scopes()
    except CommercetoolsRequestError as exc:
        # commercetools refuses a token asking for a scope the client lacks (invalid_scope):
        # ask for every scope it has instead, to name the missing ones.
        if "invalid_scope" not in exc.codes and "invalid_scope" not in exc.message:
            raise
        if http is not None:
            granted = await _client_scopes(settings, http)
        else:
            async with httpx.AsyncClient(timeout=10.0) as own:
                granted = await _client_scopes(settings, own)
    not_configured = missing_scopes(configured, project)
    not_configured_names = {m.scope for m in not_configured}
    # A scope the configuration leaves out is not granted either (commercetools grants what
    # is asked for); one asked for but not granted is missing from the API client.
    missing = {m.scope: m for m in [*missing_scopes(granted, project), *not_configured]}
    return ScopeCheck(
        configured=configured,
        granted=sorted(granted),
        missing=[
            MissingScopeReport(
                scope=m.scope,
                features=list(m.features),
                why=list(m.why),
                where="CTP_SCOPES" if m.scope in not_configured_names else "API client",
            )
            for m in missing.values()
        ],
    )


def market_locales(config: MappingConfig) -> list[CatalogLocale]:
    """The catalog locales of the configured markets (en_US, or en_US:<store>)."""
    locales = []
    for market in config.catalog.markets:
        language, _, store = market.locale.partition(":")
        locales.append(CatalogLocale(language_and_country_code=language, store_id=store or None))
    return locales


async def verify_ucd_token(insider: InsiderClient) -> None:
    """Raises InsiderConfigurationError when Insider refuses the UCD token or partner name."""
    await insider.read_profile(PROBE_IDENTIFIERS, attributes=("uuid",))


async def register_locales(insider: InsiderClient, config: MappingConfig) -> int:
    """Register the markets' catalog locales (idempotent: every catalog sync does the same);
    also proves the catalog token. Returns how many were new."""
    return await insider.create_locales(market_locales(config))
