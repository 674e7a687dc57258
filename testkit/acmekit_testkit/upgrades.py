"""Rows for the schema upgrade's tests: one authorization whose challenge was met,
written at revision 0011 (before 0012 fills `decided_by`), for the fill to wait on."""

DECIDED_AUTHZ = (
    "INSERT INTO authorizations (id, account_id, identifier_type, identifier_value, "
    "wildcard, stored_status, expires) VALUES "
    "('authz-1', 'acct-1', 'dns', 'a.example.test', false, 'pending', 0)"
)
ITS_VALID_CHALLENGE = (
    "INSERT INTO challenges (id, authz_id, type, token, status) "
    "VALUES ('authz-1-0', 'authz-1', 'http-01', 'tok-1', 'valid')"
)
