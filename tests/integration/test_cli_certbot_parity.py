"""certbot's behaviour where `acmekit certonly/renew` once differed from it, through the
`acmekit` command line against `acmekit server` and `acmekit dns` (real processes): a
DER `--csr` and -d names that disagree with it, hook commands checked before anything is
ordered, hooks' output shown, a failing deploy hook that fails neither certonly nor
renew, directory deploy hooks when certonly replaces a lineage, and certbot's flags
(--new-key, --no-reuse-key, --allow-subset-of-names, --run-deploy-hooks,
--no-directory-hooks, --user-agent, --debug, --staging, --must-staple, -c cli.ini).

The tests share one config dir (one account: the CA limits new accounts per address)
and use names of their own.
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.cli import certbot_dirs, run_acmekit
from acmekit_testkit.dnsserver import DnsServerHandle, dns_server_process
from acmekit_testkit.ports import free_port
from acmekit_testkit.verify import dns_names, openssl_verify

EMAIL = "ops@parity.test"


@dataclass(frozen=True)
class Ca:
    server: ServerHandle
    dns: DnsServerHandle
    http01_port: int
    base: Path  # the shared directories' parent (etc/, work/, logs/ inside)

    @property
    def etc(self) -> Path:
        return self.base / "etc"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ca]:
    workdir = tmp_path_factory.mktemp("cli-parity")
    http01 = free_port()
    with (
        dns_server_process(workdir) as dns_server,
        running_acmekit_server(workdir, dns_port=dns_server.dns_port, http01_port=http01) as srv,
    ):
        ca = Ca(srv, dns_server, http01, workdir / "shared")
        _ok(acmekit(ca, "register", "--agree-tos", "-m", EMAIL,
                    "--server", srv.directory_url, *certbot_dirs(ca.base)))  # fmt: skip
        yield ca


def acmekit(ca: Ca, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_acmekit(ca.server.root_path, *args, cwd=cwd)


def standalone(ca: Ca) -> list[str]:
    return ["--standalone", "--http-01-port", str(ca.http01_port), "--http-01-address", "127.0.0.1"]


def certonly(ca: Ca, *args: str) -> subprocess.CompletedProcess[str]:
    return acmekit(
        ca, "certonly", "-n", "--agree-tos", "-m", EMAIL, "--server", ca.server.directory_url,
        *certbot_dirs(ca.base), *args,
    )  # fmt: skip


def renew(ca: Ca, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return acmekit(ca, "renew", "--cert-name", name, "--no-random-sleep-on-renew",
                   *certbot_dirs(ca.base), *args)  # fmt: skip


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def _live(ca: Ca, name: str, kind: str = "cert") -> Path:
    return ca.etc / "live" / name / f"{kind}.pem"


def _leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _spki(ca: Ca, name: str) -> bytes:
    key = _leaf(_live(ca, name)).public_key()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


# -- --csr ----------------------------------------------------------------------------


def _csr(*names: str) -> tuple[ec.EllipticCurvePrivateKey, x509.CertificateSigningRequest]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return key, csr


def test_csr_in_der(ca: Ca, tmp_path: Path) -> None:
    key, csr = _csr("der.parity.test")
    (tmp_path / "req.der").write_bytes(csr.public_bytes(serialization.Encoding.DER))
    _ok(certonly(ca, "--csr", str(tmp_path / "req.der"), *standalone(ca),
                 "--fullchain-path", str(tmp_path / "fc.pem"),
                 "--cert-path", str(tmp_path / "c.pem"),
                 "--chain-path", str(tmp_path / "ch.pem")))  # fmt: skip
    cert = openssl_verify(ca.server.root_path, tmp_path / "fc.pem", tmp_path)
    assert dns_names(cert) == ["der.parity.test"]
    assert cert.public_key() == key.public_key()


def test_csr_and_other_names_refused_before_ordering(ca: Ca, tmp_path: Path) -> None:
    _, csr = _csr("mine.parity.test")
    (tmp_path / "req.pem").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    hook = tmp_path / "pre-ran"
    got = certonly(ca, "--csr", str(tmp_path / "req.pem"), "-d", "other.parity.test",
                   *standalone(ca), "--pre-hook", f"touch {hook}")  # fmt: skip
    assert got.returncode == 1
    assert got.stderr.startswith("acmekit: Inconsistent domain requests"), got.stderr
    assert "mine.parity.test" in got.stderr and "other.parity.test" in got.stderr
    assert not hook.exists()  # refused before any hook, order or challenge


# -- hooks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "command", "words"),
    [
        ("--pre-hook", "nonexistentcmd123 --now", "Unable to find pre-hook command "
         "nonexistentcmd123 in the PATH"),
        ("--deploy-hook", "/nonexistent/cmd", "deploy-hook command /nonexistent/cmd does not"),
        ("--post-hook", "nonexistentcmd123", "Unable to find post-hook command"),
    ],
    ids=["pre", "deploy", "post"],
)  # fmt: skip
def test_hook_that_cannot_run_is_refused_up_front(
    ca: Ca, flag: str, command: str, words: str
) -> None:
    name = f"{flag.strip('-')}.bad-hook.parity.test"
    got = certonly(ca, *standalone(ca), "-d", name, flag, command)
    assert got.returncode == 1, got.stdout + got.stderr
    assert got.stderr.startswith(f"acmekit: {words}"), got.stderr
    assert not (ca.etc / "renewal" / f"{name}.conf").exists()
    renewed = renew(ca, "nosuch.parity.test", flag, command)
    assert renewed.returncode == 1 and words in renewed.stderr


def test_hook_validation_can_be_turned_off(ca: Ca) -> None:
    """--disable-hook-validation: the certificate is issued; the hook then fails, which
    is reported and (as in certbot) does not fail the command."""
    name = "nocheck.parity.test"
    got = certonly(ca, *standalone(ca), "-d", name, "--disable-hook-validation",
                   "--deploy-hook", "nonexistentcmd123")  # fmt: skip
    _ok(got)
    assert "Hook 'deploy-hook' reported error code 127" in got.stderr
    assert _live(ca, name).exists()


def test_failing_deploy_hook_fails_neither_certonly_nor_renew(ca: Ca) -> None:
    """certbot reports a failing deploy hook and exits 0: the certificate was saved."""
    name = "deployfails.parity.test"
    got = certonly(ca, *standalone(ca), "-d", name, "--deploy-hook", "false")
    _ok(got)
    assert "Hook 'deploy-hook' reported error code 1" in got.stderr
    renewed = renew(ca, name, "--force-renewal")
    _ok(renewed)
    assert "Hook 'deploy-hook' reported error code 1" in renewed.stderr
    assert f"{name}: renewed" in renewed.stdout


def test_hook_output_is_shown(ca: Ca) -> None:
    got = certonly(ca, *standalone(ca), "-d", "output.parity.test",
                   "--deploy-hook", "echo said-$RENEWED_DOMAINS; echo moaned >&2")  # fmt: skip
    _ok(got)
    assert "Hook 'deploy-hook' ran with output:\n said-output.parity.test\n" in got.stdout
    assert "Hook 'deploy-hook' ran with error output:" in got.stderr
    assert " moaned" in got.stderr


def test_directory_deploy_hooks(ca: Ca, tmp_path: Path) -> None:
    """certbot's rule: renewal-hooks/deploy/ runs for every new version of an existing
    lineage, certonly's too, never for a new lineage; --no-directory-hooks turns it off."""
    record = tmp_path / "deployed"
    hook = _script(ca.etc / "renewal-hooks" / "deploy" / "parity-record",
                   f'echo "$RENEWED_LINEAGE" >> {record}')  # fmt: skip
    try:
        name = "dirhooks.parity.test"
        _ok(certonly(ca, *standalone(ca), "-d", name))
        assert not record.exists()  # a new lineage: only --deploy-hook would run
        _ok(certonly(ca, *standalone(ca), "-d", name, "--force-renewal"))
        assert record.read_text().splitlines() == [str(ca.etc / "live" / name)]
        _ok(certonly(ca, *standalone(ca), "-d", name, "--force-renewal", "--no-directory-hooks"))
        _ok(renew(ca, name, "--force-renewal", "--no-directory-hooks"))
        assert len(record.read_text().splitlines()) == 1
        _ok(renew(ca, name, "--force-renewal"))
        assert len(record.read_text().splitlines()) == 2
    finally:
        hook.unlink()


def test_run_deploy_hooks_with_dry_run(ca: Ca, tmp_path: Path) -> None:
    name = "dryhooks.parity.test"
    _ok(certonly(ca, *standalone(ca), "-d", name))
    record = tmp_path / "deployed"
    hook = f'echo "$RENEWED_LINEAGE" >> {record}'
    _ok(renew(ca, name, "--dry-run", "--deploy-hook", hook))
    assert not record.exists()
    _ok(renew(ca, name, "--dry-run", "--deploy-hook", hook, "--run-deploy-hooks"))
    assert record.read_text().splitlines() == [str(ca.etc / "live" / name)]
    # reconfigure's test run too, as certbot's.
    reconfigure = ["reconfigure", "--cert-name", name, *certbot_dirs(ca.base), "--deploy-hook"]
    _ok(acmekit(ca, *reconfigure, f"{hook}; echo reconfigured >> {record}"))
    assert len(record.read_text().splitlines()) == 1
    _ok(acmekit(ca, *reconfigure, f"{hook}; echo again >> {record}", "--run-deploy-hooks"))
    assert record.read_text().splitlines()[1:] == [str(ca.etc / "live" / name), "again"]


# -- keys -------------------------------------------------------------------------------


def test_new_key_and_no_reuse_key(ca: Ca) -> None:
    name = "newkey.parity.test"
    conf = ca.etc / "renewal" / f"{name}.conf"
    _ok(certonly(ca, *standalone(ca), "-d", name, "--reuse-key"))
    first = _spki(ca, name)
    _ok(renew(ca, name, "--force-renewal"))
    assert _spki(ca, name) == first
    # --new-key with --reuse-key: a fresh key once, then kept by the next renewal.
    _ok(certonly(ca, *standalone(ca), "-d", name, "--force-renewal", "--new-key", "--reuse-key"))
    second = _spki(ca, name)
    assert second != first
    assert "reuse_key = True" in conf.read_text()
    _ok(renew(ca, name, "--force-renewal"))
    assert _spki(ca, name) == second
    # --no-reuse-key unsets it.
    _ok(renew(ca, name, "--force-renewal", "--no-reuse-key"))
    assert _spki(ca, name) != second
    assert "reuse_key" not in conf.read_text()


# -- --allow-subset-of-names -----------------------------------------------------------------


def _forbid(ca: Ca, name: str) -> None:
    """CAA at `name` naming another CA: this one refuses the name at validation."""
    caa = {"host": name, "policies": [{"tag": "issue", "value": "nobody.invalid"}]}
    request = urllib.request.Request(
        f"{ca.dns.api_url}/add-caa", json.dumps(caa).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def test_allow_subset_of_names(ca: Ca) -> None:
    """bad.*'s authorization fails: the certificate is ordered again for the others."""
    names = ["good.subset.parity.test", "bad.subset.parity.test"]
    _forbid(ca, names[1])
    args = [*standalone(ca), *(a for n in names for a in ("-d", n))]
    refused = certonly(ca, *args)
    assert refused.returncode == 1 and names[1] in refused.stderr
    assert not _live(ca, names[0]).exists()
    _ok(certonly(ca, *args, "--allow-subset-of-names"))
    assert dns_names(_leaf(_live(ca, names[0]))) == [names[0]]


def test_allow_subset_of_names_is_kept_for_renewal(ca: Ca) -> None:
    """Saved in the renewal conf, as certbot saves it: a renewal whose name has become
    unusable renews the others (a dry run, whose names are all proven anew)."""
    names = ["good.keep.parity.test", "bad.keep.parity.test"]
    _ok(certonly(ca, *standalone(ca), "-d", ",".join(names), "--allow-subset-of-names"))
    conf = ca.etc / "renewal" / f"{names[0]}.conf"
    assert "allow_subset_of_names = True" in conf.read_text()
    _forbid(ca, names[1])
    _ok(renew(ca, names[0], "--dry-run"))


# -- other flags ----------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    agents: list[str] = []

    def do_GET(self) -> None:
        self.agents.append(self.headers.get("User-Agent", ""))
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_user_agent_is_sent(ca: Ca) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/directory"
        got = acmekit(ca, "register", "--agree-tos", "-m", EMAIL, "--server", url,
                      *certbot_dirs(ca.base), "--user-agent", "parity-probe/1.0")  # fmt: skip
    finally:
        server.shutdown()
        thread.join()
    assert got.returncode == 1
    assert _Recorder.agents and set(_Recorder.agents) == {"parity-probe/1.0"}


def test_debug_shows_the_traceback(ca: Ca) -> None:
    args = [*standalone(ca), "--required-profile", "nosuch", "-d", "debug.parity.test"]
    plain = certonly(ca, *args)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = certonly(ca, *args, "--debug")
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("acmekit: ")


def test_flags_certbot_scripts_pass(ca: Ca) -> None:
    name = "scripts.parity.test"
    _ok(certonly(ca, *standalone(ca), "-d", name, "--no-eff-email", "--issuance-timeout", "60"))
    _ok(certonly(ca, *standalone(ca), "-d", name, "--eff-email", "--keep-until-expiring"))
    _ok(acmekit(ca, "certificates", "--server", ca.server.directory_url, *certbot_dirs(ca.base)))


def test_staging_and_must_staple(ca: Ca) -> None:
    both = certonly(ca, *standalone(ca), "-d", "staging.parity.test", "--staging")
    assert both.returncode == 2 and "--server value conflicts with --staging" in both.stderr
    staple = certonly(ca, *standalone(ca), "-d", "staple.parity.test", "--must-staple")
    assert staple.returncode == 2 and "OCSP" in staple.stderr
    assert not (ca.etc / "renewal" / "staple.parity.test.conf").exists()


def test_cli_ini(ca: Ca, tmp_path: Path) -> None:
    """certbot's cli.ini: -c FILE, and the config dir's own; the command line wins."""
    ini = tmp_path / "cli.ini"
    ini.write_text(
        "# certbot's format\nstandalone\n"
        f"http-01-port = {ca.http01_port}\nhttp-01-address = 127.0.0.1\n"
        "key-type = rsa\nrsa-key-size = 3072\nmax-log-backups = 0\n"
    )
    _ok(certonly(ca, "-c", str(ini), "-d", "ini.parity.test"))
    assert _leaf(_live(ca, "ini.parity.test")).public_key().key_size == 3072  # type: ignore[union-attr]
    _ok(certonly(ca, "--config", str(ini), "-d", "ini2.parity.test", "--key-type", "ecdsa"))
    assert isinstance(_leaf(_live(ca, "ini2.parity.test")).public_key(), ec.EllipticCurvePublicKey)
    own = ca.etc / "cli.ini"
    own.write_text(ini.read_text())
    try:
        _ok(certonly(ca, "-d", "ini3.parity.test"))
        assert _leaf(_live(ca, "ini3.parity.test")).public_key().key_size == 3072  # type: ignore[union-attr]
        # renew takes cli.ini's settings over the renewal conf's, as the command line's.
        own.write_text(f"{ini.read_text()}deploy-hook = echo from-cli-ini\n")
        renewed = renew(ca, "ini3.parity.test", "--force-renewal")
    finally:
        own.unlink()
    _ok(renewed)
    assert "Hook 'deploy-hook' ran with output:\n from-cli-ini" in renewed.stdout
