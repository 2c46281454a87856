"""Test support code: real local servers used instead of remote services (no mock patching)."""
