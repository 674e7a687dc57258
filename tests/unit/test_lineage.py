"""certbot's layout on disk: renewal conf round trip, atomic writes, lineages, accounts."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from acmekit.certbot import renewalconf
from acmekit.certbot.accounts import (
    AccountStore,
    account_id,
    key_from_private_jwk,
    private_jwk,
    server_path,
)
from acmekit.certbot.lineage import (
    DEPLOY_OWED,
    CertFiles,
    LineageStore,
    atomic_symlink,
    atomic_write,
    next_version,
)
from acmekit.certbot.renewalparams import (
    Authenticator,
    RenewalParams,
    map_webroots,
    params_from_conf,
)

CERTBOT_CONF = """\
# renew_before_expiry = 30 days
version = 2.1.0
archive_dir = /etc/letsencrypt/archive/a.test
cert = /etc/letsencrypt/live/a.test/cert.pem
privkey = /etc/letsencrypt/live/a.test/privkey.pem
chain = /etc/letsencrypt/live/a.test/chain.pem
fullchain = /etc/letsencrypt/live/a.test/fullchain.pem

# Options used in the renewal process
[renewalparams]
account = 2e4d601a3b9049da86d34bd81478c464
authenticator = webroot
webroot_path = /var/www/html,
renew_hook = 'echo "a, b" # c'
pre_hook = it's
empty = ""
two = a, b
server = https://127.0.0.1:14000/directory
key_type = ecdsa
[[webroot_map]]
a.test = /var/www/html
"""


def test_certbot_conf_round_trips_byte_for_byte() -> None:
    doc = renewalconf.parse(CERTBOT_CONF)
    params = renewalconf.get_section(doc, "renewalparams")
    assert params["webroot_path"] == ["/var/www/html"]
    assert params["renew_hook"] == 'echo "a, b" # c'
    assert params["pre_hook"] == "it's"
    assert params["empty"] == ""
    assert params["two"] == ["a", "b"]
    assert renewalconf.get_section(params, "webroot_map") == {"a.test": "/var/www/html"}
    comment = renewalconf.initial_comment(CERTBOT_CONF)
    assert renewalconf.render(doc, comment) == CERTBOT_CONF


def test_renewal_params_keep_unknown_keys_and_read_certbot_names() -> None:
    doc = renewalconf.parse(CERTBOT_CONF)
    params = params_from_conf(doc)
    assert params.authenticator == Authenticator.WEBROOT
    assert params.webroot_path == ("/var/www/html",)
    assert params.webroot_map == {"a.test": "/var/www/html"}
    assert params.renew_hook == 'echo "a, b" # c'
    assert params.extra["two"] == ["a", "b"]
    again = RenewalParams.from_section(params.to_section())
    assert again == params


def test_params_without_key_type_are_rsa_as_old_certbot_wrote() -> None:
    doc = renewalconf.parse("[renewalparams]\nauthenticator = standalone\nserver = https://x/d\n")
    params = params_from_conf(doc)
    assert params.key_type == "rsa"
    assert isinstance(params.new_key(), rsa.RSAPrivateKey)


def test_each_name_takes_the_webroot_given_before_it() -> None:
    assert map_webroots([("-w", "/A"), ("-d", "a"), ("-w", "/B"), ("-d", "b"), ("-d", "c")]) == {
        "a": "/A", "b": "/B", "c": "/B",
    }  # fmt: skip
    # One -w after the names serves them all; a trailing -w serves no one.
    assert map_webroots([("-d", "a"), ("-d", "b"), ("-w", "/A")]) == {"a": "/A", "b": "/A"}
    assert map_webroots([("-w", "/A"), ("-d", "a"), ("-w", "/B")]) == {"a": "/A"}
    with pytest.raises(ValueError, match="must come before every -d"):
        map_webroots([("-d", "a"), ("-w", "/A"), ("-w", "/B")])


def test_atomic_write_replaces_whole_file_with_mode(tmp_path: Path) -> None:
    target = tmp_path / "privkey1.pem"
    target.write_text("old")
    atomic_write(target, b"new content", 0o600)
    assert target.read_bytes() == b"new content"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["privkey1.pem"]  # no temp left


def test_atomic_symlink_switches_target(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    link = tmp_path / "link"
    atomic_symlink("a", link)
    atomic_symlink("b", link)
    assert os.readlink(link) == "b" and link.read_text() == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "link"]


def _files(name: str, days: int = 90, *more: str) -> CertFiles:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in (name, *more)]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    keypem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return CertFiles(pem, pem, pem + pem, keypem)


PARAMS = RenewalParams(Authenticator.STANDALONE, "https://ca.test/directory").to_section()


def test_new_lineage_has_certbots_layout(tmp_path: Path) -> None:
    store = LineageStore(tmp_path)
    lineage = store.create("a.test", _files("a.test"), PARAMS, "0.1.0")
    live, archive = tmp_path / "live" / "a.test", tmp_path / "archive" / "a.test"
    for kind in ("cert", "chain", "fullchain", "privkey"):
        assert os.readlink(live / f"{kind}.pem") == f"../../archive/a.test/{kind}1.pem"
        assert (archive / f"{kind}1.pem").is_file()
    assert stat.S_IMODE((archive / "privkey1.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((archive / "cert1.pem").stat().st_mode) == 0o644
    assert (live / "README").is_file() and (tmp_path / "live" / "README").is_file()
    conf = (tmp_path / "renewal" / "a.test.conf").read_text()
    assert conf.startswith("# renew_before_expiry = 30 days\nversion = 0.1.0\n")
    assert f"cert = {live / 'cert.pem'}\n" in conf
    assert "[renewalparams]\nauthenticator = standalone\n" in conf
    assert lineage.names == ["a.test"] and lineage.current_version() == 1
    assert sorted(p.name for p in tmp_path.joinpath("live").iterdir()) == ["README", "a.test"]


def test_new_version_repoints_every_link(tmp_path: Path) -> None:
    store = LineageStore(tmp_path)
    first = store.create("a.test", _files("a.test"), PARAMS, "0.1.0")
    second_files = _files("a.test")
    second = store.add_version(first, second_files)
    assert second.current_version() == 2
    for kind in ("cert", "chain", "fullchain", "privkey"):
        link = tmp_path / "live" / "a.test" / f"{kind}.pem"
        assert os.readlink(link) == f"../../archive/a.test/{kind}2.pem"
        assert link.read_text() == second_files.text(kind)
    assert (tmp_path / "archive" / "a.test" / "cert1.pem").is_file()  # history kept


def test_repair_after_a_crash_between_link_switches(tmp_path: Path) -> None:
    store = LineageStore(tmp_path)
    lineage = store.create("a.test", _files("a.test"), PARAMS, "0.1.0")
    archive = tmp_path / "archive" / "a.test"
    newer = _files("a.test")
    for kind in ("cert", "chain", "fullchain", "privkey"):
        atomic_write(archive / f"{kind}2.pem", newer.text(kind).encode())
    atomic_symlink("../../archive/a.test/cert2.pem", tmp_path / "live/a.test/cert.pem")
    store.repair(store.load("a.test"))  # the crash left cert at 2, the rest at 1
    assert {store.load("a.test").current_version(k) for k in ("cert", "privkey")} == {2}
    assert lineage.name == "a.test" and next_version(archive) == 3


def test_leftovers_of_a_crashed_creation_are_replaced(tmp_path: Path) -> None:
    store = LineageStore(tmp_path)
    (tmp_path / "archive" / "a.test").mkdir(parents=True)
    (tmp_path / "archive" / "a.test" / "cert1.pem").write_text("half")
    assert not store.exists("a.test") and store.free_name("a.test") == "a.test"
    store.create("a.test", _files("a.test"), PARAMS, "0.1.0")
    assert store.load("a.test").names == ["a.test"]


def test_expand_grows_the_largest_lineage_among_the_names(tmp_path: Path) -> None:
    """certbot's find_duplicative_certs: of the lineages whose names are all requested,
    the one with the most names is the one --expand grows, not the first by name."""
    store = LineageStore(tmp_path)
    store.create("a.test", _files("a.test"), PARAMS, "0.1.0")
    store.create("b.test", _files("b.test", 90, "a.test"), PARAMS, "0.1.0")
    store.create("c.test", _files("c.test"), PARAMS, "0.1.0")
    found = store.find_expandable(["a.test", "b.test", "c.test", "d.test"])
    assert found is not None and found.name == "b.test"
    exact = store.find_expandable(["c.test"])
    assert exact is not None and exact.name == "c.test"
    assert store.find_expandable(["e.test"]) is None


def test_names_conflict_gets_certbots_suffix_and_delete_removes_all(tmp_path: Path) -> None:
    store = LineageStore(tmp_path)
    store.create("a.test", _files("a.test"), PARAMS, "0.1.0")
    assert store.free_name("a.test") == "a.test-0001"
    store.create("a.test-0001", _files("b.test"), PARAMS, "0.1.0")
    assert store.names() == ["a.test", "a.test-0001"]
    found = store.find_by_names(["B.test"])
    assert found is not None and found.name == "a.test-0001"
    store.delete("a.test")
    assert store.names() == ["a.test-0001"]
    assert not (tmp_path / "live" / "a.test").exists()
    assert not (tmp_path / "archive" / "a.test").exists()


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(65537, 2048)],
    ids=["ec", "rsa"],
)
def test_account_store_round_trip(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    server = "https://127.0.0.1:14000/directory"
    store = AccountStore(tmp_path)
    saved = store.save(server, key, "https://ca/acct/1", datetime(2026, 1, 2, tzinfo=UTC))
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert saved.id == account_id(key) == hashlib.md5(pem).hexdigest()
    folder = tmp_path / "accounts" / "127.0.0.1:14000" / "directory" / saved.id
    assert sorted(p.name for p in folder.iterdir()) == [
        "meta.json",
        "private_key.json",
        "regr.json",
    ]
    assert stat.S_IMODE((folder / "private_key.json").stat().st_mode) == 0o400  # certbot's mode
    assert (folder / "regr.json").read_text() == '{"body": {}, "uri": "https://ca/acct/1"}'
    loaded = store.find(server)
    assert loaded is not None and loaded.uri == "https://ca/acct/1"
    assert account_id(loaded.key) == saved.id
    assert private_jwk(key_from_private_jwk(private_jwk(key))) == private_jwk(key)
    store.delete(loaded)
    assert store.find(server) is None


def test_server_path_is_certbots() -> None:
    assert server_path("https://acme-v02.api.letsencrypt.org/directory") == (
        "acme-v02.api.letsencrypt.org/directory"
    )
    assert server_path("https://127.0.0.1:14000/dir") == "127.0.0.1:14000/dir"


def _unswitched(tmp_path: Path) -> tuple[LineageStore, CertFiles]:
    """A lineage at version 1 whose version 2 was written to the archive, by a run
    killed before it moved the first link."""
    store = LineageStore(tmp_path)
    store.create("a.test", _files("a.test", 90), PARAMS, "0.1.0")
    live, archive = tmp_path / "live" / "a.test", tmp_path / "archive" / "a.test"
    for kind in ("cert", "chain", "fullchain", "privkey"):  # the links made an hour ago
        hour_ago = (live / f"{kind}.pem").lstat().st_mtime - 3600
        os.utime(live / f"{kind}.pem", (hour_ago, hour_ago), follow_symlinks=False)
    newer = _files("a.test", 91)
    _write_version(archive, newer, 2)
    return store, newer


def _write_version(archive: Path, files: CertFiles, version: int) -> None:
    """As a renewal writes them: the private key readable by its owner only."""
    for kind in ("cert", "chain", "fullchain", "privkey"):
        mode = 0o600 if kind == "privkey" else 0o644
        atomic_write(archive / f"{kind}{version}.pem", files.text(kind).encode(), mode)


def test_repair_takes_up_a_whole_version_the_links_never_reached(tmp_path: Path) -> None:
    store, newer = _unswitched(tmp_path)
    repaired = store.repair(store.load("a.test"))
    assert {repaired.current_version(k) for k in ("cert", "chain", "fullchain", "privkey")} == {2}
    assert repaired.path("cert").read_text() == newer.cert
    assert (
        repaired.not_after
        == x509.load_pem_x509_certificate(newer.cert.encode()).not_valid_after_utc
    )


@pytest.mark.parametrize("spoiled", ["other key", "links moved since", "other fullchain"])
def test_repair_leaves_a_version_that_does_not_hold_together(tmp_path: Path, spoiled: str) -> None:
    store, newer = _unswitched(tmp_path)
    archive, live = tmp_path / "archive" / "a.test", tmp_path / "live" / "a.test"
    links_made = (live / "cert.pem").lstat().st_mtime
    if spoiled == "other key":
        atomic_write(archive / "privkey2.pem", _files("a.test").privkey.encode(), 0o600)
    elif spoiled == "other fullchain":
        atomic_write(archive / "fullchain2.pem", _files("a.test").fullchain.encode())
    else:  # a person pointed the links back at version 1 after version 2 was written
        later = (archive / "cert2.pem").stat().st_mtime + 60
        for kind in ("cert", "chain", "fullchain", "privkey"):
            os.utime(live / f"{kind}.pem", (later, later), follow_symlinks=False)
    repaired = store.repair(store.load("a.test"))
    assert repaired.current_version() == 1
    assert (archive / "cert2.pem").is_file() and next_version(archive) == 3

    # Made whole (or the links as the crash left them), version 2 is taken up.
    _write_version(archive, newer, 2)
    for kind in ("cert", "chain", "fullchain", "privkey"):
        os.utime(live / f"{kind}.pem", (links_made, links_made), follow_symlinks=False)
    assert store.repair(store.load("a.test")).current_version() == 2


def _issued(
    names: tuple[str, ...], *, valid_from: timedelta = timedelta(0), chain_of_other_ca: bool = False
) -> CertFiles:
    """A certificate for `names` from a CA (its chain that CA's certificate, or another
    CA's), valid from now + `valid_from` for 91 days."""
    now = datetime.now(UTC)
    ca_key, other_key, key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])

    def ca_cert(signer: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(signer.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=900))
            .sign(signer, hashes.SHA256())
        )

    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + valid_from)
        .not_valid_after(now + valid_from + timedelta(days=91))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
    chain = ca_cert(other_key if chain_of_other_ca else ca_key)
    chain_pem = chain.public_bytes(serialization.Encoding.PEM).decode()
    keypem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return CertFiles(pem, chain_pem, pem + chain_pem, keypem)


ADOPTION_REFUSED = {
    "other names": "names are not those of the live certificate",
    "other issuer": "do not agree",
    "not yet valid": "not valid now",
    "version gap": "no complete version 2",
    "open key": "open to group or others",
    "links outside the archive": "not a regular file",
    "rolled back and touched": "issued before the live links were switched",
}


@pytest.mark.parametrize("spoiled", sorted(ADOPTION_REFUSED))
def test_repair_takes_up_only_what_a_killed_renewal_left(
    tmp_path: Path, spoiled: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Anything but the next version, of this lineage's names, issued by its chain's
    first certificate, valid now, its files the archive's own and its key as closed as
    the live one's, stays where it is, and the warning says why."""
    store = LineageStore(tmp_path)
    store.create("a.test", _files("a.test", 90), PARAMS, "0.1.0")
    live, archive = tmp_path / "live" / "a.test", tmp_path / "archive" / "a.test"
    hour_ago = (live / "cert.pem").lstat().st_mtime - 3600
    for kind in ("cert", "chain", "fullchain", "privkey"):
        os.utime(live / f"{kind}.pem", (hour_ago, hour_ago), follow_symlinks=False)
    newer = _issued(
        ("evil.test",) if spoiled == "other names" else ("a.test",),
        valid_from={
            "not yet valid": timedelta(days=30),
            "rolled back and touched": timedelta(hours=-3),
        }.get(spoiled, timedelta(0)),
        chain_of_other_ca=spoiled == "other issuer",
    )
    if spoiled == "links outside the archive":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        _write_version(elsewhere, newer, 2)
        for kind in ("cert", "chain", "fullchain", "privkey"):
            (archive / f"{kind}2.pem").symlink_to(elsewhere / f"{kind}2.pem")
    else:
        _write_version(archive, newer, 9 if spoiled == "version gap" else 2)
    if spoiled == "open key":
        (archive / "privkey2.pem").chmod(0o666)
    repaired = store.repair(store.load("a.test"))
    assert repaired.current_version() == 1
    assert {repaired.current_version(k) for k in ("chain", "fullchain", "privkey")} == {1}
    assert ADOPTION_REFUSED[spoiled] in caplog.text


@pytest.mark.parametrize(
    ("spoiled", "taken_up"),
    [("cert", True), ("cert and full chain", False), ("cert, other names next", False)],
)
def test_a_lineage_whose_certificate_is_unreadable_takes_up_its_renewal(
    tmp_path: Path, spoiled: str, taken_up: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The live certificate spoiled, the names a renewal must have come from what else
    the lineage's archive holds of that version (its full chain's leaf); with nothing
    readable to compare with, or other names, the version stays unused."""
    store, newer = _unswitched(tmp_path)
    archive = tmp_path / "archive" / "a.test"
    if spoiled == "cert, other names next":
        _write_version(archive, _files("b.test", 91), 2)
    atomic_write(archive / "cert1.pem", b"junk\n")
    if spoiled == "cert and full chain":
        atomic_write(archive / "fullchain1.pem", b"junk\n")
    lineage = store.load("a.test")
    assert lineage.certificate is None
    repaired, moved = store.recover(lineage)
    assert moved is taken_up
    assert repaired.current_version() == (2 if taken_up else 1)
    if taken_up:
        assert repaired.path("cert").read_text() == newer.cert
        assert repaired.names == ["a.test"]
    else:
        reason = {
            "cert and full chain": "no certificate of the lineage can be read",
            "cert, other names next": "names are not those of the live certificate",
        }[spoiled]
        assert reason in caplog.text


def test_a_version_is_owed_its_deploy_from_before_its_links_move(tmp_path: Path) -> None:
    """A new lineage and a new version are owed their deploy hooks until `deployed`; a
    version taken up by `recover` too, and the mark is outside certbot's file names."""
    store = LineageStore(tmp_path)
    lineage = store.create("a.test", _files("a.test"), PARAMS, "0.1.0")
    assert store.deploy_owed(lineage)
    store.deployed(lineage)
    assert not store.deploy_owed(lineage)
    second = store.add_version(lineage, _files("a.test"))
    assert store.deploy_owed(second) and next_version(tmp_path / "archive" / "a.test") == 3
    store.deployed(second)
    store.deployed(second)  # twice is harmless

    store, _ = _unswitched(tmp_path / "killed")
    found = store.load("a.test")
    store.deployed(found)  # the creating run deployed version 1
    repaired, moved = store.recover(found)
    assert moved and store.deploy_owed(repaired)


def test_a_marker_that_cannot_be_removed_is_warned_of_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory at the marker's path: `deployed` does not fail the lineage (and the
    run with it) at every run; the version stays owed, deployed once more next time."""
    store = LineageStore(tmp_path)
    lineage = store.create("a.test", _files("a.test"), PARAMS, "0.1.0")
    store.deployed(lineage)
    (lineage.archive_dir / DEPLOY_OWED).mkdir()
    (lineage.archive_dir / DEPLOY_OWED / "x").write_text("")
    store.deployed(lineage)
    assert "cannot be removed" in caplog.text
    assert store.deploy_owed(lineage)
