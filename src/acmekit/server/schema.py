"""The CA's tables: one SQLAlchemy `MetaData`, the source the migrations are checked against.

Times are integer microseconds since the epoch (UTC) on both databases. Changing a table
here needs a migration in `migrations/versions` (tests/integration/test_migrations.py
compares the two).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# ix_authz_pending's predicate: stored pending, no challenge decided. A statement meant to
# be planned on that index carries these words as they are (SQLite uses a partial index
# only for a WHERE that contains its terms; literals, not parameters, on both databases).
UNDECIDED = "stored_status = 'pending' AND decided_by IS NULL"
# A certificate on a CRL until it expires (BR §4.10.1): ix_certificates_crl_entries's rows.
REVOKED = "revoked_at IS NOT NULL"

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("thumbprint", sa.String(64), nullable=False, unique=True),
    sa.Column("jwk", sa.Text, nullable=False),
    sa.Column("contact", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Column("eab_kid", sa.String(255), nullable=True),
)

# The thumbprints of keys an account has replaced (RFC 8555 §7.3.5): a dns-persist-01
# record made with an earlier key still validates (draft-ietf-acme-dns-persist-02 §4.2).
account_prior_keys = sa.Table(
    "account_prior_keys",
    metadata,
    sa.Column("account_id", sa.String(64), primary_key=True),
    sa.Column("thumbprint", sa.String(64), primary_key=True),
    sa.Column("replaced", sa.BigInteger, nullable=False),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("identifiers", sa.Text, nullable=False),
    sa.Column("authz_ids", sa.Text, nullable=False),
    sa.Column("expires", sa.BigInteger, nullable=False),
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Column("not_before", sa.BigInteger),
    sa.Column("not_after", sa.BigInteger),
    sa.Column("profile", sa.String(64)),
    sa.Column("replaces", sa.String(255)),
    sa.Column("csr", sa.LargeBinary),
    sa.Column("finalize_started", sa.BigInteger, index=True),
    sa.Column("error", sa.Text),
    sa.Column("certificate_id", sa.String(64)),
    # an account's order list, in pages, newest first (migration 0008); it also serves
    # every lookup by account_id alone, its leading column (0009 dropped the index on
    # account_id by itself, which each order's insert kept up for nothing)
    sa.Index("ix_orders_account_created", "account_id", "created"),
    # The purge's batches, by expiry, of the orders without a certificate only: an
    # issued order leaves it (migration 0013; repos/purge.py).
    sa.Index(
        "ix_orders_unissued",
        "expires",
        "id",
        sqlite_where=sa.text("certificate_id IS NULL"),
        postgresql_where=sa.text("certificate_id IS NULL"),
    ),
)

authorizations = sa.Table(
    "authorizations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("identifier_type", sa.String(8), nullable=False),
    sa.Column("identifier_value", sa.String(255), nullable=False),
    sa.Column("wildcard", sa.Boolean, nullable=False),
    sa.Column("stored_status", sa.String(16), nullable=False),
    sa.Column("expires", sa.BigInteger, nullable=False),
    # The profile of the order that made it (None: the default one).
    sa.Column("profile", sa.String(64)),
    # The first order carrying `replaces` that uses it: renewals are exempt from rate
    # limits, failed validations included (RFC 9773 §5).
    sa.Column("renewal_order_id", sa.String(64)),
    # Multi-perspective corroboration (BR §3.2.2.9): the quorum ("3/4") and, as JSON,
    # each remote perspective's name, RIR and outcome; None without remote perspectives.
    sa.Column("mpic_quorum", sa.String(16)),
    sa.Column("mpic_perspectives", sa.Text),
    # Whether the DNS answers of the challenge's lookups and of the CAA lookups were all
    # DNSSEC-authenticated (the resolver's AD bit); None when not asked (dnssec "off").
    sa.Column("dnssec_dcv", sa.Boolean),
    sa.Column("dnssec_caa", sa.Boolean),
    # The challenge whose validation decided it, valid or invalid (NULL while none has):
    # from then it is no longer pending (RFC 8555 §7.1.6), though `stored_status` stays
    # "pending" (the status is derived from the challenges). Set with the challenge's
    # outcome, in the same statement (migration 0010), and by tr_challenge_decides on
    # challenges for a writer that does not (an older release's process; 0011).
    sa.Column("decided_by", sa.String(64)),
    sa.Index("ix_authz_reuse", "account_id", "identifier_value", "wildcard"),
    # The purge's batches, by expiry (migration 0013; repos/purge.py).
    sa.Index("ix_authz_expires", "expires", "id"),
    # The account's undecided authorizations only: their count and first expiry cost
    # the pending ones, not every authorization the account has had (migrations 0010 and
    # 0012).
    sa.Index(
        "ix_authz_pending",
        "account_id",
        "expires",
        sqlite_where=sa.text(UNDECIDED),
        postgresql_where=sa.text(UNDECIDED),
    ),
)

challenges = sa.Table(
    "challenges",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("authz_id", sa.String(64), nullable=False, index=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("validated", sa.BigInteger),
    sa.Column("started", sa.BigInteger),
    sa.Column("error", sa.Text),
    # The account URL the client used when it asked for validation: what CAA
    # `accounturi` must name (RFC 8657 §3), kept for a validation resumed elsewhere.
    sa.Column("account_uri", sa.Text),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("serial", sa.String(48), nullable=False, unique=True),
    sa.Column("order_id", sa.String(64)),
    sa.Column("account_id", sa.String(64)),
    sa.Column("pem", sa.Text),
    sa.Column("identifiers", sa.Text, nullable=False),
    sa.Column("not_before", sa.BigInteger, nullable=False),
    sa.Column("not_after", sa.BigInteger, nullable=False),
    sa.Column("issued", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger),
    sa.Column("revocation_reason", sa.Integer),
    sa.Column("abandoned", sa.Boolean, nullable=False, default=False),
    sa.Column("replaced_by", sa.String(64)),  # the order that replaces it (RFC 9773 §5)
    sa.Column("ari_window_start", sa.BigInteger),  # moved by an operator (RFC 9773 §4.2)
    sa.Column("precert", sa.LargeBinary),  # the precertificate's DER (RFC 6962 §3.1)
    # A revoked row's CRL shard, `serial % crl_shards`, and the number of shards it was
    # filed for: both written once, before a CRL is made (crl.py).
    sa.Column("crl_shards", sa.Integer),
    sa.Column("crl_shard", sa.Integer),
    # A shard's CRL entries, read from the index alone: only revoked rows, only the
    # columns an entry needs (migration 0014; repos/certificates.py).
    sa.Index(
        "ix_certificates_crl_entries",
        "crl_shards",
        "crl_shard",
        "not_after",
        "serial",
        "revoked_at",
        "revocation_reason",
        sqlite_where=sa.text(REVOKED),
        postgresql_where=sa.text(REVOKED),
    ),
)

used_nonces = sa.Table(
    "used_nonces",
    metadata,
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("issued", sa.BigInteger, nullable=False, index=True),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Policy: rate limits, EAB keys, CRLs, blocked keys.

# One GCRA theoretical arrival time per bucket (server/ratelimits.py); the rates are in
# the configuration.
rate_buckets = sa.Table(
    "rate_buckets",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("tat", sa.BigInteger, nullable=False),
)

eab_keys = sa.Table(
    "eab_keys",
    metadata,
    sa.Column("kid", sa.String(255), primary_key=True),
    sa.Column("hmac_key", sa.Text, nullable=False),
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Column("revoked", sa.BigInteger),
    sa.Column("account_id", sa.String(64)),
)

crls = sa.Table(
    "crls",
    metadata,
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("number", sa.BigInteger, nullable=False),
    sa.Column("this_update", sa.BigInteger, nullable=False),
    sa.Column("der", sa.LargeBinary, nullable=False),
)

blocked_keys = sa.Table(
    "blocked_keys",
    metadata,
    sa.Column("spki_sha256", sa.String(64), primary_key=True),
    sa.Column("added", sa.BigInteger, nullable=False),
    sa.Column("serial", sa.String(48)),
)
