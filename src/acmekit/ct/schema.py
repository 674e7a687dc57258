"""The log's tables (SQLAlchemy Core), versioned by the migrations next to this module.

- `ct_entries`: every accepted submission, sequenced or not. `identity` (SHA-256 of the
  entry type and signed entry) makes a resubmission find its first SCT; `seq` is the
  leaf index, given when the entry is stored (its SCT carries it); the sequencer
  places entries in the tree in `seq` order.
- `ct_nodes`: the hash of every complete subtree, (level, index); see `acmekit.ct.merkle`.
- `ct_tree`: one row, the latest signed tree head.
- `ct_leases`: who sequences, and until when (a process that dies loses it at `until`).
- `ct_issuers`: the certificates seen in chains, by SHA-256, for static-ct-api's
  `issuer/<sha256>`.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# BIGINT on PostgreSQL; on SQLite an INTEGER PRIMARY KEY, which is the rowid and so
# numbers itself (a BIGINT column there would not).
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

entries = sa.Table(
    "ct_entries",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("identity", sa.LargeBinary(32), nullable=False, unique=True),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False, index=True),
    sa.Column("timestamp", sa.BigInteger, nullable=False),  # ms, as in the SCT
    sa.Column("leaf_input", sa.LargeBinary, nullable=False),
    sa.Column("extra_data", sa.LargeBinary, nullable=False),
    sa.Column("sct_signature", sa.LargeBinary, nullable=False),  # DigitallySigned
    sa.Column("seq", sa.BigInteger, nullable=True, unique=True),
)

nodes = sa.Table(
    "ct_nodes",
    metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

tree = sa.Table(
    "ct_tree",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),  # ms
    sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),  # DigitallySigned
)

leases = sa.Table(
    "ct_leases",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("until", sa.BigInteger, nullable=False),  # ms
)

issuers = sa.Table(
    "ct_issuers",
    metadata,
    sa.Column("sha256", sa.LargeBinary(32), primary_key=True),
    sa.Column("der", sa.LargeBinary, nullable=False),
)
