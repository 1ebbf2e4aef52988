"""A faithful emulator of Insider's UCD and Catalog APIs (see README: Insider emulator)."""
