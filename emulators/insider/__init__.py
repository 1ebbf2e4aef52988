"""A faithful emulator of Insider's UCD and Catalog APIs (see docs/emulators.md)."""
