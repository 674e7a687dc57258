"""The `--nginx` plugin against Debian's nginx on loopback: the http-01 answer served
through the running nginx and taken away, the certificate installed, and nginx
refusing an edit (the files byte for byte as before, a clear error)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.certbot.nginx.authenticator import NginxSolver
from acmekit.certbot.nginx.control import NginxControl, NginxError, NginxLock
from acmekit.certbot.nginx.installer import Installation, InstallError, NginxInstaller
from acmekit.certbot.nginx.parser import NginxConfig
from acmekit.client.resources import Challenge
from acmekit.client.solvers.errors import SolverError
from acmekit.protocol.messages import ChallengeStatus, Identifier, IdentifierType
from acmekit_testkit.cli import run_acmekit
from acmekit_testkit.nginx_site import NginxSite, running_nginx_site
from acmekit_testkit.ports import free_port

pytestmark = pytest.mark.interop

PATH = "/.well-known/acme-challenge/"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[NginxSite]:
    with running_nginx_site(tmp_path / "nginx") as running:
        yield running


def _control(site: NginxSite) -> NginxControl:
    return NginxControl(site.server_root, "nginx", 0.1)


def _chall(token: str) -> Challenge:
    return Challenge(f"https://ca.test/chall/{token}", "http-01", ChallengeStatus.PENDING, token)


def _dns(name: str) -> Identifier:
    return Identifier(IdentifierType.DNS, name)


async def test_answers_are_served_by_the_picked_blocks_and_removed_after(
    site: NginxSite, tmp_path: Path
) -> None:
    before = site.snapshot()
    solver = NginxSolver(_control(site), tmp_path / "work", site.http_port)
    names = {
        "www.a.nginx.test": "tok-a" + "A" * 20,  # exact name, second of two
        "x.wild.nginx.test": "tok-w" + "W" * 20,  # leading wildcard, location in a snippet
        "other.nginx.test": "tok-d" + "D" * 20,  # the default server's `return 404`
    }
    for name, token in names.items():
        await solver.present(_dns(name), _chall(token), f"{token}.ka")
    await solver.wait()
    for name, token in names.items():
        assert site.wait_for(name, PATH + token, (200, f"{token}.ka")) == (200, f"{token}.ka")
    assert site.get("a.nginx.test") == (200, "", "site a\n")  # the site itself unchanged
    assert site.snapshot() != before
    for name, token in names.items():
        await solver.cleanup(_dns(name), _chall(token), f"{token}.ka")
    assert site.snapshot() == before
    token = names["www.a.nginx.test"]
    assert site.wait_for("www.a.nginx.test", PATH + token, (200, "site a\n")) == (200, "site a\n")
    assert not any((tmp_path / "work" / "nginx-http01").glob("*.conf"))


async def test_an_edit_nginx_refuses_is_rolled_back(site: NginxSite, tmp_path: Path) -> None:
    token = "dup-" + "x" * 30
    snippet = site.server_root / "snippets" / "wild.conf"
    # the site answers this token itself: our `location =` would be a duplicate
    snippet.write_text(snippet.read_text() + f'location = {PATH}{token} {{ return 200 "mine"; }}\n')
    before = site.snapshot()
    solver = NginxSolver(_control(site), tmp_path / "work", site.http_port)
    await solver.present(_dns("y.wild.nginx.test"), _chall(token), f"{token}.ka")
    with pytest.raises(SolverError) as info:
        await solver.wait()
    message = str(info.value)
    assert "nginx -t failed" in message and "duplicate location" in message
    assert "restored" in message
    assert site.snapshot() == before
    assert site.get("a.nginx.test") == (200, "", "site a\n")  # still running, as it was
    await solver.close()
    assert site.snapshot() == before


async def test_a_configuration_broken_before_we_start_is_not_touched(
    site: NginxSite, tmp_path: Path
) -> None:
    (site.server_root / "sites" / "broken.conf").write_text("server { no_such_directive on; }\n")
    before = site.snapshot()
    solver = NginxSolver(_control(site), tmp_path / "work", site.http_port)
    await solver.present(_dns("a.nginx.test"), _chall("t" * 30), "t.ka")
    with pytest.raises(SolverError, match=r"unknown directive.*before any change"):
        await solver.wait()
    assert site.snapshot() == before


def _self_signed(directory: Path, names: list[str]) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    chain, privkey = directory / "fullchain.pem", directory / "privkey.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    privkey.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return chain, privkey


def _connect(port: int) -> socket.socket:
    """A connection to a port nginx listens on after a reload, polled for: the reload
    returns before the master opens the new port."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _served_cert(port: int, name: str, root: Path) -> x509.Certificate:
    ctx = ssl.create_default_context(cafile=str(root))
    with (
        _connect(port) as raw,
        ctx.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


async def test_install_with_redirect_then_rollback(site: NginxSite, tmp_path: Path) -> None:
    before = site.snapshot()
    names = ["a.nginx.test", "www.a.nginx.test", "new.nginx.test"]
    chain, privkey = _self_signed(tmp_path / "live" / "a", names)
    https_port = free_port()
    installer = NginxInstaller(_control(site), tmp_path / "work")
    inst = Installation(names, chain, privkey, https_port, site.http_port, redirect=True)
    report = await installer.install(inst)
    assert report.created == ["new.nginx.test"]  # a copy of the default server
    assert sorted(n for ns in report.blocks.values() for n in ns) == sorted(names)
    for name in names:
        assert site.wait_for(name, "/", (301, None))[0] == 301
        status, location, _ = site.get(name, "/x?y=1")
        assert (status, location) == (301, f"https://{name}:{https_port}/x?y=1")
        cert = _served_cert(https_port, name, chain)
        assert cert.public_bytes(serialization.Encoding.PEM) == chain.read_bytes()
    # challenges are not redirected (the default server's copy answers 404 for them)
    assert site.get("a.nginx.test", PATH + "t")[0] == 200  # site a's `location /`
    # installed again: nothing left to change
    again = await installer.install(inst)
    assert list(again.blocks) == list(report.blocks) and again.created == []
    # `acmekit rollback` puts every file back as it was
    result = run_acmekit(
        chain, "rollback", "--checkpoints", "2", "--nginx-server-root", str(site.server_root),
        "--nginx-sleep-seconds", "0.1", "--work-dir", str(tmp_path / "work"),
        "--config-dir", str(tmp_path / "etc"), "--logs-dir", str(tmp_path / "logs"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert site.snapshot() == before
    assert site.wait_for("a.nginx.test", "/", (200, "site a\n")) == (200, "site a\n")


async def test_an_installation_nginx_refuses_leaves_every_file_as_it_was(
    site: NginxSite, tmp_path: Path
) -> None:
    before = site.snapshot()
    missing = tmp_path / "live" / "gone"
    inst = Installation(
        ["a.nginx.test", "brand-new.nginx.test"],
        missing / "fullchain.pem",
        missing / "privkey.pem",
        free_port(),
        site.http_port,
    )
    with pytest.raises(InstallError) as info:
        await NginxInstaller(_control(site), tmp_path / "work").install(inst)
    assert "nginx -t failed" in str(info.value) and "fullchain.pem" in str(info.value)
    assert "every file was restored" in str(info.value)
    assert site.snapshot() == before
    assert not list((tmp_path / "work" / "backups").iterdir())


def test_debian_default_configuration_parses_and_round_trips() -> None:
    config = NginxConfig.load(Path("/etc/nginx/nginx.conf"))
    assert len(config.files) > 1  # it includes modules, mime types and sites
    for conf in config.files.values():
        assert conf.path.read_text(errors="surrogateescape") == conf.text


async def test_one_editor_at_a_time(site: NginxSite, tmp_path: Path) -> None:
    before = site.snapshot()
    first = NginxSolver(_control(site), tmp_path / "one", site.http_port)
    second = NginxSolver(_control(site), tmp_path / "two", site.http_port)
    await first.present(_dns("a.nginx.test"), _chall("one" + "1" * 30), "one.ka")
    await first.wait()
    with pytest.raises(NginxError, match="another run is editing"):
        await NginxLock(site.server_root, wait_seconds=0).acquire()
    # the second run waits its turn and then edits the user's files, not the first's
    await second.present(_dns("b.x"), _chall("two" + "2" * 30), "two.ka")
    second_wait = asyncio.create_task(second.wait())
    await first.cleanup(_dns("a.nginx.test"), _chall("one" + "1" * 30), "one.ka")
    await second_wait
    token = "two" + "2" * 30
    assert site.wait_for("b.x", PATH + token, (200, "two.ka"))[1] == "two.ka"
    await second.cleanup(_dns("b.x"), _chall(token), "two.ka")
    assert site.snapshot() == before


async def test_a_run_that_died_mid_challenge_is_undone_by_the_next(
    site: NginxSite, tmp_path: Path
) -> None:
    before = site.snapshot()
    dead = NginxSolver(_control(site), tmp_path / "work", site.http_port)
    await dead.present(_dns("a.nginx.test"), _chall("dead" + "d" * 30), "dead.ka")
    await dead.wait()
    dead._nginx_lock.release()  # the process is gone: its lock with it, its edit stays
    assert site.snapshot() != before
    token = "next" + "n" * 30
    nxt = NginxSolver(_control(site), tmp_path / "work", site.http_port)
    await nxt.present(_dns("a.nginx.test"), _chall(token), "next.ka")
    await nxt.wait()
    assert site.wait_for("a.nginx.test", PATH + token, (200, "next.ka"))[1] == "next.ka"
    dead_url = PATH + "dead" + "d" * 30
    assert site.wait_for("a.nginx.test", dead_url, (200, "site a\n"))[1] == "site a\n"
    await nxt.cleanup(_dns("a.nginx.test"), _chall(token), "next.ka")
    assert site.snapshot() == before
