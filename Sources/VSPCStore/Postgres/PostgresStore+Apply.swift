import Foundation
import PostgresNIO
import VSPCCore

/// How each `StoreOp` is written to PostgreSQL (inside the writer's transaction, one savepoint per enqueue).
extension PostgresStore {
    static func uuidKey(_ s: String) throws -> String {
        guard let u = UUIDSpelling.normalize(s) else { throw StoreError.invalidUUID(s) }
        return u
    }

    func apply(_ op: StoreOp, _ conn: PostgresConnection) throws {
        switch op {
        case let .upsertAssignment(a):
            let uuid = try Self.uuidKey(a.uuid)
            // An existing row keeps its port: another node may have assigned this console first.
            let rows = try writer.query(conn, """
                INSERT INTO assignments (uuid, label, name, port, created_at, last_seen)
                VALUES (\(uuid), \(a.label), \(a.name), \(a.port), \(a.createdAt.timeIntervalSince1970), \(a.lastSeen.timeIntervalSince1970))
                ON CONFLICT (uuid, label) DO UPDATE SET name = EXCLUDED.name, last_seen = EXCLUDED.last_seen
                RETURNING port
                """)
            guard let port = try rows.first?.decode(Int.self) else {
                throw StoreFailure(.other, "PostgreSQL: the assignment of \(uuid) was not returned")
            }
            if port != a.port {
                throw StoreFailure(.conflict, "\(ConsoleKey(uuid: uuid, label: a.label)) holds port \(port) (assigned by another node), not \(a.port)",
                                   assignedPort: port)
            }
            try notify(.assignment(ConsoleKey(uuid: uuid, label: a.label), deleted: false), conn)
        case let .deleteAssignment(uuid, label):
            let uuid = try Self.uuidKey(uuid)
            try writer.query(conn, "DELETE FROM assignments WHERE uuid = \(uuid) AND label = \(label)")
            try notify(.assignment(ConsoleKey(uuid: uuid, label: label), deleted: true), conn)
        case let .touchAssignment(uuid, label, name, at):
            try writer.query(conn, """
                UPDATE assignments SET name = \(name), last_seen = \(at.timeIntervalSince1970)
                WHERE uuid = \(try Self.uuidKey(uuid)) AND label = \(label)
                """)
        case let .event(e):
            try writer.query(conn, insertEvent(e, node: node))
        case let .saveScrollback(uuid, label, data, at):
            let uuid = try Self.uuidKey(uuid)
            try writer.query(conn, "DELETE FROM scrollback WHERE uuid = \(uuid) AND label = \(label)")
            try writer.query(conn, "INSERT INTO scrollback (uuid, label, data, updated_at) VALUES (\(uuid), \(label), \(Data(data)), \(at.timeIntervalSince1970))")
        case let .appendScrollback(uuid, label, data, keep, at):
            try appendScrollback(uuid: try Self.uuidKey(uuid), label: label, data: data, keep: keep, at: at, conn)
        case let .prune(r):
            if let age = r.maxAge {
                let cutoff = Date().timeIntervalSince1970 - age
                try writer.query(conn, "DELETE FROM events WHERE ts < \(cutoff)")
                try writer.query(conn, """
                    DELETE FROM scrollback s WHERE NOT EXISTS
                        (SELECT 1 FROM assignments a WHERE a.uuid = s.uuid AND a.label = s.label)
                    AND NOT EXISTS (SELECT 1 FROM scrollback newer WHERE newer.uuid = s.uuid
                        AND newer.label = s.label AND newer.updated_at >= \(cutoff))
                    """)
            }
            if let count = r.maxCount {
                try writer.query(conn, "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY ts DESC, id DESC OFFSET \(max(0, count)))")
            }
        case let .saveToken(t):
            try writer.query(conn, insertToken(t))
        case let .revokeToken(id, at):
            try writer.query(conn, "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, \(at.timeIntervalSince1970)) WHERE id = \(id)")
        case let .fenced(key, owner, ops):
            // The ownership row is locked until the commit: a claim made meanwhile waits for this write.
            let rows = try writer.query(conn, """
                SELECT epoch FROM ownership WHERE uuid = \(key.uuid) AND label = \(key.label)
                AND node = \(owner.node) AND epoch = \(owner.epoch) FOR SHARE
                """)
            guard rows.first != nil else {
                throw StoreFailure(.fenced, "\(key): node \(owner.node) no longer owns it at epoch \(owner.epoch); the write was refused")
            }
            for inner in ops { try apply(inner, conn) }
        }
    }

    private func notify(_ notice: ClusterNotice, _ conn: PostgresConnection) throws {
        guard let payload = ClusterNoticeText.format(notice) else { return }
        try writer.query(conn, "SELECT pg_notify(\(ClusterNoticeText.channel), \(payload))")
    }

    /// Appends `data` and keeps at least the last `keep` bytes (whole chunks), merging when chunks pile up
    /// (as `ScrollbackChunks` does for SQLite).
    private func appendScrollback(uuid: String, label: String, data: [UInt8], keep: Int, at: Date,
                                  _ conn: PostgresConnection) throws {
        guard !data.isEmpty else { return }
        try writer.query(conn, "INSERT INTO scrollback (uuid, label, data, updated_at) VALUES (\(uuid), \(label), \(Data(data)), \(at.timeIntervalSince1970))")
        let chunks = try writer.query(conn, "SELECT id, length(data) FROM scrollback WHERE uuid = \(uuid) AND label = \(label) ORDER BY id DESC")
            .map { row -> (Int64, Int) in
                let (id, size) = try row.decode((Int64, Int32).self)
                return (id, Int(size))
            }
        var covered = 0
        var oldestKept: Int64?
        for (id, size) in chunks {
            if covered >= keep { break }
            covered += size
            oldestKept = id
        }
        if let oldestKept {
            try writer.query(conn, "DELETE FROM scrollback WHERE uuid = \(uuid) AND label = \(label) AND id < \(oldestKept)")
        }
        let kept = chunks.prefix { $0.0 >= (oldestKept ?? .min) }.count
        if kept > ScrollbackChunks.maxChunks {
            var all: [UInt8] = []
            for row in try writer.query(conn, "SELECT data FROM scrollback WHERE uuid = \(uuid) AND label = \(label) ORDER BY id") {
                all.append(contentsOf: try row.decode(Data.self))
            }
            try writer.query(conn, "DELETE FROM scrollback WHERE uuid = \(uuid) AND label = \(label)")
            try writer.query(conn, "INSERT INTO scrollback (uuid, label, data, updated_at) VALUES (\(uuid), \(label), \(Data(all.suffix(keep))), \(at.timeIntervalSince1970))")
        }
    }
}

/// An event's row (`node`: the daemon that recorded it; nil for a copied one-daemon database).
func insertEvent(_ e: ConsoleEvent, node: String?) -> PostgresQuery {
    // Event uuids are normalized when possible; an unparsable one is kept verbatim rather than losing the event.
    let u = e.uuid.map { UUIDSpelling.normalize($0) ?? $0 }
    return """
        INSERT INTO events (ts, kind, uuid, label, name, peer, detail, door, user_name, key_comment, key_fingerprint, node)
        VALUES (\(e.time.timeIntervalSince1970), \(e.kind.rawValue), \(u), \(e.label), \(e.name), \(e.peer), \(e.detail),
                \(e.door), \(e.user), \(e.keyComment), \(e.fingerprint), \(node))
        """
}

/// Several events' rows in one statement, in order.
func insertEventRows(_ events: ArraySlice<ConsoleEvent>, node: String?) -> PostgresQuery {
    var binds = PostgresBindings(capacity: events.count * 12)
    var rows: [String] = []
    rows.reserveCapacity(events.count)
    for e in events {
        let base = binds.count
        binds.append(e.time.timeIntervalSince1970)
        binds.append(e.kind.rawValue)
        binds.append(e.uuid.map { UUIDSpelling.normalize($0) ?? $0 })
        binds.append(e.label)
        binds.append(e.name)
        binds.append(e.peer)
        binds.append(e.detail)
        binds.append(e.door)
        binds.append(e.user)
        binds.append(e.keyComment)
        binds.append(e.fingerprint)
        binds.append(node)
        rows.append("(" + (1...12).map { "$\(base + $0)" }.joined(separator: ", ") + ")")
    }
    return PostgresQuery(unsafeSQL: """
        INSERT INTO events (ts, kind, uuid, label, name, peer, detail, door, user_name, key_comment, key_fingerprint, node)
        VALUES \(rows.joined(separator: ", "))
        """, binds: binds)
}

func insertToken(_ t: APIToken) -> PostgresQuery {
    """
    INSERT INTO api_tokens (id, hash, vms, read_only, comment, created_at, expires_at, revoked_at)
    VALUES (\(t.id), \(t.hash), \(t.vms.joined(separator: "\n")), \(t.readOnly), \(t.comment),
            \(t.createdAt.timeIntervalSince1970), \(t.expiresAt?.timeIntervalSince1970), \(t.revokedAt?.timeIntervalSince1970))
    """
}
