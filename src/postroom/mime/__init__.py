"""Message building: MIME structure, headers and envelope."""
