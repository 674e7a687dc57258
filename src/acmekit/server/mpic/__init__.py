"""Multi-perspective issuance corroboration (CA/Browser Forum BR §3.2.2.9).

`quorum` (pure): how many remote perspectives must agree, from how many RIRs. `wire`:
what the CA asks and a perspective answers. `perspective`: the remote validation
authority (`acmekit server perspective`), running the CA's own validation and CAA code.
`remote`: the CA's side, asking every perspective at once and stopping once decided.
`certs`: the mutual-TLS certificates, issued from the CA's root.
"""
