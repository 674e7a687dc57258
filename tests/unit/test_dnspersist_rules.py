"""dns-persist-01 and dns-account-01 rules: every example of the drafts, and bad values."""

from __future__ import annotations

import pytest

from acmekit.protocol import dnsaccount, dnspersist
from acmekit.protocol.challenges import dns01_txt_value
from acmekit.protocol.dnspersist import (
    Failure,
    MalformedRecord,
    account_hash,
    evaluate,
    hashed_account_uri,
    normalize_domain,
    parse_record,
    record_name,
    render_record,
    txt_strings,
)

# draft-ietf-acme-dns-persist-02 §10.2: RFC 7638's example thumbprint, this account URL.
THUMB = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
ACCT = "https://ca.example/acct/123"
PREFIX = "https://ca.example/account-hash/"
HASHED = PREFIX + "sha-256/5SQm7n6tPh2-PlLbCKGnViTXX5z19SCN4cPGQHSk-kw"
ANYWHERE = PREFIX + "sha-256/NpDnSwUthQK8zCgFdefYxAdAVPnygMLbs9US6oO-5ug"
NOW = 1_800_000_000


def judge(values: list[str], *, wildcard: bool = False, now: int = NOW) -> dnspersist.Verdict:
    return evaluate(
        values,
        issuer_domain_names=["authority.example", "ca.example.net"],
        account_uris=[HASHED, ANYWHERE],
        account_hash_prefix=PREFIX,
        now=now,
        wildcard=wildcard,
    )


def test_hashed_uri_test_vectors_of_section_10_2() -> None:
    assert account_hash(ACCT, THUMB, "example.com") == HASHED.rsplit("/", 1)[1]
    assert hashed_account_uri(PREFIX, ACCT, THUMB, "example.com") == HASHED
    assert hashed_account_uri(PREFIX, ACCT, THUMB) == ANYWHERE
    # the domain is normalized first (§9.2): case and a trailing dot do not change it
    assert hashed_account_uri(PREFIX, ACCT, THUMB, "EXAMPLE.com.") == HASHED


def test_normalization_examples_of_section_9_2() -> None:
    assert normalize_domain("EXAMPLE.com.") == "example.com"
    # The draft prints xn--nicode-example-9jb.com, which decodes to "énicode-example"
    # (an erratum): "ünicode-example" is xn--nicode-example-fsb in every IDNA encoder.
    assert normalize_domain("\u00fcNICODE-example.com.") == "xn--nicode-example-fsb.com"
    assert normalize_domain("\u00e9nicode-example.com") == "xn--nicode-example-9jb.com"


def test_record_name_of_section_4() -> None:
    assert record_name("example.com") == "_validation-persist.example.com"
    assert record_name("*.Example.COM") == "_validation-persist.example.com"


# Every record of the draft's figures, as a resolver hands it back (strings joined).
FIGURE_2 = "authority.example; accounturi=" + HASHED
FIGURE_8 = FIGURE_2 + "; policy=wildcard"
FIGURE_9 = FIGURE_2 + "; persistUntil=1721952000"
FIGURE_3_CA1 = (
    "ca1.example; accounturi=https://ca1.example/account-hash/"
    "sha-256/wjZNvLpIgf7zrr9KQo7zCLaG2Ea67KS4o4cAwSepsls; policy=wildcard"
)
FIGURE_3_CA2 = (
    "ca2.example; accounturi=https://ca2.example/account-hash/"
    "sha-256/Mpngr2LZCN9gPArggXqEu4pKtYZvLL5IxMStzyWrrXc; persistUntil=1767225600"
)


def test_figures_parse() -> None:
    basic = parse_record(FIGURE_2)
    assert (basic.issuer, basic.account_uri, basic.wildcard) == ("authority.example", HASHED, False)
    assert basic.persist_until is None
    assert parse_record(FIGURE_8).wildcard
    assert parse_record(FIGURE_9).persist_until == 1721952000
    ca1, ca2 = parse_record(FIGURE_3_CA1), parse_record(FIGURE_3_CA2)
    assert (ca1.issuer, ca1.wildcard, ca1.persist_until) == ("ca1.example", True, None)
    assert (ca2.issuer, ca2.wildcard, ca2.persist_until) == ("ca2.example", False, 1767225600)


def test_render_gives_back_the_figures() -> None:
    assert render_record("authority.example", HASHED) == FIGURE_2
    assert render_record("authority.example", HASHED, wildcard=True) == FIGURE_8
    assert render_record("authority.example", HASHED, persist_until=1721952000) == FIGURE_9
    assert parse_record(FIGURE_8).render() == FIGURE_8


def test_long_values_split_into_character_strings() -> None:
    value = FIGURE_2 + "; note=" + "x" * 400
    parts = txt_strings(value)
    assert all(len(p.encode()) <= 255 for p in parts) and "".join(parts) == value
    assert txt_strings(FIGURE_2) == (FIGURE_2,)


def test_two_cas_one_name_each_sees_its_own() -> None:
    # §4.3.4: a CA filters on its issuer name and ignores the others' records.
    ca1 = evaluate(
        [FIGURE_3_CA2, FIGURE_3_CA1],
        issuer_domain_names=["ca1.example"],
        account_uris=[FIGURE_3_CA1.split("accounturi=")[1].split(";")[0]],
        account_hash_prefix="https://ca1.example/account-hash/",
        now=NOW,
        wildcard=True,
    )
    assert ca1.record is not None and ca1.record.issuer == "ca1.example"


@pytest.mark.parametrize(
    "value",
    [
        FIGURE_2,
        "authority.example;accounturi=" + HASHED,
        "  authority.example ;  accounturi = " + HASHED + " ; ",
        "AUTHORITY.example; accounturi=" + HASHED,
        "ca.example.net; accounturi=" + ANYWHERE,
        FIGURE_2 + "; future-thing=1; other=x",  # unknown parameters are ignored (§4.1)
        FIGURE_2 + "; policy=other",  # an unknown policy is no policy (§4.1 item 4)
        FIGURE_2 + "; persistUntil=" + str(NOW),
    ],
)
def test_acceptable_records(value: str) -> None:
    assert judge([value]).record is not None


def test_policy_is_case_insensitive() -> None:
    assert judge([FIGURE_2 + "; policy=WILDCARD"], wildcard=True).record is not None


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("authority.example", "no accounturi"),
        ("authority.example; accounturi=", "no accounturi"),
        (FIGURE_2 + "; accounturi=" + HASHED, "twice"),
        (FIGURE_2 + "; persistUntil=soon", "base-10"),
        (FIGURE_2 + "; persistUntil=-1", "base-10"),
        (FIGURE_2 + "; persistUntil=1e9", "base-10"),
        (FIGURE_2 + "; bare", "tag=value"),
        (FIGURE_2 + "; x=a b", "tag=value"),
        ("authority.example; accounturi=" + HASHED + "\x00", "control"),
        ("authority.example; accounturi=" + HASHED + "\x1b[2J", "control"),
        ("authority.example; accounturi=" + HASHED + "\u00e9", "non-ASCII"),
        ("authority.example; accounturi=" + HASHED + "; pad=" + "a" * 2000, "longer"),
        ("-bad-.example; accounturi=" + HASHED, "not a domain"),
        ("; accounturi=" + HASHED, "no issuer"),
    ],
)
def test_malformed_records(value: str, why: str) -> None:
    with pytest.raises(MalformedRecord, match=why):
        parse_record(value)


@pytest.mark.parametrize(
    ("accounturi", "why"),
    [
        ("https://other.example/account-hash/sha-256/" + "A" * 43, "accountHashPrefix"),
        (PREFIX + "md5/" + "A" * 43, "algorithm"),
        (PREFIX + "sha-256/" + "A" * 42, "43 characters"),
        (PREFIX + "sha-256/" + "A" * 42 + "=", "43 characters"),
        (ACCT, "accountHashPrefix"),  # the -01 form, a plain account URL
    ],
)
def test_accounturi_not_a_hashed_uri_is_malformed(accounturi: str, why: str) -> None:
    verdict = judge(["authority.example; accounturi=" + accounturi])
    assert verdict.record is None and verdict.malformed_only
    assert why in verdict.explain("_validation-persist.example.com")


def test_failures_say_which() -> None:
    other = PREFIX + "sha-256/" + account_hash("https://ca.example/acct/999", THUMB)
    v = judge(["authority.example; accounturi=" + other])
    assert v.failures[0][0] == Failure.OTHER_ACCOUNT
    assert "another account" in v.explain("n")
    v = judge([FIGURE_9])
    assert v.failures[0][0] == Failure.EXPIRED and "persistUntil" in v.explain("n")
    v = judge([FIGURE_2], wildcard=True)
    assert v.failures[0][0] == Failure.NO_WILDCARD and "policy=wildcard" in v.explain("n")
    v = judge([FIGURE_3_CA1])
    assert v.failures == () and "another CA (ca1.example)" in v.explain("n")
    assert "No TXT record" in judge([]).explain("_validation-persist.example.com")
    assert "skipped" in judge(["v=spf1 -all"]).explain("n")


def test_one_good_record_among_many_bad_ones() -> None:
    junk = ["\x07" * 10, "x" * 5000, FIGURE_3_CA1, FIGURE_9, "authority.example"]
    assert judge([*junk, FIGURE_8], wildcard=True).record is not None


def test_fifty_records_at_one_name_fail_clearly() -> None:
    values = [f"ca{i}.example; accounturi=https://ca{i}.example/x" for i in range(25)]
    values += [f"authority.example; accounturi={PREFIX}sha-256/{'B' * 43}"] * 25
    verdict = judge(values)
    assert verdict.record is None and len(verdict.failures) == 25
    assert "(and 22 more)" in verdict.explain("n")
    assert judge([*values, FIGURE_2]).record is not None


def test_account_label_example() -> None:
    # The example account of the dns-account-01 documentation (draft-03's construction).
    url = "https://example.com/acme/acct/ExampleAccount"
    assert dnsaccount.account_label(url) == "_ujmmovf2vn55tgye"
    assert (
        dnsaccount.record_name("*.example.org", url)
        == "_ujmmovf2vn55tgye._acme-challenge.example.org"
    )
    label = dnsaccount.account_label(ACCT)
    assert len(label) == 17 and label == label.lower() and label.startswith("_")
    assert dnsaccount.account_label(ACCT + "4") != label
    # the TXT value is dns-01's, unchanged (draft §4)
    assert dnsaccount.txt_value("tok.thumb") == dns01_txt_value("tok.thumb")
