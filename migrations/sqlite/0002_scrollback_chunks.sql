-- Scrollback is written by what changed: each save appends the bytes a console printed since the last one,
-- and old chunks are trimmed to the console's scrollback size (see VSPCStore/ScrollbackChunks.swift).
CREATE TABLE scrollback_chunk (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid       TEXT NOT NULL,
    label      TEXT NOT NULL DEFAULT '',
    data       BLOB NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX scrollback_chunk_key ON scrollback_chunk (uuid, label, id);

INSERT INTO scrollback_chunk (uuid, label, data, updated_at)
    SELECT uuid, label, data, updated_at FROM scrollback ORDER BY uuid, label;
DROP TABLE scrollback;
