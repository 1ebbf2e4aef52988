"""Temporal activities: all I/O (read commercetools, write Insider) happens here."""
