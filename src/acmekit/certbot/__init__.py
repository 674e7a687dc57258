"""The certbot-compatible application on top of the client library: lineages, renewal
configuration, accounts on disk, hooks, locks and what `certonly`, `renew`, `revoke`,
`certificates` and `check` do with them."""
