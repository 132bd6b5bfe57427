-- vspcd initial schema.
-- Times are unix seconds (REAL, fractional). uuid is 32 lowercase hex digits.

CREATE TABLE assignment (
    uuid       TEXT    NOT NULL,
    label      TEXT    NOT NULL DEFAULT '',
    name       TEXT    NOT NULL,
    port       INTEGER NOT NULL UNIQUE,
    created_at REAL    NOT NULL,
    last_seen  REAL    NOT NULL,
    PRIMARY KEY (uuid, label)
);

CREATE TABLE event (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    ts     REAL    NOT NULL,
    kind   TEXT    NOT NULL,
    uuid   TEXT,
    label  TEXT    NOT NULL DEFAULT '',
    name   TEXT,
    peer   TEXT,
    detail TEXT
);
CREATE INDEX event_uuid_ts ON event (uuid, ts);
CREATE INDEX event_ts ON event (ts);

CREATE TABLE scrollback (
    uuid       TEXT NOT NULL,
    label      TEXT NOT NULL DEFAULT '',
    data       BLOB NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (uuid, label)
);
