"""Emulators of the outside systems, served over real HTTP on 127.0.0.1 for tests and `make run`."""
