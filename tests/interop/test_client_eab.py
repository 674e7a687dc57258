"""External Account Binding (RFC 8555 §7.3.4) against Pebble configured to require it."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client import Client, ExternalAccountBinding
from acmekit.protocol.messages import AccountStatus
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit_testkit.pebble import PebbleHandle, running_pebble
from acmekit_testkit.ports import free_port

pytestmark = pytest.mark.interop

HMAC_KEY = os.urandom(32)
HMAC_B64 = base64.urlsafe_b64encode(HMAC_KEY).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PebbleHandle]:
    tmp = tmp_path_factory.mktemp("eab")
    with running_pebble(
        tmp, http_port=free_port(), tls_port=free_port(), eab_keys={"kid-1": HMAC_B64}
    ) as handle:
        yield handle


def _client(pebble: PebbleHandle) -> Client:
    key = ec.generate_private_key(ec.SECP256R1())
    return Client(pebble.directory_url, key, ca_bundle=str(pebble.root_ca_path))


async def test_directory_says_eab_is_required(pebble: PebbleHandle) -> None:
    async with _client(pebble) as c:
        assert (await c.directory()).external_account_required


async def test_register_with_eab(pebble: PebbleHandle) -> None:
    async with _client(pebble) as c:
        eab = ExternalAccountBinding.from_base64url("kid-1", HMAC_B64)
        account = await c.register(contact=["mailto:eab@x.test"], eab=eab)
        assert account.status == AccountStatus.VALID
        assert repr(HMAC_KEY) not in repr(eab)  # the MAC key never shows in logs


async def test_register_without_eab_is_refused(pebble: PebbleHandle) -> None:
    async with _client(pebble) as c:
        with pytest.raises(AcmeError) as err:
            await c.register()
        assert err.value.problem.type == ProblemType.EXTERNAL_ACCOUNT_REQUIRED


async def test_register_with_a_wrong_mac_key_is_refused(pebble: PebbleHandle) -> None:
    async with _client(pebble) as c:
        with pytest.raises(AcmeError) as err:
            await c.register(eab=ExternalAccountBinding("kid-1", os.urandom(32)))
        assert err.value.problem.type in (ProblemType.UNAUTHORIZED, ProblemType.MALFORMED)
