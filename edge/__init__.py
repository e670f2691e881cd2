"""The edge node: every offer materialized locally, served by ticket, waiters woken on arrival."""
