"""commercetools HTTP API: OAuth2, cursor paging, typed models. Knows HTTP, not Temporal."""
