"""Request payloads: exact JSON types per field, required fields, unknown ones ignored."""

from __future__ import annotations

from typing import Any

import pytest

from acmekit.protocol import jsontext, payloads
from acmekit.protocol.problems import AcmeError, ProblemType


def refusal(schema: payloads.Schema, doc: Any) -> str:
    with pytest.raises(AcmeError) as info:
        payloads.check(schema, doc, "msg")
    assert info.value.problem.type == ProblemType.MALFORMED
    return info.value.problem.detail


@pytest.mark.parametrize(
    ("schema", "text", "detail"),
    [
        (
            payloads.REVOKE_CERT,
            '{"certificate": "AA", "reason": true}',
            "reason must be a JSON integer",
        ),
        (
            payloads.REVOKE_CERT,
            '{"certificate": "AA", "reason": 1.0}',
            "reason must be a JSON integer",
        ),
        (payloads.REVOKE_CERT, '{"reason": 1}', "needs 'certificate'"),
        (payloads.NEW_ACCOUNT, '{"termsOfServiceAgreed": 1}', "must be a JSON boolean"),
        (
            payloads.NEW_ACCOUNT,
            '{"contact": ["mailto:a@b", null]}',
            "contact[1] must be a JSON string",
        ),
        (payloads.NEW_ACCOUNT, '{"externalAccountBinding": {"protected": 1}}', "protected must be"),
        (payloads.NEW_ORDER, '{"identifiers": [{"type": "dns"}]}', "identifiers[0] needs 'value'"),
        (payloads.NEW_ORDER, '{"identifiers": [["dns", "a.test"]]}', "must be a JSON object"),
        (payloads.NEW_ORDER, "{}", "needs 'identifiers'"),
        (payloads.FINALIZE, '{"csr": null}', "csr must be a JSON string"),
        (payloads.CHALLENGE_RESPONSE, "[]", "msg must be a JSON object"),
        (payloads.CHALLENGE_RESPONSE, "null", "msg must be a JSON object"),
    ],
)
def test_wrong_types_are_named(schema: payloads.Schema, text: str, detail: str) -> None:
    assert detail in refusal(schema, jsontext.loads(text))


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        (payloads.REVOKE_CERT, '{"certificate": "AA", "reason": 1}'),
        (
            payloads.NEW_ORDER,
            '{"identifiers": [{"type": "dns", "value": "a.test"}], "notAfter": null}',
        ),
        (payloads.NEW_ACCOUNT, '{"termsOfServiceAgreed": true, "contact": [], "future": [1, 2]}'),
        (payloads.CHALLENGE_RESPONSE, "{}"),
    ],
)
def test_well_typed_payloads_pass(schema: payloads.Schema, text: str) -> None:
    doc = jsontext.loads(text)
    assert payloads.check(schema, doc, "msg") is doc
