"""The outbox: durable queue of built messages and the delivery worker."""
