"""A CA that lies in its answers: an ASGI app in front of a real one that rewrites its
JSON answers on the way out, for tests of what a client takes from a hostile CA."""

from __future__ import annotations

import contextlib
import json
from typing import Any

Message = dict[str, Any]


class RewritingCa:
    """An ASGI app in front of `inner` that sets `field` in every JSON object of its
    answers (the directory's meta, each challenge, ...) to `value`."""

    def __init__(self, inner: Any, field: str, value: Any) -> None:
        self.inner, self.field, self.value = inner, field, value

    def _rewrite(self, doc: Any) -> Any:
        if isinstance(doc, dict):
            return {k: self.value if k == self.field else self._rewrite(v) for k, v in doc.items()}
        if isinstance(doc, list):
            return [self._rewrite(v) for v in doc]
        return doc

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        start: Message = {}
        body = bytearray()

        async def hold(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            data = bytes(body)
            with contextlib.suppress(ValueError):  # not JSON (a certificate): as it is
                data = json.dumps(self._rewrite(json.loads(data))).encode()
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(data)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": data})

        await self.inner(scope, receive, hold)
