"""certbot's certificate layout under a config dir, written so a crash never tears it.

    live/NAME/{cert,chain,fullchain,privkey}.pem   relative symlinks into archive/
    live/NAME/README
    archive/NAME/{cert,chain,fullchain,privkey}N.pem   N = 1, 2, ... (privkey mode 0600)
    renewal/NAME.conf                              configobj text (see renewalconf)

Every file is written to a temporary name, fsynced and renamed over (`atomic_write`);
a symlink is switched by making a new link and renaming it over the old one.

- A new lineage is assembled under hidden names (`archive/.NAME.new`, `live/.NAME.new`),
  each directory renamed into place, and the renewal conf written last: until the conf
  exists the lineage does not exist for anyone, and leftovers of a crashed creation are
  removed the next time that name is created (under the lineage lock).
- A new version writes all four archive files first and only then switches the four
  links. A crash between two switches leaves links at two versions; `repair` (run under
  the lock before any change) points all four at the newest complete version, as
  certbot's own `_fix_symlinks` does. A crash after the archive files and before the
  first switch leaves a whole newer version unused: `repair` adopts it when its files
  agree with each other and were written after the links (the CA has issued it, and
  counts it as the replacement of the one the links still show).
- A version is owed its deploy hooks from before its first link switch until they have
  run: `archive/NAME/.deploy-owed` (certbot reads only `KIND<N>.pem` there) is written
  before the links move, for a new lineage with its archive, and removed by the caller
  once the deploy hooks are done. A run killed in between (before the switch, between
  switches, during a hook) leaves it, and the next run deploys the live version then.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acmekit.certbot import renewalconf
from acmekit.certbot.renewalconf import Section
from acmekit.client.errors import ClientError
from acmekit.files import atomic_symlink, atomic_write, fsync_dir, make_dirs

log = logging.getLogger(__name__)
KINDS = ("cert", "privkey", "chain", "fullchain")
# fullmatch and ASCII digits: `$` also matches before a final newline, and `\d` takes
# any script's digits, which int() reads ("cert\u0663.pem" was version 3)
_VERSIONED = re.compile(r"(cert|privkey|chain|fullchain)([0-9]+)\.pem")
# In a lineage's archive while the version its links show (or are about to) is owed its
# deploy hooks; it holds that version's number.
DEPLOY_OWED = ".deploy-owed"

LIVE_README = """This directory contains your keys and certificates.

`privkey.pem`  : the private key for your certificate.
`fullchain.pem`: the certificate file used in most server software.
`chain.pem`    : used for OCSP stapling in Nginx >=1.3.7.
`cert.pem`     : will break many server configurations, and should not be used
                 without reading further documentation (see link below).

WARNING: DO NOT MOVE OR RENAME THESE FILES!
         Certbot expects these files to remain in this location in order
         to function properly!

We recommend not moving these files. For more information, see the Certbot
User Guide at https://certbot.eff.org/docs/using.html#where-are-my-certificates.
"""

LIVE_TOP_README = (
    LIVE_README.replace("`privkey", "`[cert name]/privkey")
    .replace("`fullchain", "`[cert name]/fullchain")
    .replace("`chain", "`[cert name]/chain")
    .replace("`cert.pem`", "`[cert name]/cert.pem`")
)


# How far a CA may date a certificate's notBefore back from its issuance (Let's Encrypt
# takes an hour), with a few minutes for clocks that differ.
ISSUANCE_BACKDATE = timedelta(minutes=65)


class LineageError(ClientError):
    """A lineage is missing or its files are not what certbot's layout promises."""


# -- what a lineage holds ---------------------------------------------------------------


@dataclass(frozen=True)
class CertFiles:
    """One version's PEM texts."""

    cert: str
    chain: str
    fullchain: str
    privkey: str = field(repr=False)

    def text(self, kind: str) -> str:
        return str(getattr(self, kind))


@dataclass(frozen=True)
class Lineage:
    """A lineage as its renewal conf describes it, with its current certificate."""

    name: str
    conf_path: Path
    conf: Section
    comment: tuple[str, ...]
    certificate: x509.Certificate | None

    def path(self, kind: str) -> Path:
        value = renewalconf.get_str(self.conf, kind)
        if value is None:
            raise LineageError(f"{self.conf_path}: no {kind} path")
        return Path(value)

    @property
    def live_dir(self) -> Path:
        return self.path("cert").parent

    @property
    def archive_dir(self) -> Path:
        value = renewalconf.get_str(self.conf, "archive_dir")
        if value is None:
            raise LineageError(f"{self.conf_path}: no archive_dir")
        return Path(value)

    @property
    def params(self) -> Section:
        return renewalconf.get_section(self.conf, "renewalparams")

    @property
    def names(self) -> list[str]:
        return [] if self.certificate is None else certificate_names(self.certificate)

    @property
    def not_before(self) -> datetime:
        return self._cert().not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self._cert().not_valid_after_utc

    def _cert(self) -> x509.Certificate:
        if self.certificate is None:
            raise LineageError(f"lineage {self.name} has no readable certificate")
        return self.certificate

    def current_version(self, kind: str = "cert") -> int | None:
        try:
            target = os.readlink(self.path(kind))
        except OSError:
            return None
        found = _VERSIONED.fullmatch(os.path.basename(target))
        return int(found.group(2)) if found else None

    def read_privkey(self) -> bytes:
        return self.path("privkey").read_bytes()


def certificate_names(cert: x509.Certificate) -> list[str]:
    """DNS names and IP addresses of the SAN, the common name first when it is one."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    if cns and cns[0] in names:
        names.remove(cns[0])
        names.insert(0, cns[0])
    return names


def key_type_of(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ECDSA"
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    return type(key).__name__


# -- the store -------------------------------------------------------------------------


class LineageStore:
    """Lineages under one config dir; callers hold the lineage's lock when writing."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir.absolute()

    def live_dir(self, name: str) -> Path:
        return self.config_dir / "live" / name

    def archive_dir(self, name: str) -> Path:
        return self.config_dir / "archive" / name

    def conf_path(self, name: str) -> Path:
        return self.config_dir / "renewal" / f"{name}.conf"

    def names(self) -> list[str]:
        renewal = self.config_dir / "renewal"
        if not renewal.is_dir():
            return []
        return sorted(p.name[: -len(".conf")] for p in renewal.glob("*.conf") if p.is_file())

    def exists(self, name: str) -> bool:
        return self.conf_path(name).is_file()

    def taken(self, name: str) -> bool:
        return self.exists(name)

    def free_name(self, base: str) -> str:
        """certbot's rule: BASE, else BASE-0001, BASE-0002, ..."""
        if not self.taken(base):
            return base
        for n in range(1, 10000):
            candidate = f"{base}-{n:04d}"
            if not self.taken(candidate):
                return candidate
        raise LineageError(f"no free lineage name for {base}")

    def load(self, name: str) -> Lineage:
        path = self.conf_path(name)
        try:
            text = path.read_text()
        except OSError as exc:
            raise LineageError(f"no certificate named {name} ({exc.strerror})") from exc
        try:
            conf = renewalconf.parse(text)
        except renewalconf.ConfError as exc:
            raise LineageError(f"{path}: {exc}") from exc
        lineage = Lineage(name, path, conf, renewalconf.initial_comment(text), None)
        return Lineage(name, path, conf, lineage.comment, _read_cert(lineage.path("cert")))

    def load_all(self) -> Iterator[Lineage | LineageError]:
        for name in self.names():
            try:
                yield self.load(name)
            except LineageError as exc:
                yield exc

    def find_by_names(self, names: list[str]) -> Lineage | None:
        """The lineage whose certificate has exactly these names (in any order)."""
        wanted = {n.lower() for n in names}
        for found in self.load_all():
            if isinstance(found, Lineage) and {n.lower() for n in found.names} == wanted:
                return found
        return None

    def find_expandable(self, names: list[str]) -> Lineage | None:
        """The lineage with exactly these names, else the one with the most names that
        are all among them (the first by name of those): the one certbot's --expand grows
        to `names` (its `find_duplicative_certs` keeps the largest subset)."""
        exact = self.find_by_names(names)
        if exact is not None:
            return exact
        wanted = _lower(names)
        among = [
            found
            for found in self.load_all()
            if isinstance(found, Lineage) and found.names and _lower(found.names) <= wanted
        ]
        return max(among, key=lambda found: len(found.names), default=None)

    def create(self, name: str, files: CertFiles, params: Section, version: str) -> Lineage:
        """A new lineage at version 1; invisible until its renewal conf is in place."""
        if self.exists(name):
            raise LineageError(f"lineage {name} already exists")
        archive, live = self.archive_dir(name), self.live_dir(name)
        for leftover in (archive, live):  # a crashed creation of this name
            if leftover.exists() or leftover.is_symlink():
                shutil.rmtree(leftover)
        make_dirs(archive.parent, 0o700)
        make_dirs(live.parent, 0o700)
        make_dirs(self.config_dir / "renewal")
        # certbot makes the hook folders `renew` runs (acmekit.certbot.hooks), so that
        # they are there to drop scripts into.
        for kind in ("pre", "deploy", "post"):
            make_dirs(self.config_dir / "renewal-hooks" / kind)
        top_readme = live.parent / "README"
        if not top_readme.exists():
            atomic_write(top_readme, LIVE_TOP_README.encode())
        self._stage_dir(archive, lambda d: _write_archive(d, files, 1))
        self._stage_dir(live, lambda d: _write_live(d, archive, 1))
        conf = new_conf(version, archive, live, params)
        self.write_conf(name, conf, (_RENEW_COMMENT,))
        return self.load(name)

    def _stage_dir(self, final: Path, fill: Callable[[Path], None]) -> None:
        staging = final.parent / f".{final.name}.new"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(mode=0o755)
        fill(staging)
        fsync_dir(staging)
        os.replace(staging, final)
        fsync_dir(final.parent)

    def add_version(self, lineage: Lineage, files: CertFiles) -> Lineage:
        """Write version N+1 into the archive, then switch the live links to it."""
        lineage = self.repair(lineage)
        version = next_version(lineage.archive_dir)
        _write_archive(lineage.archive_dir, files, version)
        fsync_dir(lineage.archive_dir)
        _switch_links(lineage, version)
        return self.load(lineage.name)

    def repair(self, lineage: Lineage, now: datetime | None = None) -> Lineage:
        """The lineage with its live links where a crash should have left them, reloaded
        if they moved (see `recover`)."""
        return self.recover(lineage, now)[0]

    def recover(self, lineage: Lineage, now: datetime | None = None) -> tuple[Lineage, bool]:
        """`repair`, and whether the links moved: a run killed before it switched (all)
        the links was killed before its deploy hooks too, which the caller owes (and
        finds owed, `deploy_owed`, until it calls `deployed`)."""
        version = self._repaired_version(lineage, now or datetime.now(UTC))
        if version is None:
            return lineage, False
        log.warning("lineage %s: live links repointed at version %d", lineage.name, version)
        _mark_deploy_owed(lineage.archive_dir, version)
        _switch_links(lineage, version)
        return self.load(lineage.name), True

    def deploy_owed(self, lineage: Lineage) -> bool:
        """Whether a run that moved the live links was stopped before its deploy hooks
        were done (the links may have moved or not: a version is owed from before the
        first switch)."""
        return (lineage.archive_dir / DEPLOY_OWED).exists()

    def deployed(self, lineage: Lineage) -> None:
        """The live version's deploy hooks have run: nothing is owed any more. A marker
        that cannot be removed (a directory made read-only, a directory at its path) is
        warned of, not raised: the hooks did run, and failing here would fail this
        lineage, and every other one the run renews, at every run; the cost is that the
        next run deploys it once more."""
        marker = lineage.archive_dir / DEPLOY_OWED
        try:
            marker.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning(
                "lineage %s: %s cannot be removed (%s): the next run deploys it again",
                lineage.name, marker, exc.strerror,
            )  # fmt: skip
            return
        fsync_dir(lineage.archive_dir)

    def _repaired_version(self, lineage: Lineage, now: datetime) -> int | None:
        """The version the four links should point at, None to leave them be.

        Links at different versions (a crash between two switches): the newest complete
        version, preferring one whose files agree (`usable_version`), as certbot's own
        `_fix_symlinks` makes them agree. Links that agree, with the next version beside
        them whole and written after the links were (a run killed after it wrote the
        archive, before it switched the links): that version, which certbot would leave
        unused; the CA has issued it and counts it as the certificate's replacement
        (RFC 9773 §5). Anything less than a version this client could have written
        itself (`_unadoptable`) is left alone, with a warning naming why."""
        versions = {lineage.current_version(k) for k in KINDS}
        complete = complete_versions(lineage.archive_dir)
        if len(versions) != 1 or None in versions:
            if not complete:
                raise LineageError(f"lineage {lineage.name} has no complete version in the archive")
            usable = [v for v in complete if usable_version(lineage.archive_dir, v)]
            return max(usable or complete)
        (current,) = versions
        assert current is not None
        if not any(v > current for v in complete):
            return None
        try:
            why = _unadoptable(lineage, current, complete, now)
        except OSError as exc:  # a file gone or unreadable under us
            why = f"{exc.filename}: {exc.strerror}"
        if why is not None:
            log.warning("lineage %s: version %d left unused: %s", lineage.name, current + 1, why)
            return None
        return current + 1

    def update_symlinks(self, lineage: Lineage) -> None:
        """certbot's `update_symlinks`: point each live link (at the path its renewal conf
        gives) at the same file name in the conf's archive_dir, for a conf edited by hand
        or an archive moved. A missing link takes the newest complete version."""
        complete = complete_versions(lineage.archive_dir)
        for kind in KINDS:
            link = lineage.path(kind)
            try:
                file_name = os.path.basename(os.readlink(link))
            except OSError:
                if not complete:
                    raise LineageError(
                        f"lineage {lineage.name}: {link} is no link and "
                        f"{lineage.archive_dir} has no complete version"
                    ) from None
                file_name = f"{kind}{max(complete)}.pem"
            target = lineage.archive_dir / file_name
            if not target.is_file():
                raise LineageError(f"lineage {lineage.name}: {target} does not exist")
            atomic_symlink(os.path.relpath(target, link.parent), link)

    def write_conf(self, name: str, conf: Section, comment: tuple[str, ...]) -> None:
        path = self.conf_path(name)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        atomic_write(path, renewalconf.render(conf, comment).encode(), mode)

    def delete(self, name: str) -> None:
        """Remove conf first (the lineage disappears at once), then links and archive."""
        lineage = self.load(name)
        lineage.conf_path.unlink()
        for directory in (lineage.live_dir, lineage.archive_dir):
            if directory.exists():
                shutil.rmtree(directory)


_RENEW_COMMENT = "renew_before_expiry = 30 days"


def new_conf(version: str, archive: Path, live: Path, params: Section) -> Section:
    conf: Section = {"version": version, "archive_dir": str(archive)}
    for kind in KINDS:
        conf[kind] = str(live / f"{kind}.pem")
    conf["renewalparams"] = params
    return conf


def _write_archive(directory: Path, files: CertFiles, version: int) -> None:
    """The version's four files, then the mark that it is owed its deploy hooks."""
    for kind in KINDS:
        mode = 0o600 if kind == "privkey" else 0o644
        atomic_write(directory / f"{kind}{version}.pem", files.text(kind).encode(), mode)
    _mark_deploy_owed(directory, version)


def _mark_deploy_owed(archive: Path, version: int) -> None:
    """Before the first link switch: a run killed from here on owes its deploy hooks."""
    atomic_write(archive / DEPLOY_OWED, f"{version}\n".encode(), 0o644)


def _switch_links(lineage: Lineage, version: int) -> None:
    for kind in KINDS:
        link = lineage.path(kind)
        target = lineage.archive_dir / f"{kind}{version}.pem"
        atomic_symlink(os.path.relpath(target, link.parent), link)


def _write_live(directory: Path, archive: Path, version: int) -> None:
    final_live = directory.parent / directory.name.removeprefix(".").removesuffix(".new")
    for kind in KINDS:
        target = os.path.relpath(archive / f"{kind}{version}.pem", final_live)
        os.symlink(target, directory / f"{kind}.pem")
    atomic_write(directory / "README", LIVE_README.encode())


def archive_versions(archive: Path) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for entry in archive.iterdir() if archive.is_dir() else ():
        match = _VERSIONED.fullmatch(entry.name)
        if match:
            found.setdefault(int(match.group(2)), set()).add(match.group(1))
    return found


def complete_versions(archive: Path) -> list[int]:
    return sorted(v for v, kinds in archive_versions(archive).items() if kinds == set(KINDS))


def usable_version(archive: Path, version: int) -> tuple[x509.Certificate, float] | None:
    """A version's certificate and when its files were written, if its four files agree:
    each readable, the private key the certificate's, the full chain the certificate
    followed by the chain, the certificate signed by the chain's first. None for any
    other set."""
    try:
        texts = {k: (archive / f"{k}{version}.pem").read_bytes() for k in KINDS}
        written = max((archive / f"{k}{version}.pem").stat().st_mtime for k in KINDS)
        cert = x509.load_pem_x509_certificate(texts["cert"])
        chain = x509.load_pem_x509_certificates(texts["chain"])
        fullchain = x509.load_pem_x509_certificates(texts["fullchain"])
        key = serialization.load_pem_private_key(texts["privkey"], None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm):  # TypeError: encrypted
        return None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        return None
    if fullchain != [cert, *chain] or not _issued_by_first(cert, chain):
        return None
    return cert, written


def _issued_by_first(cert: x509.Certificate, chain: list[x509.Certificate]) -> bool:
    """The certificate's signature verifies with its chain's first certificate, as a
    server (and certbot, which skips a lineage where it does not) expects."""
    try:
        cert.verify_directly_issued_by(chain[0])
    except (IndexError, ValueError, TypeError, InvalidSignature):
        return False
    return True


def _unadoptable(lineage: Lineage, current: int, complete: list[int], now: datetime) -> str | None:
    """Why version `current + 1` is not one a killed run of this client left behind,
    None when it is: only such a version may go live unasked. `complete`: the archive's
    complete versions, as the caller listed them."""
    version, archive = current + 1, lineage.archive_dir
    if version not in complete:
        return f"no complete version {version} (the links are at {current})"
    why = _foreign_files(archive, version, lineage)
    if why is not None:
        return why
    files = usable_version(archive, version)
    if files is None:
        return "its files do not agree with each other"
    cert, written = files
    try:
        links_made = lineage.path("cert").lstat().st_mtime
    except OSError:
        return "the live links cannot be read"
    if written < links_made:
        return "it was written before the live links were switched (a rollback)"
    # A file's time is anyone's to change (`touch`); the signed notBefore is not: a
    # version a person rolled back from was issued before the links moved back to the
    # older one, a killed renewal's after the links last moved.
    if cert.not_valid_before_utc + ISSUANCE_BACKDATE < datetime.fromtimestamp(links_made, UTC):
        return "it was issued before the live links were switched (a rollback)"
    return _not_a_renewal(_reference(lineage, current), cert, now)


def _foreign_files(archive: Path, version: int, lineage: Lineage) -> str | None:
    """Files this client did not write: links, another owner's, a key more open."""
    owner = archive.stat().st_uid
    for kind in KINDS:
        found = (archive / f"{kind}{version}.pem").lstat()
        if not stat.S_ISREG(found.st_mode):
            return f"{kind}{version}.pem is not a regular file"
        if found.st_uid != owner:
            return f"{kind}{version}.pem is not owned by the archive's owner"
    key_mode = (archive / f"privkey{version}.pem").lstat().st_mode & 0o077
    try:
        allowed = lineage.path("privkey").stat().st_mode & 0o077
    except OSError:
        allowed = 0
    if key_mode & ~allowed:
        return f"privkey{version}.pem is open to group or others (mode {key_mode:03o})"
    return None


def _reference(lineage: Lineage, current: int) -> x509.Certificate | None:
    """The certificate a new version must renew: the live one; when that cannot be read
    (a disk error, a file spoiled by hand), the same leaf as the live version's full
    chain holds it, else the newest earlier version's that reads. Only the lineage's own
    archive speaks for its names: certbot's renewal conf does not record them."""
    if lineage.certificate is not None:
        return lineage.certificate
    archive = lineage.archive_dir
    candidates = [archive / f"fullchain{current}.pem"]
    for version in range(current - 1, 0, -1):
        candidates += [archive / f"cert{version}.pem", archive / f"fullchain{version}.pem"]
    for path in candidates:
        found = _read_cert(path)  # a full chain's first certificate is its leaf
        if found is not None:
            log.warning(
                "lineage %s: live certificate unreadable; names from %s", lineage.name, path
            )
            return found
    return None


def _not_a_renewal(
    current: x509.Certificate | None, cert: x509.Certificate, now: datetime
) -> str | None:
    """Why the certificate is no renewal of `current`: the same names, valid now and
    outliving it, else None (its issuer is checked in `usable_version`)."""
    if current is None:
        return "no certificate of the lineage can be read to compare its names with"
    wanted = _lower(certificate_names(current))
    if not wanted or _lower(certificate_names(cert)) != wanted:
        return "its names are not those of the live certificate"
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        return "it is not valid now"
    if cert.not_valid_after_utc <= current.not_valid_after_utc:
        return "it expires no later than the live certificate"
    return None


def next_version(archive: Path) -> int:
    """certbot's next free version: one more than any version of any kind present."""
    return max(archive_versions(archive), default=0) + 1


def _read_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _lower(names: list[str]) -> set[str]:
    return {n.lower() for n in names}
