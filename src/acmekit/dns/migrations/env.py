from acmekit.dns.schema import metadata
from acmekit.migrate import run_env

run_env(metadata)
