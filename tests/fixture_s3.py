"""Pytest fixtures: a real s3 server on loopback, started by the test setup."""
