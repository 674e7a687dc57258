"""The log's HTTP face (RFC 6962 §4): a bare ASGI app, as the CA's (docs/decisions.md).

Every answer is JSON. A request the log cannot take gets a 4xx whose body names the
problem, `{"error": CODE, "error_message": TEXT}`; a database outage 503 with Retry-After;
nothing a client sends produces a 5xx or a traceback. Bodies are read up to MAX_BODY
bytes; a larger one is refused with 413 before it is read.

Submissions are checked on the event loop and written by the log's group commit, whose
transactions (with the SCT signatures and the commit's sync) run on the store's writer
thread, one hop a batch, so that the loop answers other requests meanwhile; reads query
the database on the app's read threads (`DaemonThreads`: daemon threads, so that a read
stuck in the database does not hold a stopping process).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qs

from acmekit.ct.log import BadRequest, CtLog, CtRequestError, DaemonThreads
from acmekit.ct.tiles import TileReader, cache_control
from acmekit.database import UNAVAILABLE
from acmekit.protocol.ct import CtError, b64, unb64

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PREFIX = "/ct/v1/"
MAX_BODY = 512 * 1024  # ten certificates of a generous size, base64'd
DRAIN_LIMIT = 64 * 1024 * 1024
# as many read threads as the loop's default executor had (Python 3.8 on)
READ_THREADS = min(32, (os.cpu_count() or 1) + 4)


class PayloadTooLarge(CtRequestError):
    status = 413
    code = "payload_too_large"


class MethodNotAllowed(CtRequestError):
    """RFC 9110 §15.5.6: a 405 MUST carry Allow, the methods the resource takes."""

    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allow: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allow = allow


READS = ("GET", "HEAD")
WRITES = ("POST",)


Answer = tuple[int, str, bytes]  # status, content type, body


def _json(doc: Any, status: int = 200) -> Answer:
    return status, "application/json", json.dumps(doc).encode()


class CtApp:
    def __init__(self, ctlog: CtLog, tiles: TileReader | None = None) -> None:
        self.log = ctlog
        self.tiles = tiles
        self.reads = DaemonThreads(READ_THREADS, "ct-read")
        self.get_routes: dict[str, Callable[[dict[str, list[str]]], Any]] = {
            "get-sth-consistency": self.get_sth_consistency,
            "get-proof-by-hash": self.get_proof_by_hash,
            "get-entries": self.get_entries,
            "get-roots": self.get_roots,
            "get-entry-and-proof": self.get_entry_and_proof,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        extra: list[tuple[bytes, bytes]] = []
        path = _route_path(scope)
        tiled = self.tiles is not None and not path.startswith(PREFIX)
        try:
            status, ctype, body = await self._answer(path, scope, receive)
            if tiled:
                extra = [(b"cache-control", cache_control(path, status).encode())]
        except CtRequestError as exc:
            status, ctype, body = _json({"error": exc.code, "error_message": str(exc)}, exc.status)
            extra = _error_headers(exc)
            if tiled:  # a 405 is cacheable by default (RFC 9110 §15.5.6)
                extra.append((b"cache-control", cache_control(path, status).encode()))
        except UNAVAILABLE:
            log.warning("database unavailable", exc_info=True)
            doc = {"error": "unavailable", "error_message": "the database is unavailable"}
            status, ctype, body = _json(doc, 503)
            extra = [(b"retry-after", b"2")]
        except Exception:
            log.exception("unexpected error answering %s", scope.get("path"))
            doc = {"error": "internal", "error_message": "internal error"}
            status, ctype, body = _json(doc, 500)
            extra = []
        headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, path: str, scope: Scope, receive: Receive) -> Answer:
        method: str = scope["method"]
        if path.startswith(PREFIX):
            name = path.removeprefix(PREFIX)
            if name in ("add-chain", "add-pre-chain"):
                _allow(name, method, WRITES)
                body = await _read_body(scope, receive)
                ders = self.chain_of(body)
                body = await self.log.add_chain_body_async(ders, name == "add-pre-chain")
                return 200, "application/json", body
            if name == "get-sth":
                _allow(name, method, READS)
                return await self.get_sth()
            handler = self.get_routes.get(name)
            if handler is not None:
                _allow(name, method, READS)
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                return _json(await self._read(handler, query))
        if self.tiles is not None and self.tiles.names(path):
            _allow(path, method, READS)
            if scope.get("query_string"):
                # The static-ct-api resources are named by their path alone (tiles are
                # immutable): served with a query, any query would be another name for
                # the same resource, kept apart by each cache in front.
                raise BadRequest(f"{path} takes no query string")
            found = await self._read(self.tiles.answer, path)
            if found is not None:
                return found
        return _json({"error": "not_found", "error_message": f"no such endpoint {path}"}, 404)

    # ----- §4.1, §4.2 -----

    def chain_of(self, body: bytes) -> list[bytes]:
        """The DER certificates of an add-(pre-)chain body (§4.1)."""
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not JSON: {exc}") from None
        except RecursionError:  # json.loads recurses once per `[` or `{`
            raise BadRequest("the body is nested too deep") from None
        chain = doc.get("chain") if isinstance(doc, dict) else None
        if not isinstance(chain, list):
            raise BadRequest('the body must be {"chain": [base64 DER, ...]}')
        try:
            return [unb64(c) for c in chain]
        except CtError as exc:
            raise BadRequest(f"chain: {exc}") from None

    # ----- §4.3-§4.8 -----

    async def get_sth(self) -> Answer:
        """§4.3 from memory: the head the sequencer loop last read (or, when that is
        older than two of its passes, the stored one, read now)."""
        body = self.log.sth_answer()
        if body is None:
            body = await self._read(self.log.refresh_head)
        return 200, "application/json", body

    async def _read(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`fn(*args)` on a read thread, awaited."""
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.reads, call)

    def get_sth_consistency(self, query: dict[str, list[str]]) -> dict[str, Any]:
        first, second = _int(query, "first"), _int(query, "second")
        return {"consistency": [b64(h) for h in self.log.consistency(first, second)]}

    def get_proof_by_hash(self, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            leaf_hash = unb64(_one(query, "hash"))
        except CtError as exc:
            raise BadRequest(f"hash: {exc}") from None
        if len(leaf_hash) != 32:
            raise BadRequest("hash must be a 32-byte SHA-256")
        index, path = self.log.proof_by_hash(leaf_hash, _int(query, "tree_size"))
        return {"leaf_index": index, "audit_path": [b64(h) for h in path]}

    def get_entries(self, query: dict[str, list[str]]) -> dict[str, Any]:
        leaves = self.log.entries(_int(query, "start"), _int(query, "end"))
        return {
            "entries": [
                {"leaf_input": b64(e.leaf_input), "extra_data": b64(e.extra_data)} for e in leaves
            ]
        }

    def get_roots(self, _query: dict[str, list[str]]) -> dict[str, Any]:
        return {"certificates": [b64(der) for der in self.log.roots]}

    def get_entry_and_proof(self, query: dict[str, list[str]]) -> dict[str, Any]:
        leaf, path = self.log.entry_and_proof(_int(query, "leaf_index"), _int(query, "tree_size"))
        return {
            "leaf_input": b64(leaf.leaf_input),
            "extra_data": b64(leaf.extra_data),
            "audit_path": [b64(h) for h in path],
        }


def _allow(name: str, method: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        raise MethodNotAllowed(f"{name} takes {' or '.join(allowed)}", allowed)


def _error_headers(exc: CtRequestError) -> list[tuple[bytes, bytes]]:
    if isinstance(exc, MethodNotAllowed):
        return [(b"allow", ", ".join(exc.allow).encode())]
    return []


def _route_path(scope: Scope) -> str:
    """The path as the client sent it, escapes and all. The listener decodes `path`, so
    routing on it gave resources second names: `/tile%2Fdata/000`, `/tile/data/000%2Ep/1`
    and `/ct%2Fv1/get-sth` were served, the tiles with `immutable` caching, each kept
    apart by a cache in front. No name of the log has a `%` in it, so a path with an
    escape is not found."""
    raw: bytes | None = scope.get("raw_path")
    return scope["path"] if raw is None else raw.decode("latin-1")


def _one(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    if not values:
        raise BadRequest(f"missing parameter {name}")
    if len(values) > 1:
        raise BadRequest(f"parameter {name} given more than once")
    return values[0]


def _int(query: dict[str, list[str]], name: str) -> int:
    text = _one(query, name)
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise BadRequest(f"parameter {name} must be a non-negative integer, not {text[:20]!r}")
    return int(text)


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    """The body, up to MAX_BODY bytes. A larger one is read to its end (up to
    DRAIN_LIMIT) and dropped before the 413, so that the client, still sending, gets the
    answer instead of a reset connection."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY:
            chunks.append(chunk)
        if not message.get("more_body", False) or size > DRAIN_LIMIT:
            break
    if size > MAX_BODY:
        raise PayloadTooLarge(f"the body is larger than {MAX_BODY} bytes")
    return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
