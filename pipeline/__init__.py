"""智能五长 street-camera patrol: ingest → detect → track → rules → evidence → queue → review."""

__version__ = "0.1.0"
