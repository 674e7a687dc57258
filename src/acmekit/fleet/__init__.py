"""acmekit fleet: many sites, each kept issued, renewed on time and deployed to every edge.

inventory (the database), planner (pure: when is a site next due), worker (leases due
sites and acts), acme (issuance through the ACME client), deploy (the Deployer seam),
api (JSON HTTP API, http-01 responder, metrics).
"""
