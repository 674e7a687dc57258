"""Every script under bench/ imports: a rename in src/ that a benchmark still uses fails
here, not on the day someone next runs that benchmark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"

# Each module imported in a fresh interpreter whose path starts with bench/, as
# `python bench/NAME.py` runs it; no module's main() runs.
IMPORT_ALL = """
import importlib, sys
sys.path.insert(0, sys.argv[1])
failed = []
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_bench_script_imports() -> None:
    names = sorted(p.stem for p in BENCH.glob("*.py"))
    assert "server" in names and "lint" in names
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, str(BENCH), *names],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
