import Foundation
import PostgresNIO
import VSPCCore

/// The read side of `PostgresStore` (`RecordReader`): each read blocks its caller (never an event loop) on a
/// connection of its own, beside the writer.
extension PostgresStore {
    private func read<T>(_ body: (PostgresConnection, PostgresCluster.Query) throws -> T) throws -> T {
        try reader.run { conn in try body(conn, PostgresCluster.Query(link: reader, conn: conn)) }
    }

    public func loadAssignments() throws -> [Assignment] {
        try read { _, q in
            try q("SELECT uuid, label, name, port, created_at, last_seen FROM assignments ORDER BY name, label, uuid")
                .map(Self.assignment)
        }
    }

    static func assignment(_ row: PostgresRow) throws -> Assignment {
        let (uuid, label, name, port, created, seen) = try row.decode((String, String, String, Int, Double, Double).self)
        return Assignment(uuid: uuid, label: label, name: name, port: port,
                          createdAt: Date(timeIntervalSince1970: created), lastSeen: Date(timeIntervalSince1970: seen))
    }

    public func loadTokens() throws -> [APIToken] {
        try read { _, q in
            try q("""
                SELECT id, hash, vms, read_only, comment, created_at, expires_at, revoked_at FROM api_tokens
                ORDER BY created_at, id
                """).map { row in
                let (id, hash, vms, readOnly, comment, created, expires, revoked) =
                    try row.decode((String, String, String, Bool, String, Double, Double?, Double?).self)
                return APIToken(id: id, hash: hash, vms: vms.split(separator: "\n").map(String.init), readOnly: readOnly,
                                comment: comment, createdAt: Date(timeIntervalSince1970: created),
                                expiresAt: expires.map(Date.init(timeIntervalSince1970:)),
                                revokedAt: revoked.map(Date.init(timeIntervalSince1970:)))
            }
        }
    }

    public func events(uuid: String?, label: String? = nil, since: Date? = nil, limit: Int? = nil) throws -> [ConsoleEvent] {
        var conds: [String] = []
        var binds = PostgresBindings()
        if let uuid {
            binds.append(UUIDSpelling.normalize(uuid) ?? uuid)
            conds.append("uuid = $\(binds.count)")
        }
        if let label {
            binds.append(label)
            conds.append("label = $\(binds.count)")
        }
        if let since {
            binds.append(since.timeIntervalSince1970)
            conds.append("ts >= $\(binds.count)")
        }
        var sql = "SELECT id, ts, kind, uuid, label, name, peer, detail, door, user_name, key_comment, key_fingerprint FROM events"
        if !conds.isEmpty { sql += " WHERE " + conds.joined(separator: " AND ") }
        if let limit {
            binds.append(max(0, limit))
            sql += " ORDER BY ts DESC, id DESC LIMIT $\(binds.count)"
        } else {
            sql += " ORDER BY ts, id"
        }
        let query = PostgresQuery(unsafeSQL: sql, binds: binds)
        let records = try read { _, q in try q(query).map(Self.event) }
        return limit == nil ? records : records.reversed()
    }

    static func event(_ row: PostgresRow) throws -> ConsoleEvent {
        let (id, ts, kind, uuid, label, name, peer, detail, door, user, comment, fingerprint) = try row.decode(
            (Int64, Double, String, String?, String, String?, String?, String?, String?, String?, String?, String?).self)
        return ConsoleEvent(id: id, time: Date(timeIntervalSince1970: ts), kind: EventKind(rawValue: kind), uuid: uuid,
                            label: label, name: name, peer: peer, detail: detail, door: door, user: user,
                            keyComment: comment, fingerprint: fingerprint)
    }

    public func scrollback(uuid: String, label: String) throws -> [UInt8]? {
        guard let key = UUIDSpelling.normalize(uuid) else { return nil }
        return try read { _, q in
            let parts = try q("SELECT data FROM scrollback WHERE uuid = \(key) AND label = \(label) ORDER BY id")
                .map { try $0.decode(Data.self) }
            guard !parts.isEmpty else { return nil }
            var out: [UInt8] = []
            for part in parts { out.append(contentsOf: part) }
            return out
        }
    }

    public func allScrollback() throws -> [(uuid: String, label: String, data: [UInt8])] {
        try read { _, q in
            var out: [(uuid: String, label: String, data: [UInt8])] = []
            for row in try q("SELECT uuid, label, data FROM scrollback ORDER BY uuid, label, id") {
                let (uuid, label, data) = try row.decode((String, String, Data).self)
                if let last = out.last, last.uuid == uuid, last.label == label {
                    out[out.count - 1].data.append(contentsOf: data)
                } else {
                    out.append((uuid, label, [UInt8](data)))
                }
            }
            return out
        }
    }

    public func knownConsoles() throws -> [ConsoleCandidate] {
        try read { _, q in
            var out: [ConsoleCandidate] = []
            for row in try q("SELECT uuid, label, name, port, last_seen FROM assignments ORDER BY name, label, uuid") {
                let (uuid, label, name, port, seen) = try row.decode((String, String, String, Int, Double).self)
                out.append(ConsoleCandidate(uuid: uuid, label: label, name: name, port: port,
                                            lastSeen: Date(timeIntervalSince1970: seen)))
            }
            for row in try q("""
                SELECT uuid, label, name, MAX(ts) AS t FROM events WHERE uuid IS NOT NULL
                GROUP BY uuid, label, name ORDER BY t DESC
                """) {
                let (uuid, label, name, t) = try row.decode((String, String, String?, Double).self)
                out.append(ConsoleCandidate(uuid: uuid, label: label, name: name ?? "",
                                            lastSeen: Date(timeIntervalSince1970: t)))
            }
            return out
        }
    }
}
