"""Fault scenarios run against the real processes (`make reliability`, never part of `make test`)."""
