"""RFC 6962 §2.1 Merkle tree: roots, audit paths and consistency proofs against the
published test vectors (the reference implementations' leaves and hashes), and against
a direct recursive reading of the RFC for larger trees."""

from __future__ import annotations

import random

import pytest

from acmekit.ct import merkle

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [
    (0, 1, []),
    (0, 2, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"]),
    (1, 2, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


class Tree:
    """The stored-node tree as the log keeps it, grown in batches, in memory."""

    def __init__(self) -> None:
        self.known: dict[merkle.Node, bytes] = {}
        self.size = 0

    def append(self, data: list[bytes]) -> None:
        edge = {n: self.known[n] for n in merkle.right_edge(self.size)}
        hashes = [merkle.leaf_hash(d) for d in data]
        self.known.update(merkle.new_nodes(self.size, hashes, edge))
        self.size += len(data)

    def root(self, size: int) -> bytes:
        return merkle.root_from(lambda nodes: {n: self.known[n] for n in nodes}, size)

    def hashes(self, ranges: list[merkle.Range]) -> list[bytes]:
        return merkle.Nodes(self.known).hashes(ranges)


def mth(data: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, read directly."""
    if not data:
        return merkle.EMPTY_ROOT
    if len(data) == 1:
        return merkle.leaf_hash(data[0])
    k = merkle.split_point(len(data))
    return merkle.node_hash(mth(data[:k]), mth(data[k:]))


def path(m: int, data: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH."""
    if len(data) <= 1:
        return []
    k = merkle.split_point(len(data))
    if m < k:
        return [*path(m, data[:k]), mth(data[k:])]
    return [*path(m - k, data[k:]), mth(data[:k])]


def subproof(m: int, data: list[bytes], whole: bool) -> list[bytes]:
    """RFC 6962 §2.1.2 SUBPROOF."""
    n = len(data)
    if m == n:
        return [] if whole else [mth(data)]
    k = merkle.split_point(n)
    if m <= k:
        return [*subproof(m, data[:k], whole), mth(data[k:])]
    return [*subproof(m - k, data[k:], False), mth(data[:k])]


@pytest.fixture(scope="module")
def tree() -> Tree:
    t = Tree()
    t.append(LEAVES[:3])
    t.append(LEAVES[3:])
    return t


def test_roots_match_the_vectors_at_every_size(tree: Tree) -> None:
    assert [tree.root(n).hex() for n in range(9)] == ROOTS


@pytest.mark.parametrize(("index", "size", "want"), INCLUSION)
def test_audit_paths_match_the_vectors(tree: Tree, index: int, size: int, want: list[str]) -> None:
    proof = tree.hashes(merkle.inclusion_ranges(index, size))
    assert [h.hex() for h in proof] == want
    leaf = merkle.leaf_hash(LEAVES[index])
    assert merkle.verify_inclusion(leaf, index, size, proof, bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("first", "second", "want"), CONSISTENCY)
def test_consistency_proofs_match_the_vectors(
    tree: Tree, first: int, second: int, want: list[str]
) -> None:
    proof = tree.hashes(merkle.consistency_ranges(first, second))
    assert [h.hex() for h in proof] == want
    roots = bytes.fromhex(ROOTS[first]), bytes.fromhex(ROOTS[second])
    assert merkle.verify_consistency(first, second, proof, *roots)


def test_every_proof_of_a_grown_tree_is_the_rfcs() -> None:
    data = [str(i).encode() for i in range(300)]
    t = Tree()
    rng = random.Random(6962)
    while t.size < len(data):
        t.append(data[t.size : t.size + rng.randint(1, 40)])
    for size in (1, 2, 3, 7, 64, 65, 255, 256, 257, 300):
        assert t.root(size) == mth(data[:size])
        for index in {0, size // 3, size - 1}:
            proof = t.hashes(merkle.inclusion_ranges(index, size))
            assert proof == path(index, data[:size])
            assert merkle.verify_inclusion(
                merkle.leaf_hash(data[index]), index, size, proof, t.root(size)
            )
        for first in {1, size // 2 or 1, size}:
            proof = t.hashes(merkle.consistency_ranges(first, size))
            assert proof == (subproof(first, data[:size], True) if first < size else [])
            assert merkle.verify_consistency(first, size, proof, t.root(first), t.root(size))


def test_wrong_proofs_do_not_verify(tree: Tree) -> None:
    proof = tree.hashes(merkle.inclusion_ranges(5, 8))
    root = bytes.fromhex(ROOTS[8])
    leaf = merkle.leaf_hash(LEAVES[5])
    assert not merkle.verify_inclusion(leaf, 4, 8, proof, root)
    assert not merkle.verify_inclusion(leaf, 5, 6, proof, root)
    assert not merkle.verify_inclusion(leaf, 5, 8, proof[:-1], root)
    assert not merkle.verify_inclusion(merkle.leaf_hash(b"x"), 5, 8, proof, root)
    cproof = tree.hashes(merkle.consistency_ranges(6, 8))
    r6, r8 = bytes.fromhex(ROOTS[6]), bytes.fromhex(ROOTS[8])
    assert not merkle.verify_consistency(5, 8, cproof, r6, r8)
    assert not merkle.verify_consistency(6, 8, cproof, r8, r8)
    assert not merkle.verify_consistency(6, 8, [], r6, r8)


def test_ranges_outside_the_tree_are_refused() -> None:
    with pytest.raises(ValueError):
        merkle.inclusion_ranges(8, 8)
    with pytest.raises(ValueError):
        merkle.consistency_ranges(5, 3)
    assert merkle.consistency_ranges(0, 5) == []
