"""A hostile CA must not get directives into nginx's configuration through the
identifier (a `server_name`) or the key authorization (a quoted `return` string)."""

from __future__ import annotations

from pathlib import Path

import pytest

from acmekit.certbot.nginx.authenticator import NginxSolver
from acmekit.certbot.nginx.control import NginxControl
from acmekit.client.resources import Challenge
from acmekit.client.solvers.errors import SolverError
from acmekit.protocol.messages import ChallengeStatus, Identifier, IdentifierType

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _solver(tmp_path: Path) -> NginxSolver:
    return NginxSolver(NginxControl(tmp_path / "nginx", "nginx", 0), tmp_path / "work", 80)


def _chall(token: str) -> Challenge:
    return Challenge("https://ca.test/chall/1", "http-01", ChallengeStatus.PENDING, token)


@pytest.mark.parametrize(
    "identifier",
    [
        Identifier(IdentifierType.DNS, "a.test; location / { return 200 owned; }"),
        Identifier(IdentifierType.DNS, "a.test\r\nX-Injected: 1"),
        Identifier(IdentifierType.DNS, "a.test;include /etc/shadow"),
        Identifier(IdentifierType.DNS, "*.a.test"),
        Identifier(IdentifierType.DNS, "a.test}"),
        Identifier(IdentifierType.IP, "127.0.0.1; x"),
    ],
)
async def test_a_crafted_identifier_is_refused(tmp_path: Path, identifier: Identifier) -> None:
    with pytest.raises(SolverError, match="malformed identifier"):
        await _solver(tmp_path).present(identifier, _chall(TOKEN), f"{TOKEN}.{THUMBPRINT}")


@pytest.mark.parametrize(
    "key_authorization",
    [
        f'{TOKEN}.x"; }} location / {{ return 200 "owned',
        f"{TOKEN}.{THUMBPRINT}\\",
        f"{TOKEN}.{THUMBPRINT}\n",
        f"{TOKEN} .{THUMBPRINT}",
        f"{TOKEN}.{THUMBPRINT}.x",
        TOKEN,
    ],
)
async def test_a_crafted_key_authorization_is_refused(
    tmp_path: Path, key_authorization: str
) -> None:
    identifier = Identifier(IdentifierType.DNS, "a.test")
    with pytest.raises(SolverError, match="malformed key authorization"):
        await _solver(tmp_path).present(identifier, _chall(TOKEN), key_authorization)


@pytest.mark.parametrize(
    "identifier",
    [
        Identifier(IdentifierType.DNS, "www.example.test"),
        Identifier(IdentifierType.IP, "192.0.2.1"),
        Identifier(IdentifierType.IP, "2001:db8::1"),
    ],
)
async def test_wellformed_answers_are_accepted(tmp_path: Path, identifier: Identifier) -> None:
    solver = _solver(tmp_path)
    await solver.present(identifier, _chall(TOKEN), f"{TOKEN}.{THUMBPRINT}")
    assert solver._answers.get(TOKEN) is not None


@pytest.mark.parametrize(
    "name",
    [
        "a.test;include /etc/shadow",
        "a.test\n\tlocation / { alias /etc/; }",
        "a.test}",
        "a b.test",
        "::FFFF:127.0.0.1",
    ],
)
async def test_the_installer_refuses_a_crafted_certificate_name(tmp_path: Path, name: str) -> None:
    """The installer's names are the certificate's, which the CA wrote: none may carry
    text into a `server_name` line. Refused before nginx or its files are touched."""
    from acmekit.certbot.nginx.installer import Installation, InstallError, NginxInstaller

    root = tmp_path / "nginx"
    root.mkdir()
    (root / "nginx.conf").write_text("events {}\nhttp {}\n")
    installer = NginxInstaller(NginxControl(root, "nginx", 0), tmp_path / "work")
    inst = Installation(["ok.test", name], tmp_path / "fullchain.pem", tmp_path / "privkey.pem")
    with pytest.raises(InstallError, match="malformed name"):
        await installer.install(inst)
    assert (root / "nginx.conf").read_text() == "events {}\nhttp {}\n"


def test_wellformed_certificate_names_are_installable() -> None:
    from acmekit.certbot.nginx.installer import installable_name

    for name in ("a.test", "*.a.test", "192.0.2.1", "2001:db8::1", "xn--bcher-kva.test"):
        assert installable_name(name), name
