"""acmekit: ACME (RFC 8555) end to end."""

__version__ = "0.1.0"
