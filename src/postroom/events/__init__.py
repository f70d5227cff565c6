"""Business events: idempotent intake and fan-out to matching templates."""
