"""`acmekit server`: an ACME certificate authority (RFC 8555)."""
