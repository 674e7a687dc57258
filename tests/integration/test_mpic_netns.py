"""Multi-perspective corroboration between test hosts: the CA and four perspectives each
in its own network namespace with its own `acmekit dns` as resolver, the CA reaching the
perspectives over veth links (acmekit_testkit.netns_hosts). The ACME client runs on the
CA's host (a driver script), so nothing touches this machine's own network."""

from __future__ import annotations

import json
import secrets
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from acmekit_testkit.acmekit_server import _toml, validation_flags
from acmekit_testkit.netns import NetNs
from acmekit_testkit.netns_hosts import linked_hosts
from acmekit_testkit.perspectives import issue_certs, perspective_flags
from acmekit_testkit.processes import logged_process, wait_for_lines

RIRS = ("ARIN", "RIPE", "APNIC", "LACNIC")
DNS_API = 8055
TOKEN = secrets.token_urlsafe(16)  # the DNS servers' APIs listen beyond loopback

DRIVER = textwrap.dedent(
    """
    import asyncio, json, sys, urllib.request
    from acmekit.protocol.challenges import dns01_record_name, dns01_txt_value, key_authorization
    from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme

    base, root, name, token, *apis = sys.argv[1:]

    def set_txt(api, host, value):
        req = urllib.request.Request(api + "/set-txt", method="POST",
            data=json.dumps({"host": host, "value": value}).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + token})
        urllib.request.urlopen(req, timeout=10).read()

    async def main():
        acme = HttpRawAcme(base, root)
        try:
            flow = Flow(acme, Http01Responder())
            await flow.account()
            order = (await flow.order(name)).json()
            authz = (await flow.get(order["authorizations"][0])).json()
            ch = next(c for c in authz["challenges"] if c["type"] == "dns-01")
            txt = dns01_txt_value(key_authorization(ch["token"], flow.key))
            for api in apis:
                set_txt(api, dns01_record_name(name).rstrip(".") + ".", txt)
            await acme.post(ch["url"], {}, flow.key, flow.kid)
            await flow.wait_for_authorizations(order)
            authz = (await flow.get(order["authorizations"][0])).json()
        finally:
            await acme.close()
        print(json.dumps(authz))

    asyncio.run(main())
    """
)


@dataclass(frozen=True)
class Hosts:
    ca: NetNs
    base_url: str
    root: Path
    ca_dns_api: str
    perspective_dns_apis: tuple[str, ...]
    workdir: Path


def dns_argv(listen_api: str) -> list[str]:
    return [sys.executable, "-m", "acmekit", "dns", "--listen", "127.0.0.1:53",
            "--api", listen_api, "--api-token", TOKEN, "--default-ipv4", "127.0.0.1"]  # fmt: skip


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    workdir = tmp_path_factory.mktemp("mpic-netns")
    state = workdir / "ca-state"
    with ExitStack() as stack:
        net = stack.enter_context(linked_hosts(len(RIRS)))
        entries = []
        apis = []
        for i, (spoke, rir) in enumerate(zip(net.spokes, RIRS, strict=True)):
            name = f"p{i}-{rir.lower()}"
            certs = issue_certs(state, name, workdir / name, (spoke.address,))
            api = f"{spoke.address}:{DNS_API}"
            dns_log = workdir / f"dns-{name}.log"
            proc = stack.enter_context(logged_process(spoke.ns.command(dns_argv(api)), dns_log))
            wait_for_lines(proc, dns_log, ("dns: ",), f"acmekit dns of {name}")
            argv = [
                sys.executable, "-m", "acmekit", "-v", "server", "perspective",
                "--listen", f"{spoke.address}:8443", "--name", name, "--rir", rir,
                "--state-dir", str(certs), "--dns-resolver", "127.0.0.1:53",
                "--timeout", "5", *perspective_flags(),
            ]  # fmt: skip
            log = workdir / f"{name}.log"
            proc = stack.enter_context(logged_process(spoke.ns.command(argv), log))
            found = wait_for_lines(proc, log, (f"perspective {name} ({rir}): ",), name)
            entries.append({"url": next(iter(found.values())), "name": name, "rir": rir})
            apis.append(f"http://{api}")
        ca_log = workdir / "dns-ca.log"
        proc = stack.enter_context(
            logged_process(net.hub.command(dns_argv(f"127.0.0.1:{DNS_API}")), ca_log)
        )
        wait_for_lines(proc, ca_log, ("dns: ",), "the CA's acmekit dns")
        config = workdir / "ca.toml"
        config.write_text(
            _toml({
                "rate_limits": {"enabled": False},
                "mpic": {"enabled": True, "timeout": 8, "perspectives": entries},
            })
        )  # fmt: skip
        argv = [
            sys.executable, "-m", "acmekit", "-v", "server", "--listen", "127.0.0.1:14000",
            "--state-dir", str(state), "--dns-resolver", "127.0.0.1:53",
            "--crl-listen", "127.0.0.1:14080", "--config", str(config), *validation_flags(),
        ]  # fmt: skip
        log = workdir / "ca.log"
        proc = stack.enter_context(logged_process(net.hub.command(argv), log))
        found = wait_for_lines(proc, log, ("directory: ", "root: "), "acmekit server")
        base = found["directory: "].removesuffix("/directory")
        yield Hosts(
            net.hub, base, Path(found["root: "]), f"http://127.0.0.1:{DNS_API}", tuple(apis),
            workdir,
        )  # fmt: skip


def order_on_the_ca_host(hosts: Hosts, name: str, apis: list[str]) -> dict[str, object]:
    script = hosts.workdir / "driver.py"
    script.write_text(DRIVER)
    done = hosts.ca.run(
        [sys.executable, str(script), hosts.base_url, str(hosts.root), name, TOKEN, *apis],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    doc: dict[str, object] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return doc


def test_perspectives_on_their_own_hosts_corroborate(hosts: Hosts) -> None:
    apis = [hosts.ca_dns_api, *hosts.perspective_dns_apis]
    authz = order_on_the_ca_host(hosts, "everywhere.netns.test", apis)
    assert authz["status"] == "valid", authz
    log = (hosts.workdir / "ca.log").read_text()
    assert "mpic for authorization" in log and "everywhere.netns.test): pass" in log, log


def test_an_attacker_who_controls_only_the_cas_view_fails(hosts: Hosts) -> None:
    authz = order_on_the_ca_host(hosts, "victim.netns.test", [hosts.ca_dns_api])
    assert authz["status"] == "invalid", authz
    challenges = authz["challenges"]
    assert isinstance(challenges, list)
    error = next(c["error"] for c in challenges if "error" in c)
    assert error["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "remote perspectives did not corroborate" in error["detail"]
