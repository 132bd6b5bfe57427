-- The JSON API's tokens (issue 17): the SHA-256 of each token, never the token; its id is the hash's first 12
-- hex digits. vms holds the globs one per line (empty: every console). Times are seconds since 1970, UTC.
-- A revoked token keeps its row (revoked_at set) for the listing and the audit.

CREATE TABLE api_token (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    vms         TEXT NOT NULL DEFAULT '',
    read_only   INTEGER NOT NULL DEFAULT 0,
    comment     TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    expires_at  REAL,
    revoked_at  REAL
);
