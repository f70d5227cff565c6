"""Diagnosis: what an SMTP failure means and what to change."""

from postroom.diagnosis.engine import Context, Diagnosis, diagnose

__all__ = ["Context", "Diagnosis", "diagnose"]
