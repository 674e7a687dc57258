"""Lint before signing (Baseline Requirements §4.3.1.2), the way Boulder does it.

How it works:

- The CA builds the to-be-signed certificate once (a `CertificateBuilder`) and signs it
  first with a throwaway key of the same type as the issuing key (`LintKeys`: one per
  key type for the process's life, so the signature algorithm, and with it the whole
  TBSCertificate, comes out the same). Issuer name and AKI come from the builder, not
  the key, so the throwaway copy differs from the final certificate only in its
  signature.
- That copy's DER goes through pkilint's CA/Browser Forum TLS linter (DigiCert's
  pkilint: RFC 5280 and the TLS Baseline Requirements, including the SC-081 schedule
  of maximum validity periods). Any ERROR or FATAL finding refuses issuance with a
  `serverInternal` problem naming the lint, and is logged; a WARNING finding is logged
  the first time its code is seen, at debug after that (`log_warnings`).
  The real key is never used on a certificate that failed.
- After the real signature, the final TBSCertificate must equal the linted one byte for
  byte; if not, the certificate is dropped (Boulder's correspondence check), so what is
  issued is exactly what was linted.
- pkilint's validator tree takes ~0.15 s of CPU to build and ~4 ms to run, so it is
  built once per process and reused (docs/decisions.md, "Lint before signing").
  Each of its containers offers every node to every validator it holds; ours remember,
  per (node path, node type), which validators can match at all (`_index`), so a
  node is offered only to those: the same validators run on the same nodes, at
  about half the CPU. Of a validator's `match` only what the index has not proved is
  asked (`_asking`: a predicate, a supertype, an extension's OID; a GeneralName type
  predicate not at all where the path rules it out), and pkilint's `validate_wrapper`
  is reproduced inline, less the empty results it makes for every validator that
  found nothing; each shortcut leans on pkilint code pinned by the SHA-256 of its
  source (`_PINNED`), and is off, pkilint's own code running, with any other source
  (docs/decisions.md, "The validator walk: asking only what the index has not proved").
- What repeats from one certificate to the next is worked out once: pkilint's DER
  decoding (`_memoize_decoding`), its URI/domain syntax and public suffix checks
  (`_memoize_string_checks`), and a document's validity times (`_certificate_loader`);
  pure functions, so the same findings (tests/unit/test_lint_fast_same_findings.py
  compares them with plain pkilint's), for 0.7-0.8 of the indexed walk's CPU
  (docs/decisions.md, "Lint CPU per certificate").

- With CT on, the final certificate is linted from its precertificate's decoded document
  (`Decoded`, `lint_final_der`): the two TBSs differ only by the poison's Extension
  replaced by the SCT list's (checked on the DERs first), so the precertificate's
  document, with that Extension replaced, is the final certificate's; every validator of
  the final certificate's rules then runs on it, for the same findings as a fresh lint
  (tests/unit/test_lint_final_reuse.py) at a little over half its CPU
  (docs/decisions.md, "The final certificate's lint from its precertificate's document").

CRLs are linted with pkilint's RFC 5280 and CA/Browser Forum CRL rules (`Linter.crl`),
after signing: a CRL is no statement about a subscriber, and a shard left past its
nextUpdate would be worse than one with a finding, so findings are logged and the CRL
is still published (but never before its lint has run). A CRL is linted in a process of
its own (`CrlLintProcess`): its cost grows with its entries, and in a thread it held the
GIL, and so the event loop, for seconds.

A lint runs on the event loop with a key in a file (2-3 ms of pure Python: a thread would
hold the loop as long) and in a worker thread with a token's key (authority.py,
`_signing`), one at a time either way (`_running`): pkilint does not promise that its
validator tree is thread safe.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import ipaddress
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtensionOID

from acmekit.protocol.ct import POISON_OID_DER, SCT_LIST_OID_DER, CtError, parse_tbs
from acmekit.protocol.problems import AcmeError, Problem, ProblemType
from acmekit.server.config import LintSettings, ServerConfig
from acmekit.server.signing import (
    ExternalKey,
    SigningKey,
    file_digest,
    file_key,
    is_external,
    sign_certificate,
    signed_parts,
    throwaway_like,
)
from acmekit.server.validation.reserved import IPNetwork, parse_networks

log = logging.getLogger(__name__)


class Severity(StrEnum):
    """pkilint's severities, by their names."""

    FATAL = "FATAL"
    ERROR = "ERROR"
    WARNING = "WARNING"
    NOTICE = "NOTICE"
    INFO = "INFO"
    DEBUG = "DEBUG"

    @property
    def blocks(self) -> bool:
        return self in (Severity.FATAL, Severity.ERROR)


@dataclass(frozen=True)
class Finding:
    """One finding of the linter: its code (e.g. `cabf.serverauth.…`), where, and why."""

    severity: Severity
    code: str
    path: str
    message: str | None = None

    def __str__(self) -> str:
        why = f": {self.message}" if self.message else ""
        return f"{self.code} ({self.severity}) at {self.path}{why}"


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity.blocks)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == Severity.WARNING)


class LintRefused(AcmeError):
    """A certificate that failed its lint: never signed by the real key."""

    def __init__(self, report: Report) -> None:
        self.report = report
        codes = ", ".join(dict.fromkeys(f.code for f in report.errors))
        first = report.errors[0]
        why = f" ({first.message})" if first.message else ""
        detail = f"issuance refused by certificate lint {codes}{why}"
        super().__init__(Problem(str(ProblemType.SERVER_INTERNAL), detail, 500))


class LintMismatch(RuntimeError):
    """The signed certificate's TBSCertificate is not the one that was linted."""


# ---------------------------------------------------------------------------------------
# pkilint, wrapped: its validator trees are built once per process.

_lock = threading.Lock()
_running = threading.Lock()
_validators: dict[str, Any] = {}


_INDEX_LIMIT = 20_000  # (path, type) pairs a container remembers before starting over

# The pkilint code whose behaviour the walk below reproduces or relies on, pinned by the
# SHA-256 of its source: with any other source (another pkilint release) every shortcut
# that leans on it is off and pkilint's own code runs instead (`_pinned`).
_PINNED = {
    "NodeVisitor.match": "ad59057d44064912b1943a03dd2ae9efd297484796d98801e49e9343c9c3bde3",
    "Validator.validate_wrapper": (
        "5553aaf3d216bf7a1ce8c31bc7268a41dc6181d3e83874970d846621afa5129b"
    ),
    "create_generalname_type_predicate": (
        "26a1748d83f176cf9158f6e26295b71ce5a78052f89712898795829a41658636"
    ),
    "PDUNode.__init__": "6ab26551ffb11db131b849e82d00f9d830fdcbcf56827ee22bb6da323a30abf5",
    "ExtensionCriticalityValidator.match": (
        "0d85b6a68329179b65029d4eefd487d847fdbe412e1292b79e4fd19bdf0811c4"
    ),
    "TypeMatchingValidator.match": (
        "6f79d1f2c5a6f60ecb8a54d097fdb8e6c5eb8ca81f1289d27819760d82d0a23f"
    ),
}


@functools.cache
def _pinned(name: str) -> bool:
    """True when pkilint's `name` (a key of `_PINNED`) has the source the shortcuts that
    lean on it were checked against."""
    import hashlib
    import inspect

    from pkilint.document import NodeVisitor, PDUNode
    from pkilint.pkix import general_name
    from pkilint.pkix.extension import ExtensionCriticalityValidator
    from pkilint.validation import TypeMatchingValidator, Validator

    functions = {
        "ExtensionCriticalityValidator.match": ExtensionCriticalityValidator.match,
        "TypeMatchingValidator.match": TypeMatchingValidator.match,
        "NodeVisitor.match": NodeVisitor.match,
        "Validator.validate_wrapper": Validator.validate_wrapper,
        "create_generalname_type_predicate": general_name.create_generalname_type_predicate,
        "PDUNode.__init__": PDUNode.__init__,
    }
    function = functions[name]
    if hasattr(function, "__wrapped__"):
        return False  # getsource would read the wrapped function's source, not this one's
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return hashlib.sha256(source.encode()).hexdigest() == _PINNED[name]


def _statically_matches(visitor: Any, path: str, pdu_type: type) -> bool:
    """What of pkilint's `NodeVisitor.match` depends only on a node's path and type: its
    `path`, `path_re` and `pdu_class` criteria. Every `match` in pkilint starts with
    `super().match(node)`, so a validator failing these never matches."""
    wanted = getattr(visitor, "_path", None)
    if wanted is not None and wanted != path:
        return False
    pattern = getattr(visitor, "_path_re", None)
    if pattern is not None and pattern.match(path) is None:
        return False
    cls = getattr(visitor, "_pdu_class", None)
    return cls is None or issubclass(pdu_type, cls)


def _plain_match(visitor: Any) -> bool:
    """True when `visitor.match` is pkilint's `NodeVisitor.match` (path, path_re,
    pdu_class, supertype, predicate, in that order; pinned)."""
    from pkilint.document import NodeVisitor

    return (
        type(visitor).match is NodeVisitor.match
        and "match" not in vars(visitor)
        and _pinned("NodeVisitor.match")
    )


def _match_is_static(visitor: Any) -> bool:
    """True when `visitor.match` is pkilint's `NodeVisitor.match` with nothing but the
    criteria `_statically_matches` checks (no supertype, no predicate): then a node that
    passed those needs no second asking."""
    return (
        _plain_match(visitor)
        and getattr(visitor, "_pdu_supertype", None) is None
        and getattr(visitor, "_predicate", None) is None
    )


def _generalname_type(predicate: Any) -> str | None:
    """The GeneralName alternative (`"dNSName"`, ...) that `predicate` selects, when it is
    a predicate made by pkilint's `create_generalname_type_predicate` (the same code
    object, source pinned): `n.name == type and n.parent ... is a GeneralName`. None for
    any other callable."""
    from pkilint.pkix import general_name

    if not _pinned("create_generalname_type_predicate") or not _pinned("PDUNode.__init__"):
        return None
    probe = general_name.create_generalname_type_predicate("dNSName")
    code = getattr(predicate, "__code__", None)
    if code is None or code is not probe.__code__ or predicate.__closure__ is None:
        return None
    cells = dict(zip(code.co_freevars, predicate.__closure__, strict=True))
    chosen = cells["generalname_type"].cell_contents if "generalname_type" in cells else None
    return chosen if type(chosen) is str else None


def _oid_check(visitor: Any) -> Any:
    """For pkilint's `ExtensionCriticalityValidator` and `TypeMatchingValidator`, whose
    `match` is `super().match(node)` and then an OID comparison (sources pinned): the
    comparison alone, when `super()` is pkilint's `NodeVisitor.match` with no supertype
    or predicate (what it checks is then proved by the index). None otherwise."""
    from pkilint.document import NodeVisitor
    from pkilint.pkix.extension import ExtensionCriticalityValidator
    from pkilint.validation import TypeMatchingValidator

    cls = type(visitor)
    if cls.match is ExtensionCriticalityValidator.match:
        definer, name = ExtensionCriticalityValidator, "ExtensionCriticalityValidator.match"
    elif cls.match is TypeMatchingValidator.match:
        definer, name = TypeMatchingValidator, "TypeMatchingValidator.match"
    else:
        return None
    mro = cls.__mro__
    above = next(k for k in mro[mro.index(definer) + 1 :] if "match" in vars(k))
    if (
        "match" in vars(visitor)
        or above is not NodeVisitor
        or not _pinned(name)
        or not _pinned("NodeVisitor.match")
        or getattr(visitor, "_pdu_supertype", None) is not None
        or getattr(visitor, "_predicate", None) is not None
    ):
        return None
    if definer is ExtensionCriticalityValidator:
        return lambda node: visitor._type_oid == node.children["extnID"].pdu
    return lambda node: node.navigate(visitor.type_path).pdu == visitor.type_oid


_NEVER = object()  # a validator that cannot match any node of a (path, type)


def _asking(visitor: Any, path: str) -> Any:
    """How `visitor` is asked at a node of `path` that passed `_statically_matches`:
    None (it matches without asking), `_NEVER` (it cannot match), or a callable of the
    node that answers as `visitor.match` would.

    For pkilint's `NodeVisitor.match`, path, path_re and pdu_class are proved already,
    so what is left is its supertype and predicate, in that order. A GeneralName type
    predicate (`_generalname_type`) is false at every node whose path does not end with
    the type's name: `PDUNode` makes a node's path its parent's path, a dot and its name
    (pinned), so a node named `dNSName` has a path ending in `dNSName`. Of pkilint's
    extension criticality and type matching validators only the OID comparison is
    asked (`_oid_check`)."""
    if _match_is_static(visitor):
        return None
    if not _plain_match(visitor):
        return _oid_check(visitor) or visitor.match
    supertype, predicate = visitor._pdu_supertype, visitor._predicate
    if predicate is not None:
        chosen = _generalname_type(predicate)
        if chosen is not None and not path.endswith(chosen):
            return _NEVER
    if supertype is None:
        return predicate
    if predicate is None:
        return lambda node: supertype.isSuperTypeOf(node.pdu)
    return lambda node: supertype.isSuperTypeOf(node.pdu) and predicate(node)


def _wrapper_is_plain(visitor: Any) -> bool:
    """True when `visitor.validate_wrapper` is pkilint's own (source pinned), which the
    walk reproduces inline (`_index`)."""
    from pkilint.validation import Validator

    return (
        type(visitor).validate_wrapper is Validator.validate_wrapper
        and "validate_wrapper" not in vars(visitor)
        and _pinned("Validator.validate_wrapper")
    )


def _unhandled(visitor: Any, node: Any, error: Exception) -> Any:
    """pkilint's `validate_wrapper` on an exception that is not a finding: logged, and
    reported as `base.unhandled_exception`. Called inside the `except` block."""
    from pkilint import validation

    validation.logger.exception(
        "Unhandled exception occurred when executing validator %s on node %s",
        visitor.name,
        node.path,
    )
    described = validation.ValidationFindingDescription(
        visitor.VALIDATION_FINDING_UNHANDLED_EXCEPTION, str(error)
    )
    return validation.ValidationResult(visitor, node, [described])


def _index(container: Any, empty_results: bool = False) -> None:
    """Give `container` and every container under it a `_validate_rec` that offers a node
    only to the validators that can match its path and type, each still asked where its
    `match` checks more than that (`_asking`: predicates, supertypes and OID checks are
    per node). Same results, in the same order, as pkilint's loop over all validators;
    but for a validator whose `validate_wrapper` is pkilint's own, `validate` is called
    inline under the same exception handling, and the empty result pkilint's wrapper
    makes when `validate` returns None is left out unless `empty_results` (no finding
    is in it: `finding_filter.filter_results` passes such a result through unchanged
    and `_findings` reads only findings)."""
    from pkilint.validation import (
        ValidationFindingDescription,
        ValidationFindingEncountered,
        ValidationResult,
        ValidatorContainer,
    )

    if not isinstance(container, ValidatorContainer):
        return
    for child in container.validators:
        _index(child, empty_results)
    if type(container)._validate_rec is not ValidatorContainer._validate_rec:
        return  # a container with its own walk keeps it
    validators = tuple(container.validators)
    candidates: dict[tuple[str, type], tuple[tuple[Any, Any, bool], ...]] = {}

    def offered(key: tuple[str, type]) -> tuple[tuple[Any, Any, bool], ...]:
        if len(candidates) >= _INDEX_LIMIT:
            candidates.clear()
        found = []
        for v in validators:
            if _statically_matches(v, *key):
                ask = _asking(v, key[0])
                if ask is not _NEVER:
                    found.append((v, ask, _wrapper_is_plain(v)))
        candidates[key] = tuple(found)
        return candidates[key]

    def validate_rec(node: Any, results: list[Any]) -> None:
        key = (node.path, type(node.pdu))
        found = candidates.get(key)
        if found is None:
            found = offered(key)
        for v, ask, inline in found:
            if ask is not None and not ask(node):
                continue
            if not inline:
                result = v.validate_wrapper(node)
            else:
                try:
                    result = v.validate(node)
                except ValidationFindingEncountered as e:
                    described = ValidationFindingDescription(e.finding, e.message)
                    results.append(ValidationResult(v, node, [described]))
                    continue
                except Exception as e:
                    results.append(_unhandled(v, node, e))
                    continue
                if result is None:
                    if empty_results:
                        results.append(ValidationResult(v, node, []))
                    continue
            if isinstance(result, list):
                results += result
            else:
                results.append(result)
        for child_node in node.children.values():
            validate_rec(child_node, results)

    container._validate_rec = validate_rec


_DECODED_LIMIT = 1_024  # decoded values kept (a few kB each) before starting over
_decoded: dict[tuple[int, bytes], tuple[Any, Any]] = {}


def _memoize_decoding() -> None:
    """Make pkilint's DER decoding (`pkilint.document.decode_der`, which every document
    and every extension or attribute value goes through) remember what it decoded.

    Most of a subscriber certificate is the same from one to the next: the issuer's name,
    the AKI, AIA, CRL distribution point, policies, key usage, EKU and basic constraints
    values. Decoding is a pure function of the substrate and the schema object, and no
    validator changes a decoded value, so an earlier decoding of the same bytes with the
    same schema is as good as a new one; each document still gets its own node tree.
    Whole certificates and CRLs (new every time) are decoded as before; failures are not
    remembered (the next call fails the same way)."""
    from pkilint import document
    from pyasn1_alt_modules import rfc5280  # type: ignore[import-untyped]

    plain = document.decode_der
    if getattr(plain, "memoized", False):
        return
    unique = (rfc5280.Certificate, rfc5280.CertificateList)

    def decode_der(substrate: Any, asn1Spec: Any) -> tuple[Any, bytes]:
        if isinstance(asn1Spec, unique):
            return plain(substrate, asn1Spec=asn1Spec)  # type: ignore[no-any-return]
        key = (id(asn1Spec), bytes(substrate))
        found = _decoded.get(key)
        if found is not None and found[0] is asn1Spec:  # the id is the same live object's
            return found[1], b""
        decoded, rest = plain(substrate, asn1Spec=asn1Spec)
        if len(_decoded) >= _DECODED_LIMIT:
            _decoded.clear()
        _decoded[key] = (asn1Spec, decoded)
        return decoded, rest

    decode_der.memoized = True  # type: ignore[attr-defined]
    document.decode_der = decode_der


_PURE_LIMIT = 4_096  # strings each pure check remembers before starting over


def _bounded_memo(func: Any) -> Any:
    """`func` (a pure function of hashable arguments) remembering its answers."""
    answers: dict[Any, Any] = {}

    def memo(*args: Any) -> Any:
        try:
            return answers[args]
        except KeyError:
            pass
        answer = func(*args)
        if len(answers) >= _PURE_LIMIT:
            answers.clear()
        answers[args] = answer
        return answer

    return memo


class _MemoSuffixes:
    """A public suffix list whose `publicsuffix` (a pure function of the name, for the
    list loaded once at start) remembers its answers."""

    def __init__(self, psl: Any) -> None:
        self._psl = psl
        self.publicsuffix = _bounded_memo(psl.publicsuffix)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._psl, name)


def _memoize_string_checks(container: Any) -> None:
    """Let the string checks pkilint repeats on every certificate for the same values
    (URI and domain syntax of the CRL and AIA URLs, the public suffix of each name)
    remember their answers: pure functions of the string, so the same findings."""
    from pkilint.pkix import general_name

    if not getattr(general_name.validators_predicate, "memoized", False):
        predicate = _bounded_memo(general_name.validators_predicate)
        predicate.memoized = True
        general_name.validators_predicate = predicate
    for validator in getattr(container, "validators", ()):
        _memoize_string_checks(validator)
    psl = getattr(container, "_psl", None)
    if psl is not None and not isinstance(psl, _MemoSuffixes):
        container._psl = _MemoSuffixes(psl)


def _certificate_validator(precert: bool = False) -> tuple[Any, Any]:
    """(validator container, finding filters) for a DV subscriber certificate, or for
    its precertificate (RFC 6962 §3.1: the same rules and the poison extension)."""
    name = "precertificate" if precert else "certificate"
    with _lock:
        if name not in _validators:
            container, filters = build_certificate_validator(precert)
            _index(container)
            _memoize_decoding()
            _memoize_string_checks(container)
            _validators[name] = (container, filters)
        found: tuple[Any, Any] = _validators[name]
        return found


def build_certificate_validator(precert: bool = False) -> tuple[Any, Any]:
    """pkilint's own (container, filters) for a DV subscriber certificate, or its
    precertificate, as built."""
    from pkilint.cabf import serverauth
    from pkilint.cabf.serverauth import serverauth_constants
    from pkilint.pkix import certificate

    types = serverauth_constants.CertificateType
    kind = types.DV_PRE_CERTIFICATE if precert else types.DV_FINAL_CERTIFICATE
    container = certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(kind)
    )
    return container, serverauth.create_serverauth_finding_filters(kind)


def _crl_validator() -> Any:
    with _lock:
        if "crl" not in _validators:
            from pkilint import pkix
            from pkilint.cabf import cabf_crl
            from pkilint.pkix import crl, extension, name

            kind = crl.CertificateRevocationListType.CRL
            _validators["crl"] = container = crl.create_pkix_crl_validator_container(
                [
                    pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
                    pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
                ],
                [
                    crl.create_issuer_validator_container([]),
                    crl.create_validity_validator_container(
                        [cabf_crl.create_validity_period_validator(kind)]
                    ),
                    crl.create_extensions_validator_container([]),
                    cabf_crl.CabfCrlReasonCodeAllowlistValidator(kind),
                ],
            )
            _index(container)
            _memoize_decoding()
        return _validators["crl"]


def _findings(results: Iterable[Any], ignored: frozenset[str]) -> Report:
    found: list[Finding] = []
    for result in results:
        for described in result.finding_descriptions:
            code = described.finding.code
            if code in ignored:
                continue
            severity = Severity(described.finding.severity.name)
            found.append(Finding(severity, code, str(result.node.path), described.message))
    return Report(tuple(found))


_loader: Any = None


def _certificate_loader() -> Any:
    """pkilint's certificate loader, for documents that parse their validity times once.

    pkilint's `RFC5280Certificate.not_before`/`not_after` parse the time node again at
    every call, and a validator such as the IP reverse zone check asks for `not_before`
    once per DNS name. The time nodes are fixed once the document is decoded, so the
    parsed time is too; an attempt that raises is not remembered."""
    global _loader
    if _loader is None:
        from functools import cached_property

        from pkilint import loader
        from pkilint.pkix.certificate import RFC5280Certificate

        class Certificate(RFC5280Certificate):  # type: ignore[misc]
            not_before = cached_property(RFC5280Certificate.not_before.fget)
            not_after = cached_property(RFC5280Certificate.not_after.fget)

        made = loader.RFC5280CertificateDocumentLoader()
        made._document_cls = Certificate
        _loader = made
    return _loader


def lint_certificate_der(der: bytes, ignored: Iterable[str] = (), precert: bool = False) -> Report:
    """pkilint's CA/Browser Forum TLS findings (DV subscriber certificate, or its
    precertificate) for `der`."""
    from pkilint import finding_filter

    container, filters = _certificate_validator(precert)
    doc = _certificate_loader().load_der_document(der, "tbs")
    with _running:  # one validation at a time: pkilint does not promise thread safety
        results, _ = finding_filter.filter_results(filters, container.validate(doc.root))
    return _findings(results, frozenset(ignored))


# ---------------------------------------------------------------------------------------
# The final certificate's lint from its precertificate's decoded document (RFC 6962 §3.3)


class Decoded:
    """A precertificate's lint copy and pkilint's decoded document of it, kept for the
    final certificate's lint and used by it at most once (`document_for` makes the
    precertificate's document into the final certificate's, in place).

    Why this is the final certificate's document: the final certificate's TBS is the
    precertificate's with one Extension replaced, the poison by the SCT list at the same
    position (ct.final_tbs), and its lint copy carries the same signatureAlgorithm and
    signature bytes; `document_for` checks exactly that on the two DERs before anything
    is reused. DER decoding is compositional (a SEQUENCE's value is its components'
    values, each decoded from its own TLV), so decoding the final certificate gives the
    precertificate's value with that one Extension replaced, which is what is built
    here: the new Extension decoded, set at its position in the pyasn1 value and given a
    new node subtree. Everything else pkilint keeps on a document is a decoded child that
    its decoding validators append under a node (`document.decode_substrate`, which
    leaves a node that has one alone): a function of that node's own bytes, which are
    the same in both certificates, and the new Extension's node has none yet; and the
    document's cached properties, dropped here. Then the final certificate's validators,
    all of them, run over the whole document as on a freshly decoded one: the same
    findings in the same order (tests/unit/test_lint_final_reuse.py), without decoding
    the certificate, building its node tree and decoding each extension value again."""

    def __init__(self, der: bytes, document: Any, decoding_clean: bool = False) -> None:
        self.der = der
        self.decoding_clean = decoding_clean  # pkilint's decoders found nothing in it
        self._document: Any = document
        self._taken = threading.Lock()

    @property
    def signature(self) -> bytes:
        """The lint copy's signature bytes: the final certificate's lint copy carries
        them too (no lint reads them; `document_for` wants them equal)."""
        return signed_parts(self.der)[2]

    def document_for(self, final_der: bytes) -> tuple[Any, int] | None:
        """The precertificate's document, made the final certificate's `final_der`, and
        the position of the Extension replaced; None (lint it afresh) unless the two
        differ only by the poison's Extension replaced by the SCT list's at the same
        position, or once the document was used already."""
        position = _swapped_extension(self.der, final_der)
        if position is None or not self._taken.acquire(blocking=False):
            return None
        doc, self._document = self._document, None
        index, extension_der = position
        try:
            extension, rest = _plain_decode_der(extension_der, asn1Spec=_extension_spec())
        except Exception:  # pyasn1's errors: the fresh lint reports the encoding
            return None
        if rest:
            return None
        _replace_extension(doc, index, extension)
        doc.substrate = final_der
        for name in _cached_properties(type(doc)):
            doc.__dict__.pop(name, None)
        return doc, index


def _swapped_extension(pre_der: bytes, final_der: bytes) -> tuple[int, bytes] | None:
    """(position, the final certificate's Extension DER) when `final_der` is `pre_der`
    with its poison Extension replaced by an SCT list Extension at the same position and
    nothing else changed, to the byte (RFC 6962 §3.1, §3.3); None otherwise."""
    try:
        pre_tbs, pre_alg, pre_sig = signed_parts(pre_der)
        fin_tbs, fin_alg, fin_sig = signed_parts(final_der)
        pre, fin = parse_tbs(pre_tbs), parse_tbs(fin_tbs)
    except (ValueError, CtError):
        return None
    if (pre_alg, pre_sig, pre.before, pre.after) != (fin_alg, fin_sig, fin.before, fin.after):
        return None
    # `[3]` and the extensions' SEQUENCE hold lengths that no comparison above covers
    # (`signed_parts` refuses a length not in DER's shortest form, X.690 §10.1, around
    # the TBS; `parse_tbs` does not inside it). pkilint's decoder refuses them, so the
    # final certificate is reused only when its TBS is exactly what its parts make.
    if fin.encode([ext for _, ext in fin.extensions]) != fin_tbs:
        return None
    if len(pre.extensions) != len(fin.extensions):
        return None
    pairs = enumerate(zip(pre.extensions, fin.extensions, strict=True))
    changed = [i for i, (old, new) in pairs if old != new]
    if len(changed) != 1:
        return None
    index = changed[0]
    (pre_oid, _), (fin_oid, fin_ext) = pre.extensions[index], fin.extensions[index]
    if pre_oid != POISON_OID_DER or fin_oid != SCT_LIST_OID_DER:
        return None
    return index, fin_ext


def _plain_decode_der(substrate: bytes, asn1Spec: Any) -> tuple[Any, bytes]:
    from pyasn1_fasder import decode_der  # type: ignore[import-untyped]

    return decode_der(substrate, asn1Spec=asn1Spec)  # type: ignore[no-any-return]


def _extension_spec() -> Any:
    from pyasn1_alt_modules import rfc5280

    return rfc5280.Extension()


def _replace_extension(doc: Any, index: int, extension: Any) -> None:
    """Extension `index` of `doc` replaced by `extension` (a decoded rfc5280.Extension):
    in the pyasn1 value the validators read through `node.pdu`, and as a new node
    subtree (no decoded children yet, as in a fresh document)."""
    from pkilint.document import PDUNode

    extensions = doc.root.children["tbsCertificate"].children["extensions"]
    extensions.pdu.setComponentByPosition(index, extension)
    name = str(index)
    extensions.children[name] = PDUNode(doc, name, extensions.pdu[index], extensions)


_cached_names: dict[type, tuple[str, ...]] = {}


def _cached_properties(cls: type) -> tuple[str, ...]:
    """The names of a document class's cached properties (pkilint's `is_ca`,
    `cryptography_object`, ..., and our validity times)."""
    names = _cached_names.get(cls)
    if names is None:
        names = _cached_names[cls] = tuple(
            name
            for klass in cls.__mro__
            for name, value in vars(klass).items()
            if isinstance(value, functools.cached_property)
        )
    return names


def _decoding_part(container: Any) -> tuple[Any, Any, frozenset[int]] | None:
    """pkilint's certificate container is [decoding container (path "certificate"),
    validators...] (`create_pkix_certificate_validator_container`): (the decoding
    container, a container of the rest, the ids of every validator under the decoding
    container); None if the tree is not built that way."""
    from pkilint.validation import ValidatorContainer

    first, *rest = container.validators
    if not isinstance(first, ValidatorContainer) or getattr(first, "_path", None) != "certificate":
        return None
    others = ValidatorContainer(validators=rest)
    _index(others)
    ids: set[int] = set()

    def collect(v: Any) -> None:
        ids.add(id(v))
        for child in getattr(v, "validators", ()):
            collect(child)

    collect(first)
    return first, others, frozenset(ids)


def _split(precert: bool) -> tuple[Any, Any, frozenset[int]] | None:
    """`_decoding_part` of the current tree (made again if the tree was)."""
    container, _ = _certificate_validator(precert)
    name = f"split-{precert}"
    with _lock:
        found: tuple[Any, tuple[Any, Any, frozenset[int]] | None] | None = _validators.get(name)
        if found is None or found[0] is not container.validators[0]:
            found = _validators[name] = (container.validators[0], _decoding_part(container))
        return found[1]


def lint_final_der(der: bytes, decoded: Decoded | None, ignored: Iterable[str] = ()) -> Report:
    """pkilint's findings for the final certificate `der` (DV subscriber), as
    `lint_certificate_der` gives them, from its precertificate's `decoded` document
    where that is the final certificate's (Decoded); else decoded afresh.

    With the document reused, pkilint's decoding validators run only on the new SCT
    list Extension when they found nothing in the precertificate: everywhere else they
    would meet the same bytes already decoded (`document.decode_substrate` leaves a node
    that has a decoded child alone), so they would again find nothing; and the decoding
    container comes first in pkilint's tree and matches only at the root, so its
    findings come first either way. The other validators all run on the whole document."""
    from pkilint import finding_filter

    container, filters = _certificate_validator(precert=False)
    split = _split(precert=False)
    with _running:
        reused = decoded.document_for(der) if decoded is not None else None
        if reused is None:
            doc = _certificate_loader().load_der_document(der, "tbs")
            results = container.validate(doc.root)
        elif split is None or decoded is None or not decoded.decoding_clean:
            results = container.validate(reused[0].root)
        else:
            doc, index = reused
            decoding, others, _ = split
            extensions = doc.root.children["tbsCertificate"].children["extensions"]
            results = decoding.validate(extensions.children[str(index)])
            results += others.validate(doc.root)
        results, _ = finding_filter.filter_results(filters, results)
    return _findings(results, frozenset(ignored))


def lint_precertificate_der(der: bytes, ignored: Iterable[str] = ()) -> tuple[Report, Decoded]:
    """`lint_certificate_der(der, precert=True)`, and the decoded document kept for
    the final certificate's lint (lint_final_der), with whether pkilint's decoding
    validators found nothing in it."""
    from pkilint import finding_filter

    container, filters = _certificate_validator(precert=True)
    split = _split(precert=True)
    doc = _certificate_loader().load_der_document(der, "tbs")
    with _running:
        raw = container.validate(doc.root)
        results, _ = finding_filter.filter_results(filters, raw)
    clean = split is not None and not any(
        r.finding_descriptions for r in raw if id(r.validator) in split[2]
    )
    return _findings(results, frozenset(ignored)), Decoded(der, doc, clean)


def lint_crl_der(der: bytes, ignored: Iterable[str] = ()) -> Report:
    """pkilint's RFC 5280 and CA/Browser Forum findings for a CRL."""
    from pkilint import loader

    doc = loader.RFC5280CertificateListDocumentLoader().load_der_document(der, "crl")
    validator = _crl_validator()
    with _running:
        results = validator.validate(doc.root)
    return _findings(results, frozenset(ignored))


TIMED_OUT = "acmekit.crl_lint_timed_out"  # the finding of a lint ended at its deadline
LINT_FAILED = "acmekit.crl_lint_failed"  # the finding of a lint no process could run


class CrlLintProcess:
    """pkilint's CRL lint in a process of its own (server/crl_lint_worker.py), one CRL
    at a time.

    pkilint decodes and checks every entry of a CRL in Python, about 0.35 ms each, and
    its DER decoder (a compiled extension) holds the GIL for the whole CRL: linted in the
    CRL rebuilder's thread, a shard of 20,000 entries stalled the event loop for over a
    second at a time (docs/decisions.md, "The CRL's lint in a process of its own"). Here
    the rebuilder's thread only waits for the findings, without the GIL. The process is
    a plain `python -m` child rather than a multiprocessing pool: that one would import
    the parent's main module again (a script without a `__main__` guard would start
    again), and a fork would copy the CA's threads mid-work. Started on the first CRL;
    one that ended is started again, once per lint; it ends with its input (`close`,
    or this process's end)."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # one CRL at a time through the pipes
        self.started = 0  # processes started, for tests and logs
        self.timed_out = False  # the last lint's process was ended at its deadline
        self._aborting = False  # `abort` to `resume`: the CA is stopping

    @property
    def pid(self) -> int | None:
        """The lint process's id, while it runs."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def _process(self) -> subprocess.Popen[bytes]:
        if self._child is None or self._child.poll() is not None:
            self._stop()  # one that ended: its pipes closed, its exit status reaped
            env = dict(os.environ)
            # The modules this process imports, from where it imports them.
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
            # -P: `python -m` would otherwise put the working directory first on the
            # module path, so a `json.py` (or an `acmekit/`) in the directory the CA was
            # started from would be imported in place of the installed one.
            self._child = subprocess.Popen(
                [sys.executable, "-P", "-m", "acmekit.server.crl_lint_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            self.started += 1
        return self._child

    @staticmethod
    def _ask(child: subprocess.Popen[bytes], der: bytes) -> tuple[Finding, ...]:
        """One CRL's findings from `child`: ValueError (or TypeError) for an answer that
        is no list of findings (a line cut short, a library's print), OSError for a
        process that ended."""
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(b"%d\n" % len(der) + der)
        child.stdin.flush()
        line = child.stdout.readline()
        if not line:
            raise BrokenPipeError("the CRL lint process ended")
        found = json.loads(line)
        if not isinstance(found, list):
            raise ValueError(f"the CRL lint process answered {line[:80]!r}")
        return tuple(Finding(Severity(s), str(c), str(p), m) for s, c, p, m in found)

    def lint(self, der: bytes, ignored: frozenset[str]) -> Report:
        """`lint_crl_der(der, ignored)`, run in the lint process. A lint that outlasts
        `deadline(der)` ends its process and comes back as one error finding (TIMED_OUT),
        as does one no process could answer (LINT_FAILED: it cannot start, answers
        garbage twice, or was ended by SIGTERM): the CRL is published all the same,
        since its findings are only logged and a shard past its nextUpdate would be the
        worse failure."""
        with self._lock:
            try:
                if self._aborting:
                    raise OSError("not linted: the CA is stopping")
                findings = self._answer(der)
            except OSError as exc:
                self._stop()
                code = TIMED_OUT if isinstance(exc, TimeoutError) else LINT_FAILED
                log.error("the CRL was not linted: %s", exc)
                return Report((Finding(Severity.ERROR, code, "crl", str(exc)),))
        return Report(tuple(f for f in findings if f.code not in ignored))

    def _answer(self, der: bytes) -> tuple[Finding, ...]:
        """`_ask_in_time`, asked of a new process once more if the first ended (killed,
        out of memory) or answered out of step; OSError if that one fails too."""
        try:
            return self._ask_in_time(der)
        except TimeoutError:
            raise
        except (OSError, ValueError, TypeError) as exc:
            if self._aborting:
                raise OSError(f"the CRL lint was ended: the CA is stopping ({exc})") from exc
            if isinstance(exc, OSError) and self._terminated():
                # A service manager stopping the CA ends its whole group so: another
                # process and a whole lint would only hold the stop up.
                raise OSError(f"the CRL lint process was terminated ({exc})") from exc
            log.warning("the CRL lint process failed (%s); starting another", exc)
            self._stop()  # an answer out of step would shift every later one
        try:
            return self._ask_in_time(der)
        except (ValueError, TypeError) as exc:
            raise OSError(f"the CRL lint process answered no findings: {exc}") from exc

    def _terminated(self) -> bool:
        """The process, whose answers' stream ended, was ended by SIGTERM."""
        child = self._child
        if child is None:
            return False
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)  # it closed its pipes: it is ending
        return child.returncode == -signal.SIGTERM

    def _ask_in_time(self, der: bytes) -> tuple[Finding, ...]:
        """`_ask` with a watchdog that kills the process at the deadline, which ends
        both a blocked write and a blocked read with an OSError (`timed_out` set)."""
        child = self._process()
        self.timed_out = False
        limit = self.deadline(der)

        def expire() -> None:
            self.timed_out = True
            child.kill()

        watchdog = threading.Timer(limit, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            return self._ask(child, der)
        except OSError as exc:
            if self.timed_out:
                self._stop()
                raise TimeoutError(f"the CRL lint took over {limit:.0f} s; ended") from exc
            raise
        finally:
            watchdog.cancel()

    @staticmethod
    def deadline(der: bytes) -> float:
        """Seconds a CRL's lint may take: some ten times pkilint's cost of about 0.35 ms
        an entry (an entry some 40 octets), and a minute for starting the process."""
        return 60.0 + len(der) / 1000 * 0.1

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()

    def abort(self) -> None:
        """The CA is stopping: end the lint under way now (its CRL comes back with one
        error finding, as one never linted) and lint nothing more until `resume`, so a
        stop waits for no lint (one of a big CRL takes seconds; a refresh remakes every
        shard). Not under the lock, which the lint under way holds."""
        self._aborting = True
        child = self._child
        if child is not None:
            with contextlib.suppress(OSError):
                child.kill()

    def resume(self) -> None:
        """Lint again after `abort` (the next lint starts a new process)."""
        self._aborting = False

    def close(self) -> None:
        """End the lint process (a later lint starts another)."""
        with self._lock:
            self._stop()


_CRL_PROCESS = CrlLintProcess()
atexit.register(_CRL_PROCESS.close)


# ---------------------------------------------------------------------------------------
# Throwaway keys and the lint-then-sign step


class LintKeys:
    """One throwaway key per key type (curve, or RSA size), made on first use."""

    def __init__(self) -> None:
        self._keys: dict[str, SigningKey] = {}
        self._lock = threading.Lock()

    def like(self, key: SigningKey) -> SigningKey:
        kind = _kind(key)
        with self._lock:
            if kind not in self._keys:
                self._keys[kind] = _new_key_like(key)
            return self._keys[kind]


def _kind(key: SigningKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"ec:{key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"rsa:{key.key_size}"
    return "ed25519"


def _new_key_like(key: SigningKey) -> SigningKey:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ec.generate_private_key(key.curve)
    if isinstance(key, rsa.RSAPrivateKey):
        return rsa.generate_private_key(65537, key.key_size)
    return ed25519.Ed25519PrivateKey.generate()


_LINT_KEYS = LintKeys()


# The findings of a name the Baseline Requirements call internal (a reserved IP address,
# a name under no public suffix); what the operator allowed on purpose (the same
# `[validation]` exceptions that let the CA validate such names) is no error here.
_INTERNAL = frozenset({"cabf.internal_domain_name", "cabf.internal_ip_address"})
_QUOTED = re.compile(r'"([^"]*)"')


_warned: dict[str, int] = {}  # warning code: how many certificates had it
_warned_lock = threading.Lock()


def log_warnings(serial: str, warnings: tuple[Finding, ...]) -> None:
    """Log a lint warning at WARNING the first time its code is seen in this process,
    and at DEBUG after that with the running count: every certificate of a profile
    shares the profile's warnings, and logging them all again each time cost a few
    per cent of the CA's CPU (docs/decisions.md, "Lint CPU per certificate")."""
    new: list[Finding] = []
    with _warned_lock:
        for finding in warnings:
            seen = _warned.get(finding.code, 0)
            _warned[finding.code] = seen + 1
            if seen == 0:
                new.append(finding)
    if new:
        shown = "; ".join(str(f) for f in new)
        log.warning(
            "lint warnings for serial %s: %s (logged once per code; later at debug)",
            serial,
            shown,
        )
    if log.isEnabledFor(logging.DEBUG):
        shown = "; ".join(f"{f} [#{_warned[f.code]}]" for f in warnings)
        log.debug("lint warnings for serial %s: %s", serial, shown)


@dataclass(frozen=True)
class Linter:
    """What the CA's signing path calls: lint a to-be-signed certificate, then sign it."""

    enabled: bool = True
    ignored: frozenset[str] = frozenset()
    as_errors: frozenset[str] = frozenset(LintSettings().as_errors)
    allowed_names: tuple[str, ...] = ()  # special-use names (and what is under them)
    allowed_networks: tuple[IPNetwork, ...] = ()
    keys: LintKeys = _LINT_KEYS  # shared: one throwaway key per type and process
    crl_process: CrlLintProcess = _CRL_PROCESS  # shared: the process's one CRL linter

    @classmethod
    def for_config(cls, config: ServerConfig) -> Linter:
        return cls(
            enabled=config.lint.enabled,
            ignored=frozenset(config.lint.ignored),
            as_errors=frozenset(config.lint.as_errors),
            allowed_names=config.validation.allowed_special_names,
            allowed_networks=parse_networks(config.validation.allow_networks),
        )

    def warm(self, precert: bool = False) -> None:
        """Build pkilint's validator trees now (at start, ~0.2-0.8 s of CPU with the
        imports) rather than in the first issuance; with `precert` (CT on) the
        precertificate's too, which every issuance then lints first."""
        if self.enabled:
            _certificate_validator()
            _crl_validator()
            if precert:
                _certificate_validator(precert=True)

    def _allowed(self, finding: Finding) -> bool:
        """True for an internal-name finding about a name or address the operator allowed."""
        quoted = _QUOTED.search(finding.message or "")
        if finding.code not in _INTERNAL or quoted is None:
            return False
        value = quoted.group(1).strip("[]").rstrip(".").lower()
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return any(value == n or value.endswith(f".{n}") for n in self.allowed_names)
        return any(address in net for net in self.allowed_networks)

    def lint(self, der: bytes, precert: bool = False) -> Report:
        """The findings for a certificate's DER, less the ignored and the allowed ones."""
        return self._judged(lint_certificate_der(der, self.ignored, precert))

    def lint_precertificate(self, der: bytes) -> tuple[Report, Decoded]:
        """`lint(der, precert=True)`, and its decoded document for `lint_final`."""
        report, decoded = lint_precertificate_der(der, self.ignored)
        return self._judged(report), decoded

    def lint_final(self, der: bytes, decoded: Decoded | None) -> Report:
        """`lint(der)` for a final certificate, from its precertificate's `decoded`
        document where that is the final certificate's (lint.Decoded)."""
        return self._judged(lint_final_der(der, decoded, self.ignored))

    def _judged(self, report: Report) -> Report:
        kept = (f for f in report.findings if not self._allowed(f))
        return Report(tuple(self._promoted(f) for f in kept))

    def _promoted(self, finding: Finding) -> Finding:
        if finding.code in self.as_errors and not finding.severity.blocks:
            return replace(finding, severity=Severity.ERROR)
        return finding

    def check(self, builder: x509.CertificateBuilder, throwaway: SigningKey) -> x509.Certificate:
        """The copy of `builder` signed by `throwaway` (a key of the real key's type), after
        its lint passed (LintRefused if it did not; warnings are logged)."""
        copy = builder.sign(throwaway, file_digest(throwaway))
        precert = any(e.oid == ExtensionOID.PRECERT_POISON for e in copy.extensions)
        report = self.lint(copy.public_bytes(serialization.Encoding.DER), precert)
        serial = format(copy.serial_number, "x")
        if report.warnings:
            log_warnings(serial, report.warnings)
        if report.errors:
            shown = "; ".join(str(f) for f in report.errors)
            log.error("lint refused serial %s: %s", serial, shown)
            raise LintRefused(report)
        return copy

    def sign(
        self, builder: x509.CertificateBuilder, key: PrivateKeyTypes | ExternalKey
    ) -> x509.Certificate:
        """Lint `builder`'s certificate, then sign it with `key` (a file key, or one in a
        token: signing.py), and check that what was signed is what was linted."""
        if is_external(key):
            if not self.enabled:
                return sign_certificate(builder, key)
            linted = self.check(builder, throwaway_like(key.public_key()))
            final = sign_certificate(builder, key)
        else:
            signer = file_key(key)
            if not self.enabled:
                return builder.sign(signer, file_digest(signer))
            linted = self.check(builder, self.keys.like(signer))
            final = builder.sign(signer, file_digest(signer))
        if final.tbs_certificate_bytes != linted.tbs_certificate_bytes:
            raise LintMismatch(
                f"serial {final.serial_number:x}: the signed TBSCertificate differs from the "
                "linted one"
            )
        return final

    def crl(self, der: bytes) -> Report:
        """Lint a signed CRL in the CRL lint process (CrlLintProcess), so a big one does
        not hold the GIL here; errors and warnings are logged, the report returned."""
        report = self.crl_process.lint(der, self.ignored)
        for finding in report.errors:
            log.error("CRL lint error: %s", finding)
        for finding in report.warnings:
            log.warning("CRL lint warning: %s", finding)
        return report
