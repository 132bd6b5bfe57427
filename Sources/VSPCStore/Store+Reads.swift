import Foundation
import GRDB
import VSPCCore

/// The read side of `Store` (`RecordReader`): synchronous reads through the pool, beside the writer.
extension Store {
    /// All assignments ordered by name, label.
    public func loadAssignments() throws -> [Assignment] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT uuid, label, name, port, created_at, last_seen FROM assignment ORDER BY name, label, uuid
                """).map { row in
                Assignment(uuid: row["uuid"], label: row["label"], name: row["name"], port: row["port"],
                           createdAt: Date(timeIntervalSince1970: row["created_at"]),
                           lastSeen: Date(timeIntervalSince1970: row["last_seen"]))
            }
        }
    }

    /// The JSON API's tokens, oldest first.
    public func loadTokens() throws -> [APIToken] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, hash, vms, read_only, comment, created_at, expires_at, revoked_at FROM api_token
                ORDER BY created_at, id
                """).map { row in
                let vms: String = row["vms"]
                let expires: Double? = row["expires_at"]
                let revoked: Double? = row["revoked_at"]
                return APIToken(id: row["id"], hash: row["hash"], vms: vms.split(separator: "\n").map(String.init),
                                readOnly: row["read_only"], comment: row["comment"],
                                createdAt: Date(timeIntervalSince1970: row["created_at"]),
                                expiresAt: expires.map(Date.init(timeIntervalSince1970:)),
                                revokedAt: revoked.map(Date.init(timeIntervalSince1970:)))
            }
        }
    }

    /// Events oldest first. With `limit`, the newest `limit` matching events (still oldest first).
    /// `uuid` nil = all VMs; `label` nil = all labels; `since` is inclusive.
    public func events(uuid: String?, label: String? = nil, since: Date? = nil, limit: Int? = nil) throws -> [ConsoleEvent] {
        var conds: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []
        if let uuid {
            conds.append("uuid = ?")
            args.append(UUIDSpelling.normalize(uuid) ?? uuid)
        }
        if let label {
            conds.append("label = ?")
            args.append(label)
        }
        if let since {
            conds.append("ts >= ?")
            args.append(since.timeIntervalSince1970)
        }
        var sql = "SELECT id, ts, kind, uuid, label, name, peer, detail, door, user_name, key_comment, key_fingerprint FROM event"
        if !conds.isEmpty { sql += " WHERE " + conds.joined(separator: " AND ") }
        if let limit {
            sql += " ORDER BY ts DESC, id DESC LIMIT ?"
            args.append(max(0, limit))
        } else {
            sql += " ORDER BY ts, id"
        }
        let arguments = StatementArguments(args)
        let records = try pool.read { db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                ConsoleEvent(id: row["id"], time: Date(timeIntervalSince1970: row["ts"]),
                             kind: EventKind(rawValue: row["kind"]), uuid: row["uuid"], label: row["label"],
                             name: row["name"], peer: row["peer"], detail: row["detail"], door: row["door"],
                             user: row["user_name"], keyComment: row["key_comment"], fingerprint: row["key_fingerprint"])
            }
        }
        return limit == nil ? records : records.reversed()
    }

    public func scrollback(uuid: String, label: String) throws -> [UInt8]? {
        guard let key = UUIDSpelling.normalize(uuid) else { return nil }
        return try pool.read { db in try ScrollbackChunks.read(db, uuid: key, label: label) }
    }

    public func allScrollback() throws -> [(uuid: String, label: String, data: [UInt8])] {
        try pool.read { db in try ScrollbackChunks.readAll(db) }
    }

    /// The VMs known to the database, for `VMLookup`: the assignments, and the (uuid, name) pairs of the event
    /// log, so a VM's old names still find it. `names` gives each uuid's display name: its current assignment's
    /// name, else the name of its most recent event.
    public func lookupCandidates() throws -> (candidates: [VMLookup.Candidate], names: [String: String]) {
        var names: [String: String] = [:]
        var candidates: [VMLookup.Candidate] = []
        try pool.read { db in
            for row in try Row.fetchAll(db, sql: "SELECT uuid, name FROM assignment ORDER BY label, name") {
                let u: String = row["uuid"], n: String = row["name"]
                if names[u] == nil { names[u] = n }
                candidates.append(.init(uuid: u, name: n))
            }
            for row in try Row.fetchAll(db, sql: """
                SELECT uuid, name, MAX(ts) AS t FROM event WHERE uuid IS NOT NULL
                GROUP BY uuid, name ORDER BY t DESC
                """) {
                let u: String = row["uuid"]
                let n: String = (row["name"] as String?) ?? ""
                if !n.isEmpty, names[u] == nil { names[u] = n }
                candidates.append(.init(uuid: u, name: n))
            }
        }
        return (candidates, names)
    }

    /// Resolves a person's VM reference by `VMLookup.matches` alone, one entry per uuid with its display name,
    /// sorted by name, uuid (the daemon and `vspc` use `VMLookup.choose` over `knownConsoles()`).
    public func resolveVM(_ query: String) throws -> [(uuid: String, name: String)] {
        let (candidates, names) = try lookupCandidates()
        return VMLookup.matches(query, among: candidates).map { (uuid: $0, name: names[$0] ?? "") }
            .sorted { ($0.name, $0.uuid) < ($1.name, $1.uuid) }
    }

    public func knownConsoles() throws -> [ConsoleCandidate] {
        try pool.read { db in
            var out: [ConsoleCandidate] = []
            for row in try Row.fetchAll(db, sql: """
                SELECT uuid, label, name, port, last_seen FROM assignment ORDER BY name, label, uuid
                """) {
                out.append(ConsoleCandidate(uuid: row["uuid"], label: row["label"], name: row["name"], port: row["port"],
                                            lastSeen: Date(timeIntervalSince1970: row["last_seen"])))
            }
            for row in try Row.fetchAll(db, sql: """
                SELECT uuid, label, name, MAX(ts) AS t FROM event WHERE uuid IS NOT NULL
                GROUP BY uuid, label, name ORDER BY t DESC
                """) {
                out.append(ConsoleCandidate(uuid: row["uuid"], label: (row["label"] as String?) ?? "",
                                            name: (row["name"] as String?) ?? "",
                                            lastSeen: Date(timeIntervalSince1970: row["t"])))
            }
            return out
        }
    }
}
