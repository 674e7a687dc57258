"""The label rules of a DNS name beyond its syntax, shared by the CA, the fleet and the
command line: IDNA 2008 A-labels (RFC 5891), labels in the reserved `??--` form (RFC 5890
§2.3.1), and the checks of a DNS name an operator gives (a config value, a flag)."""

from __future__ import annotations

import idna

from acmekit.protocol.messages import parse_dns_name
from acmekit.protocol.problems import AcmeError


def bad_alabel(name: str) -> str | None:
    """The first `xn--` label of `name` that is not a valid IDNA 2008 A-label, if any."""
    for label in name.lower().split("."):
        if not label.startswith("xn--"):
            continue
        try:
            if idna.alabel(idna.ulabel(label)).decode("ascii") != label:
                return label
        except (idna.IDNAError, UnicodeError):
            return label
    return None


def reserved_ldh_label(name: str) -> str | None:
    """The first label of `name` in the reserved `??--` form that is no A-label, if any."""
    for label in name.lower().split("."):
        if label[2:4] == "--" and not label.startswith("xn--"):
            return label
    return None


def operator_name(
    where: str, value: str, *, single_label: bool = False, wildcard: bool = False
) -> str:
    """A DNS name an operator gives (a config value, a flag), lower-cased after the
    checks a dns identifier gets (`parse_dns_name`, and the A-label rules of
    `server.names.NamePolicy`), one absolute name's final dot dropped; ValueError in one
    line naming `where` and the value otherwise. Lower-cased unchecked, a name with the
    Kelvin sign (U+212A) stood for another ("k"), and a U-label or a broken `xn--` label
    for none the CA would ever see (RFC 5890 §2.3.2.1: an IDN is written in A-labels).
    `single_label`: a name of one label too (`test`, a CAA identity `acmekit`);
    `wildcard`: a leading `*.` too."""
    if not value.isascii():
        raise ValueError(f"{where}: {value!r} is not ASCII (write an IDN in its xn-- form)")
    name = value.removesuffix(".")
    if name.startswith("*") and not wildcard:
        raise ValueError(f"{where}: {value!r}: a wildcard is not allowed here")
    try:
        name = parse_dns_name(name, 1 if single_label else 2)
    except AcmeError as exc:
        raise ValueError(f"{where}: {exc.problem.detail}") from None
    label = bad_alabel(name)
    if label is not None:
        raise ValueError(f"{where}: {value!r}: label {label!r} is not a valid IDNA 2008 A-label")
    label = reserved_ldh_label(name)
    if label is not None:
        raise ValueError(
            f"{where}: {value!r}: label {label!r} is in a reserved form (RFC 5891 §4.2.3.1)"
        )
    return name
