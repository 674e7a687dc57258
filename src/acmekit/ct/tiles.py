"""C2SP's static-ct-api read path, served from the same tree as the RFC 6962 API.

- `checkpoint`: the latest STH as a signed note (c2sp.org/tlog-checkpoint): origin line
  (the log URL without scheme or trailing slash), size, base64 root hash, and one
  signature line of type 0x05 (`RFC6962NoteSignature`: the STH's timestamp and its
  TreeHeadSignature), key ID = first 4 bytes of SHA-256(name || "\\n" || 0x05 || LogID).
- `tile/<L>/<N>[.p/<W>]`: 256 (or W) hashes of level 8*L of the tree, starting at node
  N*256; those are exactly the stored complete-subtree hashes (`ct_nodes`).
- `tile/data/<N>[.p/<W>]`: the `TileLeaf`s of entries N*256 ...: TimestampedEntry, the
  precertificate for precert entries, and the SHA-256 fingerprints of the chain.
- `issuer/<hex sha256>`: a chain certificate, DER.

Every SCT carries the `leaf_index` extension (the index is given when the entry is
stored, before its SCT is signed; see `acmekit.ct.store`). Difference from a Static CT
log: a partial tile is served at any width the tree already has.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import TYPE_CHECKING

from acmekit.protocol import ct
from acmekit.protocol.ct import Reader

if TYPE_CHECKING:
    from acmekit.ct.log import CtLog

Answer = tuple[int, str, bytes]
TILE_WIDTH = 256
# ASCII digits only (`\d` alone takes any script's), and bounded: a path's numbers
# never grow past what a tree can hold (2^63 entries: 7 groups), so that no request
# makes an integer of thousands of digits (Python refuses those with a ValueError).
_INDEX = r"((?:x[0-9]{3}/){0,6}[0-9]{3})"
# Matched with `fullmatch`, never `match` and `$`: `$` also matches before a final
# newline, and the listener decodes `%0A` into the path, so `tile/0/000%0A` was served
# as `tile/0/000` (a second name for an immutable resource, for any cache in front).
_TILE = re.compile(rf"/tile/([0-5])/{_INDEX}(?:\.p/([0-9]{{1,3}}))?")
_DATA = re.compile(rf"/tile/data/{_INDEX}(?:\.p/([0-9]{{1,3}}))?")
_ISSUER = re.compile(r"/issuer/([0-9a-f]{64})")
NOTE_SIG_RFC6962 = 0x05


def tile_index_path(n: int) -> str:
    """1234067 -> x001/x234/067."""
    parts = []
    while True:
        parts.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    parts.reverse()
    return "/".join([f"x{p}" for p in parts[:-1]] + [parts[-1]])


def _parse_index(text: str) -> int | None:
    """The tile index a path names, or None for a name that is not the index's own:
    leading `x000/` groups (`x000/000` for `000`) would make second names of an
    immutable tile, each kept apart by a cache in front (static-ct-api: "tile/0/x001/
    x234/067" is the only name of tile 1234067)."""
    n = int(text.replace("x", "").replace("/", ""))
    return n if text == tile_index_path(n) else None


def _width(text: str | None) -> int | None:
    if text is None:
        return TILE_WIDTH
    if text.startswith("0") or not 1 <= int(text) <= 255:
        return None
    return int(text)


def cache_control(path: str, status: int) -> str:
    """Tiles, data tiles and issuers never change once served (a partial tile is named by
    its width); the checkpoint does, so it is not kept beyond a few seconds; a 404 may
    turn into a tile, so it is not kept at all."""
    if status != 200:
        return "no-store"
    if path == "/checkpoint":
        return "max-age=2"
    return "public, max-age=604800, immutable"


def note_key_id(name: str, log_id: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([NOTE_SIG_RFC6962]) + log_id).digest()[:4]


def checkpoint_text(origin: str, sth: ct.SignedTreeHead, log_id: bytes) -> bytes:
    body = f"{origin}\n{sth.head.tree_size}\n{base64.b64encode(sth.head.root_hash).decode()}\n"
    sig = sth.head.timestamp.to_bytes(8, "big") + sth.signature.encode()
    line = base64.b64encode(note_key_id(origin, log_id) + sig).decode()
    return f"{body}\n\u2014 {origin} {line}\n".encode()


def tile_leaf(leaf_input: bytes, extra_data: bytes) -> bytes:
    """One entry of a data tile, from what the RFC 6962 API serves for it."""
    entry = ct.parse_merkle_tree_leaf(leaf_input)
    r = Reader(extra_data)
    precert = b""
    if entry.entry.entry_type is ct.LogEntryType.PRECERT_ENTRY:
        precert = ct.opaque(r.opaque(3), 3)
    chain = Reader(r.opaque(3))
    r.end()
    fingerprints = b""
    while chain.pos < len(chain.data):
        fingerprints += hashlib.sha256(chain.opaque(3)).digest()
    return entry.encode() + precert + ct.opaque(fingerprints, 2)


class TileReader:
    def __init__(self, ctlog: CtLog, origin: str = "") -> None:
        self.log = ctlog
        self.origin = origin

    @staticmethod
    def names(path: str) -> bool:
        """Whether `path` is shaped as one of the tiled API's resources (read nothing)."""
        return path == "/checkpoint" or any(
            p.fullmatch(path) is not None for p in (_TILE, _DATA, _ISSUER)
        )

    def answer(self, path: str) -> Answer | None:
        """The resource at `path`, a 404 for a tile the tree does not have, or None for
        a path that is not the tiled API's."""
        if path == "/checkpoint":
            sth = self.log.sth()
            return (
                200,
                "text/plain; charset=utf-8",
                checkpoint_text(self.origin, sth, self.log.log_id),
            )
        if m := _TILE.fullmatch(path):
            if (n := _parse_index(m[2])) is None:
                return _missing("not a tile's name")
            return self._tile(int(m[1]), n, _width(m[3]))
        if m := _DATA.fullmatch(path):
            if (n := _parse_index(m[1])) is None:
                return _missing("not a data tile's name")
            return self._data(n, _width(m[2]))
        if m := _ISSUER.fullmatch(path):
            der = self.log.store.issuer(bytes.fromhex(m[1]))
            if der is None:
                return _missing("no such issuer")
            return 200, "application/pkix-cert", der
        return None

    def _available(self, level: int, n: int, width: int | None) -> int | None:
        """How many nodes of this tile the tree has, if it has the `width` asked for."""
        if width is None:
            return None
        size = self.log.sth().head.tree_size
        complete = size >> (8 * level)  # complete nodes at this tree level
        have = min(TILE_WIDTH, complete - n * TILE_WIDTH)
        return width if have >= width else None

    def _tile(self, level: int, n: int, width: int | None) -> Answer:
        width = self._available(level, n, width)
        if width is None:
            return _missing("the tree has no such tile")
        start = n * TILE_WIDTH
        found = self.log.store.nodes((8 * level, start + i) for i in range(width))
        body = b"".join(found[(8 * level, start + i)] for i in range(width))
        return 200, "application/octet-stream", body

    def _data(self, n: int, width: int | None) -> Answer:
        width = self._available(0, n, width)
        if width is None:
            return _missing("the tree has no such data tile")
        start = n * TILE_WIDTH
        leaves = self.log.store.leaves(start, start + width - 1)
        body = b"".join(tile_leaf(e.leaf_input, e.extra_data) for e in leaves)
        return 200, "application/octet-stream", body


def _missing(text: str) -> Answer:
    return (
        404,
        "application/json",
        b'{"error": "not_found", "error_message": "%s"}' % (text.encode()),
    )
