"""The README's first command: `scripts/demo.sh` (what `make demo` runs) starts the DNS
server and the CA, obtains a certificate, serves it and checks it, then stops it all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from acmekit_testkit.ports import free_port, free_tcp_udp_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo.sh"


def test_demo_obtains_and_checks_a_certificate(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ACMEKIT": str(Path(sys.executable).with_name("acmekit")),
        "DEMO_DIR": str(tmp_path / "demo"),
        "DEMO_CA_PORT": str(free_port()),
        "DEMO_DNS_PORT": str(free_tcp_udp_port()),
        "DEMO_API_PORT": str(free_port()),
        "DEMO_HTTP01_PORT": str(free_port()),
        "DEMO_TLS_PORT": str(free_port()),
        "DEMO_CRL_PORT": str(free_port()),
        "DEMO_CT_PORT": str(free_port()),
        "DEMO_CT_PORT2": str(free_port()),
    }
    result = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=180
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "names: www.demo.acmekit.test" in lines
    assert "verify: ok" in lines
    assert any(line.startswith("notAfter: ") for line in lines)
    assert any(line.startswith("days left: 8") for line in lines)  # 90-day certificates
    # Logged in both local CT logs: two SCTs, each verified, and the policy met.
    assert "SCTs: 2" in lines
    assert sum(line.endswith(": signature ok") for line in lines) == 2
    assert any(line.startswith("CT policy: compliant") for line in lines)
