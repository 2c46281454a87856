"""Metering: API keys (hashed), per-request usage records and their cost."""
