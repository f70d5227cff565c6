"""The SMTP transport: connection, TLS, SASL mechanisms, replies, transcript."""
