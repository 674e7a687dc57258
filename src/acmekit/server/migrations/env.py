from acmekit.migrate import run_env
from acmekit.server.store import metadata

run_env(metadata)
