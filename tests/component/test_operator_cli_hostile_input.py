"""The operator's commands over hostile or large inputs, on SQLite and PostgreSQL.

`accounts list --contact` finds every account whose contact holds the text, whatever
the contact's characters: the CA accepts non-ASCII addresses (an internationalized
mailbox), and the store keeps contacts as JSON text with them escaped (`\\u00fc`), so a
filter matched against that text alone found none of them; a limit counts accounts that
match, not rows the database's coarse pre-filter let through. Contacts are shown with
what a terminal acts on escaped; `--limit` past a 64-bit integer and an order list
naming more authorizations than a statement takes parameters are listed, not crashed on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from acmekit.cli.main import cli
from acmekit.protocol.messages import AccountStatus, Identifier, IdentifierType
from acmekit.server.config import ServerConfig
from acmekit.server.records import AccountRecord, OrderRecord
from acmekit.server.repos import inspect
from acmekit.server.run import Assembly
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme, new_key


def _list(config: ServerConfig, *args: str) -> list[list[str]]:
    argv = ["server", "accounts", "list", *args, "--state-dir", str(config.state_dir)]
    result = CliRunner().invoke(cli, [*argv, "--db", str(config.db)])
    assert result.exit_code == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


@pytest.mark.parametrize("page", [1000, 1])
async def test_contact_filter_finds_non_ascii_and_counts_matches(
    ca: Assembly,
    ca_config: ServerConfig,
    acme: RawAcme,
    flow: Flow,
    responder: Http01Responder,
    monkeypatch: pytest.MonkeyPatch,
    page: int,
) -> None:
    # Rows are read a page at a time: with pages of one row, every match is on a page
    # of its own, behind the false positives.
    monkeypatch.setattr(inspect, "_ACCOUNT_PAGE", page)
    await flow.account(contact=["mailto:u00@plain.test"])
    plain = flow.kid.rsplit("/", 1)[1]
    made = []
    # Newer accounts whose JSON text holds "u00" (an escape's digits) but whose
    # contacts do not: a pre-filter's false positives, ahead of the real match.
    for contact in ("mailto:jürgen@müller.test", "mailto:zoë@example.test"):
        other = Flow(acme, responder, key=new_key())
        await other.account(contact=[contact])
        made.append(other.kid.rsplit("/", 1)[1])
    jurgen = made[0]

    found = _list(ca_config, "--contact", "jürgen")
    assert [row[0] for row in found] == [jurgen]
    assert found[0][3] == "mailto:jürgen@müller.test"
    assert [row[0] for row in _list(ca_config, "--contact", "MÜLLER")] == [jurgen]
    assert [row[0] for row in _list(ca_config, "--contact", "u00", "--limit", "1")] == [plain]
    assert [row[0] for row in _list(ca_config, "--contact", "u00")] == [plain]


async def test_a_limit_past_a_bigint_lists_everything(
    ca: Assembly, ca_config: ServerConfig, flow: Flow
) -> None:
    """`--limit` is "at most this many": one past what the database's LIMIT holds (a
    64-bit integer) listed nothing, with a traceback on SQLite and, on PostgreSQL, an
    error that blamed the database URL."""
    await flow.account(contact=["mailto:many@limit.test"])
    account = flow.kid.rsplit("/", 1)[1]
    huge = str(2**64)
    assert [row[0] for row in _list(ca_config, "--limit", huge)] == [account]
    for args in (["certs", "list"], ["orders", "list", "--account", account]):
        argv = ["server", *args, "--limit", huge, "--state-dir", str(ca_config.state_dir)]
        result = CliRunner().invoke(cli, [*argv, "--db", str(ca_config.db)])
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.exit_code == 0, result.stderr


async def test_a_hostile_contact_is_shown_escaped(
    ca: Assembly, ca_config: ServerConfig, flow: Flow
) -> None:
    """A contact with characters a terminal or a line reader acts on (C1 controls such
    as CSI, U+0085 and U+2028 line breaks, a zero-width format character), as an account
    registered before the CA refused them holds: the operator's lines show them escaped,
    one line per account, with no control reaching the terminal."""
    hostile = "mailto:a\x9b2J\x85b\u2028c\u200bd@hostile.test"
    refused = await flow.account(contact=[hostile])
    assert (refused.status, refused.problem_type) == (400, "invalidContact")
    await flow.account(contact=["mailto:before@hostile.test"])
    account = flow.kid.rsplit("/", 1)[1]
    ca.store.accounts.update_account(account, contact=[hostile])
    argv = ["accounts", "list", "--state-dir", str(ca_config.state_dir)]
    listed = CliRunner().invoke(cli, ["server", *argv, "--db", str(ca_config.db)])
    assert listed.exit_code == 0, listed.stderr
    (line,) = listed.stdout.splitlines()  # str.splitlines breaks at U+0085 and U+2028 too
    assert line.replace("\t", "").isprintable() and line.count("\t") == 3
    assert line.split("\t")[3] == "mailto:a\\x9b2J\\x85b\\u2028c\\u200bd@hostile.test"
    argv = ["accounts", "show", account, "--state-dir", str(ca_config.state_dir)]
    shown = CliRunner().invoke(cli, ["server", *argv, "--db", str(ca_config.db)])
    assert shown.exit_code == 0, shown.stderr
    assert all(line.isprintable() for line in shown.stdout.splitlines())
    assert "contact: mailto:a\\x9b2J\\x85b\\u2028c\\u200bd@hostile.test" in shown.stdout
    # a search takes the contact as it is
    assert [row[0] for row in _list(ca_config, "--contact", "\x9b2J")] == [account]


async def test_orders_listed_whatever_their_authorizations_count(
    ca: Assembly, ca_config: ServerConfig
) -> None:
    """`orders list` reads the listed orders' authorizations to derive their status: in
    one statement with a parameter each, past PostgreSQL's 65,535 parameters (656
    orders of 100 names, the default max_identifiers, at `--limit 656`) it failed with
    a traceback. One order naming 70,000 authorizations stands for them here."""
    now = datetime.now(UTC)
    account = AccountRecord("many", "t" * 43, {"kty": "EC"}, (), AccountStatus.VALID, now)
    ca.store.accounts.add_account(account)
    name = Identifier(IdentifierType.DNS, "many.operator.test")
    ids = tuple(f"az{i}" for i in range(70_000))
    order = OrderRecord("o-many", "many", (name,), ids, now + timedelta(days=1), now)
    ca.store.orders.add_order(order, [])
    argv = ["server", "orders", "list", "--account", "many"]
    argv += ["--state-dir", str(ca_config.state_dir), "--db", str(ca_config.db)]
    result = CliRunner().invoke(cli, argv)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 0, result.stderr
    assert [line.split("\t")[:2] for line in result.stdout.splitlines()] == [
        ["o-many", "invalid"]  # its authorizations are gone: expired, so invalid
    ]
