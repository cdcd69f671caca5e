"""Configuration: the daemon's settings and one file per tenant, parsed into frozen objects."""
