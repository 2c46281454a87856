"""Baimo (百模): a self-hosted assistant platform that runs many models as one behind an OpenAI-compatible API."""

__version__ = "0.1.0"
