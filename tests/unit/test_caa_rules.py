"""CAA rules without a network: RFC 8659 §4 and RFC 8657's accounturi / validationmethods."""

from __future__ import annotations

import pytest

from acmekit.server.caa import CaaParameter, CaaRecord, IssueValue, caa_permits, parse_issue_value

US = "ca.acmekit.test"
ACCOUNT = "https://ca.acmekit.test/acme/acct/42"


def issue(value: str, flags: int = 0) -> CaaRecord:
    return CaaRecord(flags, "issue", value)


def issuewild(value: str, flags: int = 0) -> CaaRecord:
    return CaaRecord(flags, "issuewild", value)


def permits(
    *records: CaaRecord,
    wildcard: bool = False,
    account_uri: str = ACCOUNT,
    method: str = "http-01",
    identities: tuple[str, ...] = (US,),
) -> tuple[bool, str]:
    return caa_permits(
        records,
        identities=identities,
        wildcard=wildcard,
        account_uri=account_uri,
        method=method,
    )


def allowed(*records: CaaRecord, **kwargs: object) -> bool:
    return permits(*records, **kwargs)[0]  # type: ignore[arg-type]


# -- the empty set, and sets with nothing that restricts ------------------------------------


@pytest.mark.parametrize("wildcard", [False, True])
def test_empty_set_permits(wildcard: bool) -> None:
    assert permits(wildcard=wildcard) == (True, "no CAA records")


def test_only_iodef_does_not_restrict() -> None:
    ok, reason = permits(CaaRecord(0, "iodef", "mailto:sec@example.test"))
    assert ok
    assert "no issue or issuewild records" in reason


def test_critical_iodef_is_understood_and_does_not_restrict() -> None:
    assert allowed(CaaRecord(128, "iodef", "mailto:sec@example.test"))


# -- issue -----------------------------------------------------------------------------------


def test_issue_naming_us_permits() -> None:
    ok, reason = permits(issue(US))
    assert ok
    assert US in reason


def test_issue_naming_another_ca_forbids() -> None:
    ok, reason = permits(issue("other-ca.test"))
    assert not ok
    assert 'issue "other-ca.test" names another CA (other-ca.test)' in reason


def test_any_one_matching_issue_record_is_enough() -> None:
    assert allowed(issue("other-ca.test"), issue(US), issue(";"))


def test_every_failing_record_is_named_in_the_reason() -> None:
    ok, reason = permits(issue("one.test"), issue(";"))
    assert not ok
    assert "one.test" in reason
    assert "forbids issuance by any CA" in reason


@pytest.mark.parametrize("value", [";", "", "  ;  ", "; accounturi=" + ACCOUNT])
def test_issue_without_a_domain_forbids_everyone(value: str) -> None:
    ok, reason = permits(issue(value))
    assert not ok
    assert "forbids issuance by any CA" in reason


def test_deny_all_record_forbids_wildcards_too() -> None:
    assert not allowed(issue(";"), wildcard=True)


def test_identities_compare_case_insensitively() -> None:
    assert allowed(issue("CA.AcmeKit.Test"))
    assert allowed(issue(US), identities=("Ca.ACMEKIT.test",))
    assert allowed(issue(US), identities=(US + ".",))


def test_any_of_our_identities_matches() -> None:
    assert allowed(issue("legacy.acmekit.test"), identities=(US, "legacy.acmekit.test"))


def test_tag_compares_case_insensitively() -> None:
    assert not allowed(CaaRecord(0, "ISSUE", "other-ca.test"))
    assert allowed(CaaRecord(0, "Issue", US))


def test_whitespace_around_domain_and_parameters_is_allowed() -> None:
    assert allowed(issue(f"  {US}\t;  accounturi = {ACCOUNT} ;\tvalidationmethods=http-01 "))


@pytest.mark.parametrize(
    "value",
    [
        "ca acmekit.test",  # space inside the domain
        "ca.acmekit.test.",  # trailing dot is not in the grammar
        "-ca.acmekit.test",  # label starting with a hyphen
        "ca..acmekit.test",
        "ca.acmekit.test; accounturi",  # parameter without "="
        "ca.acmekit.test; account uri=x",  # space in a parameter tag
        "ca.acmekit.test; accounturi=a b",  # space in a parameter value
        "ca.acmekit.test; -x=1",
        "ca.acmekit.test; accounturi=a; accounturi=b",  # given twice
        "cä.acmekit.test",
    ],
)
def test_malformed_issue_value_authorizes_nobody(value: str) -> None:
    ok, reason = permits(issue(value))
    assert not ok
    assert "does not parse" in reason


def test_malformed_record_does_not_hide_a_good_one() -> None:
    assert allowed(issue("ca acmekit.test"), issue(US))


# -- parsing ---------------------------------------------------------------------------------


def test_parse_domain_only() -> None:
    assert parse_issue_value("CA.Example.Test") == IssueValue("ca.example.test")


def test_parse_parameters_in_order_with_keys_lowered() -> None:
    parsed = parse_issue_value(
        "ca.test; AccountURI=https://ca.test/acct/1; validationmethods=dns-01,http-01; x=1"
    )
    assert parsed.domain == "ca.test"
    assert parsed.parameters == (
        ("accounturi", "https://ca.test/acct/1"),
        ("validationmethods", "dns-01,http-01"),
        ("x", "1"),
    )
    assert parsed.parameter(CaaParameter.ACCOUNT_URI) == "https://ca.test/acct/1"
    assert parsed.parameter(CaaParameter.VALIDATION_METHODS) == "dns-01,http-01"


def test_parse_empty_parameter_value_and_empty_segments() -> None:
    assert parse_issue_value("ca.test; a=; ;b=2;") == IssueValue("ca.test", (("a", ""), ("b", "2")))


def test_parse_deny_all() -> None:
    assert parse_issue_value(";") == IssueValue("")
    assert parse_issue_value("") == IssueValue("")


def test_parse_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="bad issuer domain name"):
        parse_issue_value("not a domain")
    with pytest.raises(ValueError, match="given twice"):
        parse_issue_value("ca.test; a=1; A=2")


def test_unknown_parameters_are_ignored() -> None:
    assert allowed(issue(f"{US}; policy=ev; somethingelse=1"))


# -- issuewild -------------------------------------------------------------------------------


def test_wildcard_uses_issuewild_when_present() -> None:
    # issue names us, issuewild does not: the wildcard is refused, the plain name allowed.
    records = (issue(US), issuewild("other-ca.test"))
    ok, reason = permits(*records, wildcard=True)
    assert not ok
    assert "issuewild" in reason
    assert allowed(*records, wildcard=False)


def test_wildcard_allowed_by_issuewild_even_if_issue_names_another_ca() -> None:
    records = (issue("other-ca.test"), issuewild(US))
    assert allowed(*records, wildcard=True)
    assert not allowed(*records, wildcard=False)


def test_wildcard_falls_back_to_issue_without_issuewild() -> None:
    assert allowed(issue(US), wildcard=True)
    assert not allowed(issue("other-ca.test"), wildcard=True)


def test_issuewild_alone_does_not_restrict_plain_names() -> None:
    ok, reason = permits(issuewild(";"))
    assert ok
    assert "no issue or issuewild records" in reason
    assert not allowed(issuewild(";"), wildcard=True)


# -- critical flag ---------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [128, 129, 1])
def test_critical_unknown_tag_forbids(flags: int) -> None:
    ok, reason = permits(issue(US), CaaRecord(flags, "tbs", "whatever"))
    assert not ok
    assert "critical" in reason
    assert "tbs" in reason


@pytest.mark.parametrize("wildcard", [False, True])
def test_critical_unknown_tag_forbids_even_with_an_empty_issue_set(wildcard: bool) -> None:
    assert not allowed(CaaRecord(128, "futuretag", "x"), wildcard=wildcard)


@pytest.mark.parametrize("flags", [0, 2, 64])
def test_non_critical_unknown_tag_is_ignored(flags: int) -> None:
    assert allowed(issue(US), CaaRecord(flags, "futuretag", "x"))
    assert not allowed(issue("other-ca.test"), CaaRecord(flags, "futuretag", "x"))


def test_critical_known_tag_is_honoured_normally() -> None:
    assert allowed(issue(US, flags=128))
    assert not allowed(issue("other-ca.test", flags=128))


# -- RFC 8657: accounturi ----------------------------------------------------------------------


def test_accounturi_matching_permits() -> None:
    assert allowed(issue(f"{US}; accounturi={ACCOUNT}"))


def test_accounturi_of_another_account_forbids() -> None:
    ok, reason = permits(issue(f"{US}; accounturi=https://ca.acmekit.test/acme/acct/7"))
    assert not ok
    assert "another account (accounturi)" in reason


@pytest.mark.parametrize(
    "uri",
    [
        ACCOUNT.upper(),  # an exact comparison: not case-folded
        ACCOUNT + "/",
        "",
    ],
)
def test_accounturi_compares_exactly(uri: str) -> None:
    assert not allowed(issue(f"{US}; accounturi={uri}"))


def test_accounturi_on_one_record_does_not_bind_another() -> None:
    other = "https://ca.acmekit.test/acme/acct/7"
    assert allowed(issue(f"{US}; accounturi={other}"), issue(f"{US}; accounturi={ACCOUNT}"))


def test_accounturi_applies_to_issuewild() -> None:
    record = issuewild(f"{US}; accounturi={ACCOUNT}")
    assert allowed(record, wildcard=True)
    assert not allowed(record, wildcard=True, account_uri=ACCOUNT + "9")


# -- RFC 8657: validationmethods -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["http-01", "dns-01", "tls-alpn-01"])
def test_validationmethods_listing_the_method_permits(method: str) -> None:
    record = issue(f"{US}; validationmethods=dns-01,http-01,tls-alpn-01")
    assert allowed(record, method=method)


def test_validationmethods_not_listing_the_method_forbids() -> None:
    ok, reason = permits(issue(f"{US}; validationmethods=dns-01"), method="http-01")
    assert not ok
    assert "does not allow validation by http-01 (validationmethods)" in reason


@pytest.mark.parametrize(
    "methods",
    [
        "dns-01, http-01",  # no spaces in the list (RFC 8657 §4 grammar)
        "http-01,",
        ",http-01",
        "",
        "http-",
    ],
)
def test_malformed_validationmethods_forbids(methods: str) -> None:
    assert not allowed(issue(f"{US}; validationmethods={methods}"), method="http-01")


def test_validationmethods_is_not_a_substring_match() -> None:
    assert not allowed(issue(f"{US}; validationmethods=http-011"), method="http-01")


def test_accounturi_and_validationmethods_together_must_both_hold() -> None:
    record = issue(f"{US}; accounturi={ACCOUNT}; validationmethods=dns-01")
    assert allowed(record, method="dns-01")
    assert not allowed(record, method="http-01")
    assert not allowed(record, method="dns-01", account_uri=ACCOUNT + "0")


def test_record_str_is_zone_file_like() -> None:
    assert (
        str(CaaRecord(128, "issue", "ca.test; accounturi=x")) == '128 issue "ca.test; accounturi=x"'
    )
