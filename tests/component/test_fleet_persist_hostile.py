"""The fleet against a CA that offers hostile dns-persist-01 issuer domain names (draft-
ietf-acme-dns-persist-02 §3.1): our CA in-process, its `issuerDomainNames` rewritten on
the way out. The fleet shows customers no record made from such a name (it would carry
parameters of the CA's making), and one kept from before the names were checked is not
shown either; a well-formed name gives the record as before."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from acmekit.client import Client
from acmekit.client.transport import AsgiTransport
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.persist import SETTING, records_for, remember, templates
from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import new_key
from acmekit_testkit.hostile_ca import RewritingCa

DIRECTORY = "https://ca.test/directory"


@pytest.fixture
async def pca(ca_config: ServerConfig) -> AsyncIterator[Assembly]:
    config = replace(
        ca_config,
        dns_persist_01=True,
        caa_identities=("ca.persist.test",),
        issuer_domain_names=("ca.persist.test",),
    )
    assembly = assemble(config)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    return Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")


async def _remember(pca: Assembly, inventory: Inventory, names: list[Any]) -> None:
    app = RewritingCa(pca.app, "issuerDomainNames", names)
    async with Client(DIRECTORY, new_key(), transport=AsgiTransport(app)) as client:
        await client.register()
        await remember(client, "ca", inventory)


@pytest.mark.parametrize(
    "names",
    [["ca.persist.test; policy=wildcard"], ["ca.persist.test\n"], ["CA.persist.test"],
     ["ca.persist.test", "x.test accounturi=y"]],
)  # fmt: skip
async def test_no_record_from_a_hostile_name(
    pca: Assembly, inventory: Inventory, names: list[Any]
) -> None:
    await _remember(pca, inventory, names)
    assert templates(inventory) == {}
    assert records_for(["a.example"], templates(inventory), False) == []


async def test_a_well_formed_name_gives_the_record(pca: Assembly, inventory: Inventory) -> None:
    await _remember(pca, inventory, ["ca.persist.test"])
    (record,) = records_for(["a.example"], templates(inventory), False)
    assert record["value"].startswith("ca.persist.test; accounturi=")


async def test_a_kept_hostile_name_is_not_shown(pca: Assembly, inventory: Inventory) -> None:
    await _remember(pca, inventory, ["ca.persist.test"])
    kept = templates(inventory)
    kept["old"] = {**kept["ca"], "issuer": "ca.persist.test; policy=wildcard"}
    inventory.settings.store(SETTING, json.dumps(kept))
    shown = records_for(["a.example"], templates(inventory), False)
    assert [r["ca"] for r in shown] == ["ca"]
