"""An installation interrupted after its edits (Ctrl-C, a cancelled task) while nginx
checks them puts every file back, as a refused one does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from acmekit.certbot.nginx.control import NginxControl
from acmekit.certbot.nginx.installer import Installation, NginxInstaller
from acmekit_testkit.nginx_site import NginxSite, running_nginx_site
from acmekit_testkit.ports import free_port

pytestmark = pytest.mark.interop


@pytest.fixture
def site(tmp_path: Path) -> Iterator[NginxSite]:
    with running_nginx_site(tmp_path / "nginx") as running:
        yield running


@dataclass(frozen=True)
class InterruptedOnSecondTest(NginxControl):
    """nginx itself, but the configuration test after the edit is where the user's
    Ctrl-C (or the caller's cancellation) lands."""

    calls: list[int] | None = None

    async def test(self) -> None:
        assert self.calls is not None
        self.calls.append(1)
        if len(self.calls) == 2:
            raise asyncio.CancelledError
        await super().test()


async def test_an_interrupted_installation_leaves_every_file_as_it_was(
    site: NginxSite, tmp_path: Path
) -> None:
    before = site.snapshot()
    live = tmp_path / "live"
    live.mkdir()
    chain, key = live / "fullchain.pem", live / "privkey.pem"
    chain.write_text("unused: interrupted before nginx would load it\n")
    key.write_text("unused\n")
    control = InterruptedOnSecondTest(site.server_root, "nginx", 0.1, [])
    inst = Installation(
        ["a.nginx.test", "brand-new.nginx.test"], chain, key, free_port(), site.http_port
    )
    with pytest.raises(asyncio.CancelledError):
        await NginxInstaller(control, tmp_path / "work").install(inst)
    assert site.snapshot() == before
    assert not list((tmp_path / "work" / "backups").iterdir())
