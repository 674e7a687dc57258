from acmekit.fleet.inventory import metadata
from acmekit.migrate import run_env

run_env(metadata)
