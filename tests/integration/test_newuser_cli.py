"""What a newcomer from certbot, Pebble or step-ca types wrong, or types as certbot takes
it: each mistake is one line naming what is wrong (the file, the setting, the flag) and a
non-zero exit, and `certificates` filters as certbot's does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.certbot.lineage import CertFiles, LineageStore
from acmekit.certbot.renewalparams import Authenticator, RenewalParams
from acmekit_testkit.acmekit_server import CaProcess, running_ca_process
from acmekit_testkit.dnsserver import DnsServerHandle

DIRS = ["--config-dir", "etc", "--work-dir", "work", "--logs-dir", "logs"]


def _acmekit(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acmekit", *argv],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip


def _one_line_error(argv: list[str], cwd: Path) -> str:
    """Run `acmekit ARGV`: it must fail without a traceback; its one error line."""
    result = _acmekit(argv, cwd)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "rror" in line or "acmekit:" in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ('mmd = "x"', "setting mmd = 'x' must be a number of seconds"),
        ("mmd = 0", "setting mmd = 0 must be a number of seconds (at least 0.1)"),
        ("listen = 5", "setting listen = 5 must be a string"),
        ("not_after_start = 3", "setting not_after_start = 3 must be a date"),
    ],
)
def test_a_ct_config_value_of_the_wrong_type_names_the_file_and_setting(
    setting: str, words: str, tmp_path: Path
) -> None:
    (tmp_path / "ct.toml").write_text(f"{setting}\n")
    line = _one_line_error(["ct", "--config", "ct.toml", "--state-dir", "ct"], tmp_path)
    assert line.startswith(f"acmekit: ct.toml: {words}")
    assert not (tmp_path / "ct").exists()  # refused before anything was made


BAD_BUNDLES = [("missing.pem", "No such file or directory"),
               ("notpem.json", "it holds no PEM certificate")]  # fmt: skip


CERTONLY = ["certonly", "--standalone", "-d", "a.test", "-n", "--agree-tos",
            "--register-unsafely-without-email", "--server", "https://127.0.0.1:9/directory",
            *DIRS]  # fmt: skip


@pytest.mark.parametrize(("bundle", "reason"), BAD_BUNDLES, ids=["missing", "not PEM"])
@pytest.mark.parametrize("argv", [["check", "127.0.0.1:9"], CERTONLY], ids=["check", "certonly"])
def test_an_unusable_ca_bundle_is_named_not_the_server(
    argv: list[str], bundle: str, reason: str, tmp_path: Path
) -> None:
    (tmp_path / "notpem.json").write_text('{"operators": []}\n')
    line = _one_line_error([*argv, "--ca-bundle", bundle], tmp_path)
    assert line == f"acmekit: cannot use the roots in {bundle}: {reason}"


@pytest.mark.parametrize(
    "argv",
    [
        ["certonly", "--standalone", "-d", "a.test", *DIRS],
        ["renew", *DIRS],
        ["revoke", "--cert-name", "a.test", *DIRS],
        ["register", *DIRS],
    ],
    ids=["certonly", "renew", "revoke", "register"],
)
def test_a_server_that_is_not_a_url_is_a_usage_error(argv: list[str], tmp_path: Path) -> None:
    result = _acmekit([*argv, "--server", "acme.example"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'acme.example' is not an ACME directory URL" in result.stderr
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize(
    ("flag", "given", "said"),
    [
        ("-d", "https://a.test", "https://a.test is a URL, not a domain name"),
        ("-d", "a.test,127.0.0.1", "127.0.0.1 is an IP address; give it with --ip-address"),
        ("-d", "a..test", "a..test has an empty label"),
        ("-d", "bücher.test", "use its Punycode (xn--) form"),
        ("--ip-address", "a.test", "a.test is not an IP address"),
    ],
    ids=["url", "address", "empty-label", "non-ascii", "not-an-address"],
)
def test_a_name_certbot_would_refuse_is_refused_before_any_account(
    flag: str, given: str, said: str, tmp_path: Path
) -> None:
    """certbot checks each requested name before it talks to the CA: nothing is
    registered or written for a name no CA would take."""
    argv = ["certonly", "--standalone", "-n", "--agree-tos", "--register-unsafely-without-email",
            "--server", "https://127.0.0.1:9/directory", *DIRS, flag, given]  # fmt: skip
    result = _acmekit(argv, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert said in result.stderr
    assert not (tmp_path / "etc").exists()


def _lineage(store: LineageStore, *names: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    params = RenewalParams(Authenticator.STANDALONE, "https://127.0.0.1:9/directory")
    store.create(names[0], CertFiles(pem, pem, pem + pem, private), params.to_section(), "0.1.0")


@pytest.fixture
def two_lineages(tmp_path: Path) -> Path:
    store = LineageStore(tmp_path / "etc")
    _lineage(store, "a.test", "www.a.test")
    _lineage(store, "b.test")
    return tmp_path


def test_update_symlinks_follows_an_archive_moved_by_hand(two_lineages: Path) -> None:
    """certbot's update_symlinks: after archive_dir is edited in a renewal conf (the
    archive moved), the live links point into the new place; a lineage whose archive is
    gone is named and the command fails, the others are still repointed."""
    etc = two_lineages / "etc"
    moved = two_lineages / "elsewhere" / "a.test"
    moved.parent.mkdir()
    (etc / "archive" / "a.test").rename(moved)
    conf = etc / "renewal" / "a.test.conf"
    conf.write_text(conf.read_text().replace(str(etc / "archive" / "a.test"), str(moved)))
    live = etc / "live" / "a.test"
    assert not (live / "cert.pem").exists()  # dangling until repointed
    ok = _acmekit(["update_symlinks", *DIRS], two_lineages)
    assert ok.returncode == 0, ok.stderr
    for kind in ("cert", "chain", "fullchain", "privkey"):
        link = live / f"{kind}.pem"
        assert os.readlink(link) == f"../../../elsewhere/a.test/{kind}1.pem"
        assert link.read_bytes() == (moved / f"{kind}1.pem").read_bytes()
    assert os.readlink(etc / "live" / "b.test" / "cert.pem") == "../../archive/b.test/cert1.pem"
    for path in sorted((etc / "archive" / "b.test").iterdir()):
        path.unlink()
    failed = _acmekit(["update_symlinks", *DIRS], two_lineages)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.startswith("acmekit: lineage b.test: ")
    assert "cert1.pem does not exist" in failed.stderr
    assert (live / "cert.pem").is_file()  # a.test is untouched by b.test's failure


def _names(stdout: str) -> list[str]:
    return [ln.split(": ", 1)[1] for ln in stdout.splitlines() if "Certificate Name:" in ln]


def test_certificates_for_a_name_no_lineage_has_finds_none(two_lineages: Path) -> None:
    result = _acmekit(["certificates", "--cert-name", "nope.test", *DIRS], two_lineages)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "No certificates found.\n"


@pytest.mark.parametrize(
    ("filters", "found"),
    [
        (["-d", "www.a.test"], ["a.test"]),
        (["-d", "a.test", "-d", "www.a.test"], ["a.test"]),
        (["-d", "b.test,a.test"], []),
        (["--cert-name", "b.test", "-d", "b.test"], ["b.test"]),
    ],
)
def test_certificates_filters_by_domain_as_certbot_does(
    filters: list[str], found: list[str], two_lineages: Path
) -> None:
    result = _acmekit(["certificates", *filters, *DIRS], two_lineages)
    assert result.returncode == 0, result.stderr
    assert _names(result.stdout) == found
    header = "Found the following matching certs:" if found else "No certificates found."
    assert result.stdout.splitlines()[0] == header


@pytest.fixture(scope="module")
def ca(
    tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle
) -> Iterator[CaProcess[DnsServerHandle]]:
    with running_ca_process(tmp_path_factory.mktemp("newuser-ca"), dns) as found:
        yield found


def _without_env_bundle(
    argv: list[str], cwd: Path, bundle: Path | None = None, status: int = 1
) -> list[str]:
    """`acmekit ARGV` with no terminal and REQUESTS_CA_BUNDLE `bundle` or unset, ending in
    `status`: its stderr's `acmekit:` lines."""
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    if bundle is not None:
        env["REQUESTS_CA_BUNDLE"] = str(bundle)
    result = subprocess.run(
        [sys.executable, "-m", "acmekit", *argv, *DIRS],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert "Traceback" not in result.stderr
    assert result.returncode == status, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("acmekit: ")]


def test_an_untrusted_ca_names_the_roots_it_was_checked_against(
    ca: CaProcess[DnsServerHandle], tmp_path: Path
) -> None:
    """The trap of a certbot user whose environment sets REQUESTS_CA_BUNDLE for other
    programs: it replaces the renewal conf's ca_bundle, and the error says so."""
    (tmp_path / "other-roots.pem").write_bytes(_self_signed("other root"))
    name = "roots.newuser.test"
    obtain = ["certonly", "-n", "--agree-tos", "--register-unsafely-without-email",
              "--server", ca.server.directory_url, "--ca-bundle", str(ca.server.root_path),
              "--standalone", "--http-01-address", "127.0.0.1",
              "--http-01-port", str(ca.http01_port), "-d", name]  # fmt: skip
    assert _without_env_bundle(obtain, tmp_path, status=0) == []

    # Not due: the CA is asked only for its renewal window, and says why it cannot answer.
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(tmp_path / "other-roots.pem")}
    quiet = subprocess.run(
        [sys.executable, "-m", "acmekit", "renew", "--no-random-sleep-on-renew", *DIRS],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert (
        f"no renewal information for {name}: GET {ca.server.directory_url}: the server's "
        f"certificate is not trusted by the roots in {tmp_path / 'other-roots.pem'} "
        "(certificate verify failed: unable to get local issuer certificate)\n" in quiet.stderr
    )
    assert "SSLCertVerificationError" not in quiet.stderr

    renew = ["renew", "--force-renewal", "--no-random-sleep-on-renew"]
    (line,) = _without_env_bundle(renew, tmp_path, tmp_path / "other-roots.pem")
    assert line.startswith(f"acmekit: {name}: renewal failed: GET {ca.server.directory_url}: ")
    assert (
        f"not trusted by the roots in {tmp_path / 'other-roots.pem'} (named by "
        "REQUESTS_CA_BUNDLE): unable to get local issuer certificate; give its root" in line
    )

    (line,) = _without_env_bundle([*obtain[:6], "--standalone", "-d", "sys.newuser.test"], tmp_path)
    assert "not trusted by the system's roots: unable to get local issuer certificate" in line


def _self_signed(common_name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_expand_grows_the_lineage_whose_names_are_all_asked_for(
    ca: CaProcess[DnsServerHandle], tmp_path: Path
) -> None:
    """certbot's --expand: the existing lineage gets a new version with the added names,
    in place, instead of a second lineage `NAME-0001`."""
    base = ["certonly", "-n", "--agree-tos", "--register-unsafely-without-email",
            "--server", ca.server.directory_url, "--ca-bundle", str(ca.server.root_path),
            "--standalone", "--http-01-address", "127.0.0.1",
            "--http-01-port", str(ca.http01_port)]  # fmt: skip
    assert _without_env_bundle([*base, "-d", "grow.newuser.test"], tmp_path, status=0) == []
    more = ["-d", "grow.newuser.test", "-d", "www.grow.newuser.test"]
    assert _without_env_bundle([*base, "--expand", *more], tmp_path, status=0) == []
    store = LineageStore(tmp_path / "etc")
    assert store.names() == ["grow.newuser.test"]
    lineage = store.load("grow.newuser.test")
    assert sorted(lineage.names) == ["grow.newuser.test", "www.grow.newuser.test"]
    assert os.readlink(lineage.live_dir / "cert.pem") == "../../archive/grow.newuser.test/cert2.pem"


def test_a_silent_dns_resolver_is_named(ca: CaProcess[DnsServerHandle], tmp_path: Path) -> None:
    """A --dns-resolver that never answers: the line says which resolver and what was
    asked, not only dnspython's "Timeout: The DNS operation timed out"."""
    with socket.socket(type=socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        argv = ["certonly", "-n", "--agree-tos", "--register-unsafely-without-email",
                "--server", ca.server.directory_url, "--ca-bundle", str(ca.server.root_path),
                "--dns-hook", "true", "--dns-resolver", f"127.0.0.1:{port}",
                "-d", "quiet.newuser.test"]  # fmt: skip
        (line,) = _without_env_bundle(argv, tmp_path)
    assert line.startswith(
        "acmekit: cannot look up CNAME _acme-challenge.quiet.newuser.test. at the resolver "
        f"127.0.0.1:{port}: "
    )


def test_a_dns_state_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "records.json").write_text("{not json\n")
    argv = ["dns", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", "--state", "records.json"]
    line = _one_line_error(argv, tmp_path)
    assert line.startswith("Error: records.json is not a state file: not JSON (")


@pytest.mark.parametrize(
    "argv",
    [
        ["server", "--listen", "127.0.0.1:0", "--crl-listen", "127.0.0.1:0"],
        ["ct", "--listen", "127.0.0.1:0", "--roots", "roots.pem"],
    ],
    ids=["server", "ct"],
)
def test_a_state_dir_that_is_a_file_is_named(argv: list[str], tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file, not a directory\n")
    (tmp_path / "roots.pem").write_bytes(_self_signed("a root"))
    line = _one_line_error([*argv, "--state-dir", "state"], tmp_path)
    assert line == "acmekit: --state-dir state is not a directory"


def test_update_account_reports_as_certbot_does(
    ca: CaProcess[DnsServerHandle], tmp_path: Path
) -> None:
    """certbot prints the addresses as typed (no `mailto:`), and says when none is left."""
    server = ["--server", ca.server.directory_url, "--ca-bundle", str(ca.server.root_path)]
    done = _acmekit(["register", "-n", "--agree-tos", "-m", "a@newuser.test", *server, *DIRS],
                    tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    two = _acmekit(["update_account", "-m", "b@newuser.test,c@newuser.test", *server, *DIRS],
                   tmp_path)  # fmt: skip
    assert two.stdout == "Your e-mail address was updated to b@newuser.test,c@newuser.test.\n"
    none = _acmekit(["update_account", "-m", "", *server, *DIRS], tmp_path)
    assert none.returncode == 0, none.stderr
    assert none.stdout == "Any contact information associated with this account has been removed.\n"


def test_quiet_renew_prints_only_errors_as_certbots_does(
    ca: CaProcess[DnsServerHandle], tmp_path: Path
) -> None:
    """`certbot -q renew` (Debian's cron line) and `certbot renew -q`: silence unless
    something fails, and then only the failure."""
    obtain = ["certonly", "-n", "--agree-tos", "--register-unsafely-without-email",
              "--server", ca.server.directory_url, "--ca-bundle", str(ca.server.root_path),
              "--standalone", "--http-01-address", "127.0.0.1",
              "--http-01-port", str(ca.http01_port), "-d", "hush.newuser.test"]  # fmt: skip
    assert _without_env_bundle(obtain, tmp_path, status=0) == []

    def run(argv: list[str], roots: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
        env |= {"REQUESTS_CA_BUNDLE": str(roots)} if roots else {}
        return subprocess.run(
            [sys.executable, "-m", "acmekit", *argv, "--no-random-sleep-on-renew", *DIRS],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    for argv in (["-q", "renew"], ["renew", "-q"], ["renew", "--quiet", "--force-renewal"]):
        done = run(argv)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), argv
    (tmp_path / "other-roots.pem").write_bytes(_self_signed("other root"))
    failed = run(["renew", "-q", "--force-renewal"], tmp_path / "other-roots.pem")
    assert failed.returncode == 1 and failed.stdout == ""
    (line,) = failed.stderr.splitlines()
    assert line.startswith("acmekit: hush.newuser.test: renewal failed: GET ")


def test_a_lineage_without_an_account_says_so(two_lineages: Path) -> None:
    """A renewal conf naming no account (written by hand, or its account removed) and no
    account on disk: the line says which server has none, not 'no account None'."""
    result = _acmekit(["renew", "--no-random-sleep-on-renew", *DIRS], two_lineages)
    assert result.returncode == 1 and "None" not in result.stderr
    assert result.stderr.splitlines() == [
        f"acmekit: {name}: renewal failed: no account for https://127.0.0.1:9/directory in etc"
        for name in ("a.test", "b.test")
    ]


def test_more_names_without_expand_is_refused_as_certbot_does(
    ca: CaProcess[DnsServerHandle], tmp_path: Path
) -> None:
    """certbot -n with names that are a superset of a lineage's, without --expand: an
    error naming --expand and --duplicate, not a quiet `NAME-0001`; --duplicate makes it."""
    base = ["certonly", "-n", "--agree-tos", "--register-unsafely-without-email",
            "--server", ca.server.directory_url, "--ca-bundle", str(ca.server.root_path),
            "--standalone", "--http-01-address", "127.0.0.1",
            "--http-01-port", str(ca.http01_port)]  # fmt: skip
    assert _without_env_bundle([*base, "-d", "sup.newuser.test"], tmp_path, status=0) == []
    more = ["-d", "sup.newuser.test", "-d", "www.sup.newuser.test"]
    (line,) = _without_env_bundle([*base, *more], tmp_path)
    conf = tmp_path / "etc" / "renewal" / "sup.newuser.test.conf"
    assert line == (
        f"acmekit: an existing certificate ({conf}) contains a "
        "portion of the names requested: sup.newuser.test; give --expand to expand and "
        "replace it, or --duplicate for a new certificate beside it"
    )
    store = LineageStore(tmp_path / "etc")
    assert store.names() == ["sup.newuser.test"]
    assert _without_env_bundle([*base, "--duplicate", *more], tmp_path, status=0) == []
    assert store.names() == ["sup.newuser.test", "sup.newuser.test-0001"]
    assert sorted(store.load("sup.newuser.test-0001").names) == [
        "sup.newuser.test", "www.sup.newuser.test"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("http01_port = 'x'", "setting http01_port = 'x' must be a number"),
        ("[caa]\nrecheck_after = '8h'", "setting caa.recheck_after = '8h' must be a number of "
         "seconds"),
        ("[rate_limits]\nenabled = 'yes'", "setting rate_limits.enabled = 'yes' must be true or "
         "false"),
    ],
)  # fmt: skip
def test_a_server_config_value_of_the_wrong_type_names_the_file_and_setting(
    setting: str, words: str, tmp_path: Path
) -> None:
    (tmp_path / "ca.toml").write_text(f"{setting}\n")
    argv = ["server", "--config", "ca.toml", "--state-dir", "ca", "--listen", "127.0.0.1:0"]
    assert _one_line_error(argv, tmp_path) == f"acmekit: ca.toml: {words}"
    assert not (tmp_path / "ca").exists()


def test_an_rsa_key_size_too_small_names_the_flag(tmp_path: Path) -> None:
    """certbot refuses fewer than 1024 bits; the line names the flag and the sizes, not
    the crypto library's "key_size must be at least 1024-bits."."""
    result = _acmekit([*CERTONLY, "--key-type", "rsa", "--rsa-key-size", "100"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--rsa-key-size': 100 bits is too small: give 2048, 3072 "
        "or 4096 (at least 1024)"
    )
    assert not (tmp_path / "etc").exists()  # refused before any account or order


@pytest.mark.parametrize(
    ("hook", "why"),
    [
        ("./nohook.sh", "./nohook.sh does not exist"),
        ("./plain.sh --zone x", "./plain.sh is not an executable file"),
        ("no-such-hook-program", "no-such-hook-program is not found on PATH"),
    ],
)
def test_a_missing_dns_hook_names_the_flag_and_path(hook: str, why: str, tmp_path: Path) -> None:
    (tmp_path / "plain.sh").write_text("#!/bin/sh\n")  # not executable
    argv = [*CERTONLY[:1], *CERTONLY[2:], "--dns-hook", hook]  # without --standalone
    result = _acmekit(argv, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == f"Error: Invalid value for '--dns-hook': {why}"
    assert not (tmp_path / "etc").exists()  # refused before any account or order
