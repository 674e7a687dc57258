"""The JSON shape of each request payload (RFC 8555 §7.3-§7.6), checked before use.

One small table per message names its fields and their exact JSON types: a boolean is
not an integer (Python's `True == 1` once made `"reason": true` a keyCompromise), a
string is not a number, an object is not an array. A field of the wrong type, or a
required one missing, is `malformed` and names the field. Fields a table does not name
are ignored, as extensions may add them. Values (which status, which reason code) are
the authority's business; this only fixes what kind of thing each one is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from acmekit.protocol.problems import malformed


class Kind(StrEnum):
    """JSON types (RFC 8259 §3), by their JSON names."""

    STRING = "string"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    OBJECT = "object"
    ARRAY = "array"


# Exact Python types json.loads gives for each; `type(v) is` keeps bool out of int.
_PYTHON: dict[Kind, type] = {
    Kind.STRING: str,
    Kind.BOOLEAN: bool,
    Kind.INTEGER: int,
    Kind.OBJECT: dict,
    Kind.ARRAY: list,
}


@dataclass(frozen=True)
class Field:
    kind: Kind
    required: bool = False
    nullable: bool = False  # null stands for "absent" (some clients send it so)
    items: Kind | None = None  # for an array: the kind of every element
    fields: Schema | None = None  # for an object, or an array's objects: their shape


Schema = Mapping[str, Field]

FLATTENED_JWS: Schema = {
    "protected": Field(Kind.STRING, required=True),
    "payload": Field(Kind.STRING, required=True),
    "signature": Field(Kind.STRING, required=True),
}
NEW_ACCOUNT: Schema = {  # §7.3
    "contact": Field(Kind.ARRAY, items=Kind.STRING),
    "termsOfServiceAgreed": Field(Kind.BOOLEAN),
    "onlyReturnExisting": Field(Kind.BOOLEAN),
    "externalAccountBinding": Field(Kind.OBJECT, fields=FLATTENED_JWS),
}
ACCOUNT_UPDATE: Schema = {  # §7.3.2, §7.3.6
    "contact": Field(Kind.ARRAY, items=Kind.STRING),
    "status": Field(Kind.STRING),
    "termsOfServiceAgreed": Field(Kind.BOOLEAN),
}
IDENTIFIER: Schema = {
    "type": Field(Kind.STRING, required=True),
    "value": Field(Kind.STRING, required=True),
}
NEW_ORDER: Schema = {  # §7.4, RFC 9773 §5, draft-aaron-acme-profiles
    "identifiers": Field(Kind.ARRAY, required=True, items=Kind.OBJECT, fields=IDENTIFIER),
    "notBefore": Field(Kind.STRING, nullable=True),
    "notAfter": Field(Kind.STRING, nullable=True),
    "replaces": Field(Kind.STRING),
    "profile": Field(Kind.STRING),
}
FINALIZE: Schema = {"csr": Field(Kind.STRING, required=True)}  # §7.4
AUTHZ_UPDATE: Schema = {"status": Field(Kind.STRING, required=True)}  # §7.5.2
CHALLENGE_RESPONSE: Schema = {}  # §7.5.1: "{}"
REVOKE_CERT: Schema = {  # §7.6
    "certificate": Field(Kind.STRING, required=True),
    "reason": Field(Kind.INTEGER),
}
KEY_CHANGE: Schema = FLATTENED_JWS  # §7.3.5: the outer payload is the inner JWS
KEY_CHANGE_INNER: Schema = {
    "account": Field(Kind.STRING, required=True),
    "oldKey": Field(Kind.OBJECT, required=True),
}


def check(schema: Schema, doc: Any, what: str) -> dict[str, Any]:
    """`doc` if it is an object of `schema`'s shape; malformed naming the field if not.
    `what` names the document in the message ("newOrder payload")."""
    if type(doc) is not dict:
        raise malformed(f"{what} must be a JSON object")
    for name, spec in schema.items():
        if name not in doc or (spec.nullable and doc[name] is None):
            if spec.required:
                raise malformed(f"{what} needs {name!r}")
            continue
        _check_value(spec, doc[name], f"{what}: {name}")
    return doc


def _check_value(spec: Field, value: Any, where: str) -> None:
    if type(value) is not _PYTHON[spec.kind]:
        raise malformed(f"{where} must be a JSON {spec.kind}")
    if spec.kind == Kind.ARRAY and spec.items is not None:
        element = Field(spec.items, fields=spec.fields)
        for i, item in enumerate(cast(list[Any], value)):
            _check_value(element, item, f"{where}[{i}]")
    elif spec.kind == Kind.OBJECT and spec.fields is not None:
        check(spec.fields, value, where)
