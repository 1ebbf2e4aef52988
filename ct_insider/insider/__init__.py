"""Insider UCD and Catalog HTTP APIs. Knows HTTP, not Temporal."""
