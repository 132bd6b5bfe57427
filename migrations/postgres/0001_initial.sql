-- vspcd on PostgreSQL: several daemons (nodes) sharing one database (issue 18).
-- Times the daemons give are unix seconds (double precision, as in SQLite); times of the database's own clock
-- (heartbeats, claims) are timestamptz. uuid is 32 lowercase hex digits. Statements end with ';' at a line's end.

CREATE TABLE assignments (
    uuid       text             NOT NULL,
    label      text             NOT NULL DEFAULT '',
    name       text             NOT NULL,
    port       integer          NOT NULL UNIQUE,
    created_at double precision NOT NULL,
    last_seen  double precision NOT NULL,
    PRIMARY KEY (uuid, label)
);

-- node: the daemon that recorded the event (NULL: copied from a one-daemon SQLite database).
CREATE TABLE events (
    id              bigserial        PRIMARY KEY,
    ts              double precision NOT NULL,
    kind            text             NOT NULL,
    uuid            text,
    label           text             NOT NULL DEFAULT '',
    name            text,
    peer            text,
    detail          text,
    door            text,
    user_name       text,
    key_comment     text,
    key_fingerprint text,
    node            text
);
CREATE INDEX events_uuid_ts ON events (uuid, ts);
CREATE INDEX events_ts ON events (ts);

-- Console scrollback, appended in chunks and trimmed to the console's scrollback size.
CREATE TABLE scrollback (
    id         bigserial        PRIMARY KEY,
    uuid       text             NOT NULL,
    label      text             NOT NULL DEFAULT '',
    data       bytea            NOT NULL,
    updated_at double precision NOT NULL
);
CREATE INDEX scrollback_key ON scrollback (uuid, label, id);

-- The JSON API's tokens: the SHA-256 of each token, never the token.
CREATE TABLE api_tokens (
    id          text             PRIMARY KEY,
    hash        text             NOT NULL UNIQUE,
    vms         text             NOT NULL DEFAULT '',
    read_only   boolean          NOT NULL DEFAULT false,
    comment     text             NOT NULL DEFAULT '',
    created_at  double precision NOT NULL,
    expires_at  double precision,
    revoked_at  double precision
);

-- One row per daemon; a node is alive while its heartbeat is younger than the lease timeout.
CREATE TABLE nodes (
    name         text        PRIMARY KEY,
    link         text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    consoles     integer     NOT NULL DEFAULT 0
);

-- Who owns each console: every claim bumps epoch (the fencing token).
CREATE TABLE ownership (
    uuid       text        NOT NULL,
    label      text        NOT NULL DEFAULT '',
    node       text        NOT NULL,
    epoch      bigint      NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (uuid, label)
);

-- vMotions begun on one node, committed before GOAHEAD: the destination's node finds them by the cookie.
-- sequence and secret are kept as they are on the wire.
CREATE TABLE vmotions (
    sequence    bytea            PRIMARY KEY,
    secret      bytea            NOT NULL,
    uuid        text             NOT NULL,
    label       text             NOT NULL DEFAULT '',
    name        text             NOT NULL,
    port        integer          NOT NULL,
    source_node text             NOT NULL,
    source_peer text             NOT NULL,
    begun_at    double precision NOT NULL
);
