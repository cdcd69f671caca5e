"""HTTP in: the send, message, config, logs, stats and webhook routes (SPEC section 3)."""
