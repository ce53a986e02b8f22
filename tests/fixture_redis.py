"""Pytest fixtures: a real redis server on loopback, started by the test setup."""
