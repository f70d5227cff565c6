"""Domain models and storage."""
