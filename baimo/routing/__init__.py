"""Routing: choose the model for each request. `learned` predicts per-model success from a local embedding."""

from baimo.routing.learned import LearnedRouter

__all__ = ["LearnedRouter"]
