"""Erasure of one person: every Insider profile holding their data, and the connector's
own records about them (`plan.py` decides, pure; `eraser.py` reads and writes)."""
