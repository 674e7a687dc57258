"""dns-persist-01 (draft-ietf-acme-dns-persist-02): a standing TXT record that names the CA
and the account.

The record sits at `_validation-persist.NAME` (§4; a wildcard at its base name) and its
value is an RFC 8659 §4.2 issue-value (§4.1):

    authority.example; accounturi=https://ca.example/account-hash/sha-256/<digest>;
        policy=wildcard; persistUntil=1767225600

- the issuer-domain-name must be one of the CA's `issuerDomainNames` (§3.1, §4.1 item 2);
- `accounturi` is mandatory and, since -02, a hashed URI (§4.1 item 3):
  `<accountHashPrefix>sha-256/<base64url SHA-256(len(domain) || domain || thumbprint ||
  account URL)>`, where domain is the FQDN of the record or `*` (valid for any domain);
- `policy=wildcard` (case-insensitive, §4.1 item 4) extends the record to wildcards and
  subdomains (§5); any other value means no policy;
- `persistUntil` is a base-10 UNIX time after which the record no longer validates
  (§4.1 item 5); a value that is not one is malformed;
- unknown parameters are ignored (§4.1 item 1); a duplicate parameter is malformed (§9.3.1).

Several records may stand at one name, one per CA or several for one CA (§4.3): `evaluate`
looks for one that meets every requirement and otherwise says, for the records that name
this CA, why each failed (§9.3.1: `malformed` for syntax, `unauthorized` for another
account, an expired persistUntil, or a missing wildcard policy); records that name other
CAs are ignored, and a record that does not parse is skipped.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

DNS_PERSIST_01 = "dns-persist-01"
VALIDATION_LABEL = "_validation-persist"
HASH_ALG = "sha-256"  # RFC 6920 §9.4's Hash Name String, the one every CA must accept
MAX_ISSUER_DOMAIN_NAMES = 10  # §3.1
MAX_DOMAIN_OCTETS = 253  # §3.1
# A TXT value longer than this is not a validation record: a hashed accounturi under a
# reasonable prefix is about 100 octets, so 1024 leaves room for many parameters while a
# 64 KiB value (one TXT RDATA may be that long) is refused before it is parsed.
MAX_RECORD_OCTETS = 1024
_DIGEST_CHARS = 43  # unpadded base64url of 32 octets

# RFC 8659 §4.2: label = (ALPHA / DIGIT) *( *("-") (ALPHA / DIGIT) ); tag the same;
# value = *(%x21-3A / %x3C-7E); WSP = SP / HTAB.
_LABEL = r"[A-Za-z0-9](?:-*[A-Za-z0-9])*"
_ISSUER = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_TAG = re.compile(_LABEL)
_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]*")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
# §3.1: an issuer domain name the CA offers is lowercase, in A-labels, without a trailing
# dot: LDH labels of 1 to 63 octets (RFC 1035 §2.3.1, RFC 5890 §2.3.1), 253 octets at most.
_LDH_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ISSUER_DOMAIN_NAME = re.compile(rf"{_LDH_LABEL}(?:\.{_LDH_LABEL})*")


class MalformedRecord(ValueError):
    """A TXT value that is not a well-formed dns-persist-01 record (§4.1, §9.3.1)."""


def normalize_domain(name: str) -> str:
    """§9.2: case-fold, NFC, A-labels, no trailing dot."""
    folded = unicodedata.normalize("NFC", name.casefold()).rstrip(".")
    if folded.isascii():
        return folded
    return ".".join(
        label.encode("idna").decode() if not label.isascii() else label
        for label in folded.split(".")
    )


def is_issuer_domain_name(name: object) -> bool:
    """§3.1: True for a string that may stand as a record's issuer-domain-name as it is.

    The client puts the CA's names into the record it publishes: anything else (a `;`
    that would start a parameter of the CA's choosing, spaces, control characters,
    upper case, a trailing dot, an over-long label) is refused, not repaired."""
    return (
        isinstance(name, str)
        and len(name) <= MAX_DOMAIN_OCTETS
        and _ISSUER_DOMAIN_NAME.fullmatch(name) is not None
    )


def check_issuer_domain_names(names: Sequence[object]) -> tuple[str, ...]:
    """§3.1: 1 to 10 issuer domain names, each one as `is_issuer_domain_name` says;
    ValueError (naming the first bad one, shown safely) otherwise."""
    if not 1 <= len(names) <= MAX_ISSUER_DOMAIN_NAMES:
        raise ValueError(
            f"the CA offers {len(names)} issuer domain names (1 to {MAX_ISSUER_DOMAIN_NAMES})"
        )
    for name in names:
        if not is_issuer_domain_name(name):
            shown = repr(name[:64] if isinstance(name, str) else name)
            raise ValueError(
                f"the CA's issuer domain name {shown} is not a lowercase DNS name without "
                f"a trailing dot (draft-ietf-acme-dns-persist-02 §3.1)"
            )
    return tuple(str(n) for n in names)


def record_name(name: str) -> str:
    """§4: the Validation Domain Name for `name` (a wildcard's base name, RFC 8555 §7.1.3)."""
    return f"{VALIDATION_LABEL}.{normalize_domain(name.removeprefix('*.'))}"


def account_hash(account_url: str, thumbprint: str, domain: str = "*") -> str:
    """§4.1 item 3: base64url(SHA-256(len(domain) || domain || thumbprint || account URL)).

    `thumbprint` is the 43-character base64url SHA-256 JWK thumbprint (RFC 7638), as in a
    key authorization; `domain` is the record's FQDN or `*` for a record valid anywhere.
    """
    dom = domain if domain == "*" else normalize_domain(domain)
    raw = dom.encode("ascii")
    if len(raw) > 255:
        raise ValueError("a domain name is at most 255 octets")
    digest = hashlib.sha256(bytes([len(raw)]) + raw + thumbprint.encode() + account_url.encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def hashed_account_uri(prefix: str, account_url: str, thumbprint: str, domain: str = "*") -> str:
    """The `accounturi` value: `<accountHashPrefix>sha-256/<hash>` (§4.1 item 3)."""
    return f"{prefix}{HASH_ALG}/{account_hash(account_url, thumbprint, domain)}"


class Policy(StrEnum):
    WILDCARD = "wildcard"


@dataclass(frozen=True)
class PersistRecord:
    """One parsed record. `parameters` keeps every tag=value, known or not, in order."""

    issuer: str
    account_uri: str
    wildcard: bool = False
    persist_until: int | None = None
    parameters: tuple[tuple[str, str], ...] = ()

    def render(self) -> str:
        """The TXT value, in the draft's own spacing (§4.1 Figure 2)."""
        return render_record(self.issuer, self.account_uri, self.wildcard, self.persist_until)


def render_record(
    issuer: str, account_uri: str, wildcard: bool = False, persist_until: int | None = None
) -> str:
    parts = [normalize_domain(issuer), f"accounturi={account_uri}"]
    if wildcard:
        parts.append(f"policy={Policy.WILDCARD}")
    if persist_until is not None:
        parts.append(f"persistUntil={int(persist_until)}")
    return "; ".join(parts)


def txt_strings(value: str) -> tuple[str, ...]:
    """RFC 1035 §3.3.14 (draft §9.1): a value longer than 255 octets is published as
    several character-strings, which a resolver hands back concatenated."""
    raw = value.encode()
    return tuple(raw[i : i + 255].decode() for i in range(0, len(raw), 255)) or ("",)


def parse_record(value: str) -> PersistRecord:
    """Parse one TXT value (its strings already concatenated); raise MalformedRecord."""
    if len(value.encode("utf-8", "surrogatepass")) > MAX_RECORD_OCTETS:
        raise MalformedRecord(f"record longer than {MAX_RECORD_OCTETS} octets")
    if not value.isascii() or any(not c.isprintable() and c != "\t" for c in value):
        raise MalformedRecord("record holds control or non-ASCII characters")
    head, semi, rest = value.partition(";")
    issuer = head.strip(" \t")
    if not issuer:
        raise MalformedRecord("no issuer-domain-name")
    if not _ISSUER.fullmatch(issuer) or len(issuer) > MAX_DOMAIN_OCTETS:
        raise MalformedRecord(f"issuer-domain-name {issuer[:64]!r} is not a domain name")
    params: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in rest.split(";") if semi else ():
        item = raw.strip(" \t")
        if not item:
            continue  # RFC 8659 allows `issuer;` and spacing around `;`
        tag, eq, val = item.partition("=")
        tag, val = tag.strip(" \t"), val.strip(" \t")
        if not eq or not _TAG.fullmatch(tag) or not _VALUE.fullmatch(val):
            raise MalformedRecord(f"parameter {item[:64]!r} is not tag=value")
        key = tag.lower()
        if key in seen:
            raise MalformedRecord(f"parameter {tag!r} appears twice")
        seen.add(key)
        params.append((tag, val))
    known = {t.lower(): v for t, v in params}
    account_uri = known.get("accounturi")
    if not account_uri:
        raise MalformedRecord("no accounturi parameter")
    until: int | None = None
    if "persistuntil" in known:
        text = known["persistuntil"]
        if not text.isdigit() or len(text) > 19:
            raise MalformedRecord(f"persistUntil {text[:32]!r} is not a base-10 UNIX time")
        until = int(text)
    wildcard = known.get("policy", "").lower() == Policy.WILDCARD
    return PersistRecord(
        issuer=issuer.lower(),
        account_uri=account_uri,
        wildcard=wildcard,
        persist_until=until,
        parameters=tuple(params),
    )


def check_account_uri_form(account_uri: str, prefix: str) -> None:
    """§9.3.1: a hashed URI under the CA's prefix, with an accepted algorithm and a
    digest of the right length; else MalformedRecord."""
    if not account_uri.startswith(prefix):
        raise MalformedRecord(f"accounturi is not under this CA's accountHashPrefix {prefix}")
    alg, slash, digest = account_uri[len(prefix) :].partition("/")
    if not slash or alg != HASH_ALG:
        raise MalformedRecord(f"accounturi hash algorithm {alg[:32]!r} is not {HASH_ALG}")
    if len(digest) != _DIGEST_CHARS or not _B64URL.fullmatch(digest):
        raise MalformedRecord("accounturi hash is not 43 characters of base64url")


class Failure(StrEnum):
    """Why a record that names this CA did not validate (§9.3.1)."""

    MALFORMED = "malformed"
    OTHER_ACCOUNT = "another account"
    EXPIRED = "persistUntil passed"
    NO_WILDCARD = "no policy=wildcard"


@dataclass(frozen=True)
class Verdict:
    """`record` is the one that validates, or None; then `failures` say why each record
    naming this CA failed, `other_issuers` which CAs the other records name, `skipped` how
    many did not parse."""

    record: PersistRecord | None
    failures: tuple[tuple[Failure, str], ...] = ()
    other_issuers: tuple[str, ...] = ()
    skipped: int = 0

    @property
    def malformed_only(self) -> bool:
        return bool(self.failures) and all(f == Failure.MALFORMED for f, _ in self.failures)

    def explain(self, name: str) -> str:
        """One sentence for a problem's detail."""
        if self.failures:
            reasons = "; ".join(f"{kind}: {why}" for kind, why in self.failures[:3])
            more = f" (and {len(self.failures) - 3} more)" if len(self.failures) > 3 else ""
            return f"no record at {name} validates for this account: {reasons}{more}"
        if self.other_issuers:
            named = ", ".join(sorted(set(self.other_issuers))[:3])
            return f"the records at {name} name another CA ({named}), not this one"
        if self.skipped:
            return f"no well-formed dns-persist-01 record at {name} ({self.skipped} skipped)"
        return f"No TXT record found at {name}"


def evaluate(
    values: Iterable[str],
    *,
    issuer_domain_names: Sequence[str],
    account_uris: Sequence[str],
    account_hash_prefix: str,
    now: int,
    wildcard: bool,
) -> Verdict:
    """§4.2 and §4.3.2: the first record that names one of `issuer_domain_names`, carries
    one of the `account_uris` this account is known by, has not passed its persistUntil and,
    for a wildcard, has policy=wildcard. `now` is a UNIX time."""
    issuers = {normalize_domain(i) for i in issuer_domain_names}
    accepted = set(account_uris)
    failures: list[tuple[Failure, str]] = []
    others: list[str] = []
    skipped = 0
    for value in values:
        try:
            rec = parse_record(value)
        except MalformedRecord as exc:
            # A record that names this CA but does not parse is worth reporting; one
            # whose issuer cannot even be read is skipped (§4.3.2 filters on issuer).
            issuer = value[:MAX_DOMAIN_OCTETS].partition(";")[0].strip(" \t").lower()
            if issuer in issuers:
                failures.append((Failure.MALFORMED, str(exc)))
            else:
                skipped += 1
            continue
        if rec.issuer not in issuers:
            others.append(rec.issuer)
            continue
        try:
            check_account_uri_form(rec.account_uri, account_hash_prefix)
        except MalformedRecord as exc:
            failures.append((Failure.MALFORMED, str(exc)))
            continue
        if rec.account_uri not in accepted:  # RFC 3986 §6.2.1 simple string comparison
            failures.append((Failure.OTHER_ACCOUNT, "accounturi names another account"))
            continue
        if rec.persist_until is not None and now > rec.persist_until:
            failures.append((Failure.EXPIRED, f"persistUntil={rec.persist_until} has passed"))
            continue
        if wildcard and not rec.wildcard:
            failures.append((Failure.NO_WILDCARD, "a wildcard needs policy=wildcard"))
            continue
        return Verdict(rec)
    return Verdict(None, tuple(failures), tuple(others), skipped)


__all__ = [
    "DNS_PERSIST_01",
    "HASH_ALG",
    "MAX_ISSUER_DOMAIN_NAMES",
    "MAX_RECORD_OCTETS",
    "VALIDATION_LABEL",
    "Failure",
    "MalformedRecord",
    "PersistRecord",
    "Policy",
    "Verdict",
    "account_hash",
    "check_account_uri_form",
    "check_issuer_domain_names",
    "evaluate",
    "hashed_account_uri",
    "is_issuer_domain_name",
    "normalize_domain",
    "parse_record",
    "record_name",
    "render_record",
    "txt_strings",
]
