"""Loopback stand-ins for the providers, and helpers to check requests against their specs."""
