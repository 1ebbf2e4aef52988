"""Consistency checks: read back what Insider holds, compare with commercetools, repair."""
