"""Development SMTP servers: the sink used by the walk-through and tests."""
