"""Postroom: business email handoff to your own SMTP provider."""

__version__ = "0.1.0"
