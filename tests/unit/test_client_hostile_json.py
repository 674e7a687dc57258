"""A hostile server's deeply nested JSON is a ServerProtocolError for the client, not a
RecursionError escaping from the parser."""

from __future__ import annotations

import pytest

from acmekit.client.channel import json_object
from acmekit.client.errors import ServerProtocolError
from acmekit.client.transport import HttpResponse

DEEP = b"[" * 200_000 + b"]" * 200_000


@pytest.mark.parametrize("body", [DEEP, b'{"a": ' + DEEP + b"}"])
def test_deep_json_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ServerProtocolError, match="invalid JSON"):
        json_object(HttpResponse(200, (), body, "https://ca.test/dir"))
