"""Helpers shared by the tests: real processes and a raw wire client."""
