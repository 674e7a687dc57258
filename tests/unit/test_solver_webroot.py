"""The webroot solver: files and modes as certbot leaves them, and a clean webroot after."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from acmekit.client.resources import Challenge
from acmekit.client.solvers.errors import WebrootError
from acmekit.client.solvers.webroot import WebrootSolver
from acmekit.protocol.messages import ChallengeStatus, ChallengeType, Identifier, IdentifierType

TOKENS = ["t1_" + "a" * 40, "t2_" + "b" * 40]


def challenge(token: str) -> Challenge:
    return Challenge(
        "https://ca.test/c", str(ChallengeType.HTTP_01), ChallengeStatus.PENDING, token
    )


def ident(name: str) -> Identifier:
    return Identifier(IdentifierType.DNS, name)


def entries(path: Path) -> list[Path]:
    return list(path.iterdir())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_writes_files_with_certbot_modes_and_removes_what_it_made(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        solver = WebrootSolver({"a.x.test": tmp_path})
        await solver.present(ident("a.x.test"), challenge(TOKENS[0]), f"{TOKENS[0]}.k")
        await solver.present(ident("A.x.test"), challenge(TOKENS[1]), f"{TOKENS[1]}.k")
    finally:
        os.umask(old)
    well_known = tmp_path / ".well-known"
    files = [well_known / "acme-challenge" / t for t in TOKENS]
    assert files[0].read_text() == f"{TOKENS[0]}.k"
    assert [mode(well_known), mode(well_known / "acme-challenge")] == [0o755, 0o755]
    assert [mode(f) for f in files] == [0o644, 0o644]
    await solver.cleanup(ident("a.x.test"), challenge(TOKENS[0]), f"{TOKENS[0]}.k")
    assert not files[0].exists()
    assert files[1].exists()
    await solver.cleanup(ident("a.x.test"), challenge(TOKENS[1]), f"{TOKENS[1]}.k")
    assert entries(tmp_path) == []


async def test_existing_directories_and_other_files_stay(tmp_path: Path) -> None:
    challenge_dir = tmp_path / ".well-known" / "acme-challenge"
    challenge_dir.mkdir(parents=True)
    (tmp_path / ".well-known" / "security.txt").write_text("contact")
    solver = WebrootSolver({}, default_root=tmp_path)
    await solver.present(ident("b.x.test"), challenge(TOKENS[0]), "k")
    await solver.cleanup(ident("b.x.test"), challenge(TOKENS[0]), "k")
    assert challenge_dir.is_dir()
    assert entries(challenge_dir) == []


async def test_each_name_uses_its_own_root(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    solver = WebrootSolver({"a.x.test": a}, default_root=b)
    await solver.present(ident("a.x.test"), challenge(TOKENS[0]), "ka")
    await solver.present(ident("c.x.test"), challenge(TOKENS[1]), "kc")
    assert (a / ".well-known/acme-challenge" / TOKENS[0]).read_text() == "ka"
    assert (b / ".well-known/acme-challenge" / TOKENS[1]).read_text() == "kc"


async def test_a_name_without_root_is_a_clear_error(tmp_path: Path) -> None:
    solver = WebrootSolver({"a.x.test": tmp_path})
    with pytest.raises(WebrootError, match=r"no webroot for b\.x\.test"):
        await solver.present(ident("b.x.test"), challenge(TOKENS[0]), "k")


async def test_missing_root_directory_is_a_clear_error(tmp_path: Path) -> None:
    solver = WebrootSolver({}, default_root=tmp_path / "absent")
    with pytest.raises(WebrootError, match="is not a directory"):
        await solver.present(ident("b.x.test"), challenge(TOKENS[0]), "k")


async def test_a_token_that_would_escape_the_root_is_refused(tmp_path: Path) -> None:
    solver = WebrootSolver({}, default_root=tmp_path)
    with pytest.raises(WebrootError, match="malformed token"):
        await solver.present(ident("b.x.test"), challenge("../../etc/passwd" + "a" * 20), "k")
