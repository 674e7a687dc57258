"""The Merkle tree of RFC 6962 §2.1, over stored node hashes (no I/O here).

MTH({}) = SHA-256(""); a leaf is SHA-256(0x00 || d); an inner node SHA-256(0x01 || l || r),
where the left subtree holds the largest power of two of leaves smaller than the whole.

The log stores the hash of every *complete* subtree, addressed (level, index): the node
covering leaves [index * 2^level, (index + 1) * 2^level). Those never change once the tree
has grown past them, so any tree size's root and any proof is computed from O(log n) of
them: a range [a, b) that the RFC's recursion meets splits greedily into complete subtrees
of decreasing size (`decompose`), and its hash is their right fold (`fold`). The proof
functions here first list the ranges they need (`inclusion_ranges`, `consistency_ranges`),
so that the store fetches every node in one query, then hash (`Nodes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

Node = tuple[int, int]  # (level, index)
Range = tuple[int, int]  # leaves [start, end)

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): k of §2.1."""
    return 1 << ((n - 1).bit_length() - 1)


def decompose(start: int, end: int) -> list[Node]:
    """The complete subtrees that make up leaves [start, end), largest first. Valid for
    the ranges RFC 6962's recursion produces (start is a multiple of the next power of
    two at or above end - start)."""
    nodes: list[Node] = []
    while start < end:
        size = end - start
        level = size.bit_length() - 1  # largest power of two <= size
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of a range from its decomposition's hashes: MTH nests to the right."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """§2.1.1 PATH(m, D[n]): the ranges whose hashes make the audit path, leaf first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    out: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index - start < k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()
    return out


def consistency_ranges(first: int, second: int) -> list[Range]:
    """§2.1.2 PROOF(m, D[n]) = SUBPROOF(m, D[n], true): the ranges whose hashes prove
    that the tree of `first` leaves is a prefix of that of `second`."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    if first in (0, second):
        return []
    out: list[Range] = []
    start, end, m, whole = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not whole:
                out.append((start, end))
            break
        k = split_point(n)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start, m, whole = start + k, m - k, False
    out.reverse()
    return out


def nodes_for(ranges: Iterable[Range]) -> set[Node]:
    return {node for r in ranges for node in decompose(*r)}


class Nodes:
    """Range hashes from a map of fetched complete-subtree hashes."""

    def __init__(self, known: Mapping[Node, bytes]) -> None:
        self.known = known

    def range_hash(self, r: Range) -> bytes:
        return fold([self.known[node] for node in decompose(*r)])

    def hashes(self, ranges: Iterable[Range]) -> list[bytes]:
        return [self.range_hash(r) for r in ranges]


def root_from(get: Callable[[Iterable[Node]], Mapping[Node, bytes]], size: int) -> bytes:
    """MTH of the first `size` leaves, given a way to fetch complete-subtree hashes."""
    return Nodes(get(decompose(0, size))).range_hash((0, size))


def new_nodes(
    old_size: int, leaf_hashes: Sequence[bytes], edge: Mapping[Node, bytes]
) -> dict[Node, bytes]:
    """The complete subtrees that appending `leaf_hashes` to a tree of `old_size` leaves
    completes, level by level. `edge` holds the old tree's `right_edge` nodes, the only
    old nodes that a new one can have as its left child."""
    out: dict[Node, bytes] = {}
    new_size = old_size + len(leaf_hashes)
    for i, h in enumerate(leaf_hashes):
        out[(0, old_size + i)] = h
    level = 1
    while (new_size >> level) > (old_size >> level):  # equal here: equal above too
        for index in range(old_size >> level, new_size >> level):
            left, right = (level - 1, 2 * index), (level - 1, 2 * index + 1)
            out[(level, index)] = node_hash(out.get(left) or edge[left], out[right])
        level += 1
    return out


def right_edge(size: int) -> list[Node]:
    """The complete subtrees of a tree of `size` leaves that a later append can extend:
    its decomposition, which is also what `new_nodes` needs."""
    return decompose(0, size)


# ----- verification (what a monitor or a CA does with a proof) -----


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2, for a leaf hash."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> bool:
    """RFC 9162 §2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first root is the proof's start
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
