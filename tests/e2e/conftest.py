"""End-to-end tests: the real entrypoints as processes over loopback (fixtures: tests/conftest.py)."""
