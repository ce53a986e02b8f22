"""Pytest fixtures: a real rtsp server on loopback, started by the test setup."""
