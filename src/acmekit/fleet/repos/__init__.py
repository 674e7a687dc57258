"""The fleet's repositories, one per aggregate, over the tables of `acmekit.fleet.schema`:
sites (with their certificate versions, deployments, leases, options and backups),
names, CA bookkeeping, http-01 challenges and settings. `acmekit.fleet.inventory.Inventory`
holds one of each over one engine."""
