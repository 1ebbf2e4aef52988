"""Sync pipelines: page commercetools, map, send to Insider. No Temporal in here."""
