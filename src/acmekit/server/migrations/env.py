from acmekit.migrate import run_env
from acmekit.server.schema import metadata

run_env(metadata)
