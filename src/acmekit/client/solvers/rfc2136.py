"""A DnsProvider that sends RFC 2136 dynamic UPDATEs signed with TSIG (RFC 8945).

For each record the zone is found by asking the server for SOA records, walking up the
labels of the name until an authoritative answer (AA set) holds an SOA for that name,
unless a zone was given. Then one UPDATE message adds (RFC 2136 §2.5.1) or deletes that
one value (§2.5.4, so a name and its wildcard keep each other's values), sent over TCP
and signed with the key; the server's response must be NOERROR and correctly signed
(dnspython checks the TSIG of the response), else DnsUpdateError.

`from_certbot_ini` reads certbot-dns-rfc2136's credentials file:

    dns_rfc2136_server = 192.0.2.1          (an IP address; certbot allows no host name)
    dns_rfc2136_port = 53                   (optional, default 53)
    dns_rfc2136_name = keyname.
    dns_rfc2136_secret = 4q4wM/2I180UXoMyN4INVhJNi8V9BCV+jMw2mXgZw/CSuxUT8C7NKKFs...
    dns_rfc2136_algorithm = HMAC-SHA512     (optional, default HMAC-MD5 as in certbot)
    dns_rfc2136_sign_query = false          (optional: sign the SOA queries too)

Like certbot, a file that group or others may access is read with a warning.
"""

from __future__ import annotations

import configparser
import ipaddress
import logging
from pathlib import Path

import dns.asyncquery
import dns.entropy
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update

from acmekit.client.errors import ClientError
from acmekit.client.solvers.dnslookup import TIMEOUT, absolute, find_zone
from acmekit.client.solvers.errors import DnsUpdateError, SolverError
from acmekit.dnsbackend import CLOSING_BACKEND
from acmekit.tsig import make_key

log = logging.getLogger(__name__)

CERTBOT_DEFAULT_ALGORITHM = "hmac-md5"
TTL = 60
_PREFIX = "dns_rfc2136_"
_REQUIRED = {
    "server": "IP address of the DNS server",
    "name": "TSIG key name",
    "secret": "TSIG key secret",
}


class CredentialsError(ClientError, ValueError):
    """A credentials file or key that cannot be used; the message says what to fix."""


def tsig_key(key_name: str, secret_b64: str, algorithm: str) -> dns.tsig.Key:
    try:
        return make_key(key_name, secret_b64, algorithm)
    except ValueError as exc:
        raise CredentialsError(str(exc)) from None


def read_certbot_ini(path: Path) -> dict[str, str]:
    """The `dns_rfc2136_*` settings of a certbot credentials file, prefix removed."""
    mode = path.stat().st_mode
    if mode & 0o077:
        log.warning("Unsafe permissions on credentials configuration file: %s", path)
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    try:
        parser.read_string("[certbot]\n" + path.read_text())
    except configparser.Error as exc:
        raise CredentialsError(f"cannot parse credentials file {path}: {exc}") from None
    return {
        key.removeprefix(_PREFIX): value.strip().strip("'\"")
        for key, value in parser["certbot"].items()
        if key.startswith(_PREFIX)
    }


def _require(settings: dict[str, str], path: Path) -> None:
    missing = [k for k in _REQUIRED if not settings.get(k)]
    if missing:
        lines = "".join(f"\n * {_PREFIX}{k} ({_REQUIRED[k]})" for k in missing)
        raise CredentialsError(f"missing in credentials file {path}:{lines}")
    try:
        ipaddress.ip_address(settings["server"])
    except ValueError:
        raise CredentialsError(
            f"{_PREFIX}server {settings['server']!r} in {path} is not an IP address"
        ) from None


def _flag(value: str, what: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0", ""):
        return False
    raise CredentialsError(f"{what} must be true or false, not {value!r}")


class Rfc2136DnsProvider:
    def __init__(
        self,
        server: str,
        port: int,
        key_name: str,
        secret_b64: str,
        algorithm: str = "hmac-sha256",
        zone: str | None = None,
        *,
        sign_query: bool = False,
    ) -> None:
        self.server = server
        self.port = port
        self.key = tsig_key(key_name, secret_b64, algorithm)
        self.zone = absolute(zone) if zone else None
        self.sign_query = sign_query
        self._zones: dict[str, str] = {}

    @classmethod
    def from_certbot_ini(cls, path: Path) -> Rfc2136DnsProvider:
        settings = read_certbot_ini(path)
        _require(settings, path)
        try:
            port = int(settings.get("port") or 53)
        except ValueError:
            raise CredentialsError(f"{_PREFIX}port in {path} is not a number") from None
        return cls(
            settings["server"],
            port,
            settings["name"],
            settings["secret"],
            settings.get("algorithm") or CERTBOT_DEFAULT_ALGORITHM,
            sign_query=_flag(settings.get("sign_query", ""), f"{_PREFIX}sign_query"),
        )

    async def zone_for(self, fqdn: str) -> str:
        """The zone to update for `fqdn`: the given one, or the server's closest SOA."""
        if self.zone is not None:
            return self.zone
        name = absolute(fqdn)
        if name not in self._zones:
            try:
                self._zones[name] = await find_zone(
                    (self.server, self.port),
                    name,
                    tcp=True,
                    keyring=self.key if self.sign_query else None,
                    authoritative=True,
                )
            except (OSError, dns.exception.DNSException, SolverError) as exc:
                raise DnsUpdateError(f"cannot find the zone of {name}: {exc}") from exc
        return self._zones[name]

    async def add_txt(self, fqdn: str, value: str) -> None:
        await self._update(fqdn, value, add=True)

    async def remove_txt(self, fqdn: str, value: str) -> None:
        await self._update(fqdn, value, add=False)

    async def _update(self, fqdn: str, value: str, *, add: bool) -> None:
        zone = await self.zone_for(fqdn)
        update = dns.update.UpdateMessage(zone, keyring=self.key)
        rdata = dns.rdtypes.ANY.TXT.TXT(
            dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode("ascii")]
        )
        if add:
            update.add(absolute(fqdn), TTL, rdata)
        else:
            update.delete(absolute(fqdn), rdata)
        what = f"UPDATE {'add' if add else 'delete'} TXT at {absolute(fqdn)} in {zone}"
        try:
            response = await self._send(update)
        except (OSError, dns.exception.DNSException) as exc:
            raise DnsUpdateError(f"{what} to {self.server}:{self.port} failed: {exc}") from exc
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            raise DnsUpdateError(
                f"{what}: {self.server}:{self.port} answered {dns.rcode.to_text(rcode)}"
            )
        log.info("%s done", what)

    async def _send(self, update: dns.update.UpdateMessage) -> dns.message.Message:
        """Send `update`; once more, signed anew, if the server answers BADTIME. A server
        that refuses a Time Signed earlier than the key's last (RFC 8945 §5.2.3 allows
        it; `acmekit dns` refuses only the same request again) refuses one of two
        UPDATEs sent at once with one key when the later-signed arrives first."""
        try:
            return await self._tcp(update)
        except dns.tsig.PeerBadTime:
            log.info("UPDATE answered BADTIME; signing it again")
            update.id = dns.entropy.random_16()  # not the same MAC again in the same second
            return await self._tcp(update)

    async def _tcp(self, update: dns.update.UpdateMessage) -> dns.message.Message:
        return await dns.asyncquery.tcp(
            update, self.server, port=self.port, timeout=TIMEOUT, backend=CLOSING_BACKEND
        )
