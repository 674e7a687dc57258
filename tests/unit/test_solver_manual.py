"""The manual solver: certbot's hook environment, prompt text, and real hook scripts."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from acmekit.client.resources import Challenge
from acmekit.client.solvers.errors import HookError, SolverError
from acmekit.client.solvers.manual import ManualChallenge, ManualSolver, hook_env, prompt_text
from acmekit.protocol.challenges import dns01_txt_value
from acmekit.protocol.messages import ChallengeStatus, ChallengeType, Identifier, IdentifierType

TOKEN = "tok_" + "a" * 40
KEY_AUTH = f"{TOKEN}.thumbprint"


def challenge(kind: ChallengeType, token: str = TOKEN) -> Challenge:
    return Challenge("https://ca.test/chall/1", str(kind), ChallengeStatus.PENDING, token)


def ident(name: str) -> Identifier:
    return Identifier(IdentifierType.DNS, name)


def test_http01_env_has_token_and_key_authorization() -> None:
    item = ManualChallenge.of(ident("a.x.test"), challenge(ChallengeType.HTTP_01), KEY_AUTH)
    env = hook_env(item, 1, ["a.x.test", "b.x.test"])
    assert env == {
        "CERTBOT_DOMAIN": "a.x.test",
        "CERTBOT_VALIDATION": KEY_AUTH,
        "CERTBOT_TOKEN": TOKEN,
        "CERTBOT_REMAINING_CHALLENGES": "1",
        "CERTBOT_ALL_DOMAINS": "a.x.test,b.x.test",
    }


def test_dns01_env_has_txt_value_and_no_token() -> None:
    item = ManualChallenge.of(ident("x.test"), challenge(ChallengeType.DNS_01), KEY_AUTH)
    env = hook_env(item, 0, ["x.test"], auth_output="out\n")
    assert env["CERTBOT_VALIDATION"] == dns01_txt_value(KEY_AUTH)
    assert "CERTBOT_TOKEN" not in env
    assert env["CERTBOT_AUTH_OUTPUT"] == "out\n"


def test_wildcard_domain_is_its_base_name() -> None:
    item = ManualChallenge.of(ident("*.x.test"), challenge(ChallengeType.DNS_01), KEY_AUTH)
    assert item.domain == "x.test"


def test_prompt_text_for_http01_names_url_and_content() -> None:
    item = ManualChallenge.of(ident("a.x.test"), challenge(ChallengeType.HTTP_01), KEY_AUTH)
    text = prompt_text(item)
    assert f"http://a.x.test/.well-known/acme-challenge/{TOKEN}" in text
    assert KEY_AUTH in text


def test_prompt_text_for_dns01_names_record_and_value() -> None:
    item = ManualChallenge.of(ident("x.test"), challenge(ChallengeType.DNS_01), KEY_AUTH)
    text = prompt_text(item)
    assert "_acme-challenge.x.test." in text
    assert dns01_txt_value(KEY_AUTH) in text
    assert KEY_AUTH not in text


def test_tls_alpn_is_refused() -> None:
    with pytest.raises(SolverError, match="tls-alpn-01"):
        ManualChallenge.of(ident("x.test"), challenge(ChallengeType.TLS_ALPN_01), KEY_AUTH)


def recorder(log: Path, tag: str) -> str:
    """A hook that appends its CERTBOT_* environment, as JSON, to `log`."""
    code = (
        "import json, os, sys;"
        f"open(sys.argv[1], 'a').write(json.dumps(dict(tag={tag!r}, **{{k: v for k, v in"
        " os.environ.items() if k.startswith('CERTBOT_')})) + '\\n');"
        "print('auth-said-' + os.environ['CERTBOT_DOMAIN'])"
    )
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {shlex.quote(str(log))}"


async def test_hooks_run_in_order_with_certbot_environment(tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    solver = ManualSolver(recorder(log, "auth"), recorder(log, "cleanup"))
    names = ["a.x.test", "b.x.test"]
    tokens = [f"tok{i}_" + "b" * 30 for i in range(2)]
    for name, token in zip(names, tokens, strict=True):
        await solver.present(ident(name), challenge(ChallengeType.HTTP_01, token), f"{token}.t")
    await solver.wait()
    for name, token in zip(names, tokens, strict=True):
        await solver.cleanup(ident(name), challenge(ChallengeType.HTTP_01, token), f"{token}.t")
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["tag"], r["CERTBOT_DOMAIN"]) for r in runs] == [
        ("auth", "a.x.test"),
        ("auth", "b.x.test"),
        ("cleanup", "a.x.test"),
        ("cleanup", "b.x.test"),
    ]
    assert [r["CERTBOT_REMAINING_CHALLENGES"] for r in runs[:2]] == ["1", "0"]
    assert {r["CERTBOT_ALL_DOMAINS"] for r in runs} == {"a.x.test,b.x.test"}
    assert runs[1]["CERTBOT_TOKEN"] == tokens[1]
    assert runs[1]["CERTBOT_VALIDATION"] == f"{tokens[1]}.t"
    assert "CERTBOT_AUTH_OUTPUT" not in runs[0]
    # Stripped, as certbot passes it: no trailing newline in what the hook builds.
    assert runs[2]["CERTBOT_AUTH_OUTPUT"] == "auth-said-a.x.test"


async def test_a_name_and_its_wildcard_are_two_domains_in_all_domains(tmp_path: Path) -> None:
    """certbot's CERTBOT_ALL_DOMAINS is one domain per challenge: NAME and *.NAME are both
    challenged as NAME, so it is listed twice."""
    log = tmp_path / "hooks.log"
    solver = ManualSolver(recorder(log, "auth"), None)
    for name, token in (("x.test", "t1_" + "c" * 30), ("*.x.test", "t2_" + "d" * 30)):
        await solver.present(ident(name), challenge(ChallengeType.DNS_01, token), f"{token}.k")
    await solver.wait()
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["CERTBOT_DOMAIN"] for r in runs] == ["x.test", "x.test"]
    assert {r["CERTBOT_ALL_DOMAINS"] for r in runs} == {"x.test,x.test"}


async def test_failing_auth_hook_names_hook_and_status(tmp_path: Path) -> None:
    solver = ManualSolver("echo nope >&2; exit 3", None)
    await solver.present(ident("a.x.test"), challenge(ChallengeType.HTTP_01), KEY_AUTH)
    with pytest.raises(HookError, match=r"auth hook .*exited with status 3: nope") as info:
        await solver.wait()
    assert info.value.status == 3


async def test_failing_cleanup_hook_raises(tmp_path: Path) -> None:
    solver = ManualSolver("true", "exit 5")
    await solver.present(ident("a.x.test"), challenge(ChallengeType.DNS_01), KEY_AUTH)
    await solver.wait()
    with pytest.raises(HookError, match="cleanup hook 'exit 5' exited with status 5"):
        await solver.cleanup(ident("a.x.test"), challenge(ChallengeType.DNS_01), KEY_AUTH)


async def test_without_hooks_the_prompt_is_awaited_per_challenge() -> None:
    shown: list[str] = []

    async def prompt(text: str) -> None:
        shown.append(text)

    solver = ManualSolver(None, None, prompt=prompt)
    await solver.present(ident("x.test"), challenge(ChallengeType.DNS_01), KEY_AUTH)
    await solver.present(ident("*.x.test"), challenge(ChallengeType.DNS_01, "t2"), "t2.k")
    assert shown == []  # nothing is shown before the order flow waits
    await solver.wait()
    assert len(shown) == 2
    assert dns01_txt_value(KEY_AUTH) in shown[0]
    assert dns01_txt_value("t2.k") in shown[1]
    assert all("_acme-challenge.x.test." in text for text in shown)


async def test_cleanup_of_an_unperformed_challenge_runs_no_hook(tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    solver = ManualSolver(recorder(log, "auth"), recorder(log, "cleanup"))
    await solver.present(ident("a.x.test"), challenge(ChallengeType.HTTP_01), KEY_AUTH)
    await solver.cleanup(ident("a.x.test"), challenge(ChallengeType.HTTP_01), KEY_AUTH)
    await solver.wait()
    assert not log.exists()


def test_needs_a_hook_or_a_prompt() -> None:
    with pytest.raises(ValueError, match="auth hook or a prompt"):
        ManualSolver(None, None)
