import Foundation
import GRDB
import VSPCCore

/// Console scrollback on disk, as chunks appended in order: a save writes what the console printed since the
/// last one, not the whole ring, so a busy console's disk writes grow with its output. Chunks beyond the
/// console's scrollback size are trimmed; many small chunks are merged now and then.
enum ScrollbackChunks {
    /// More chunks than this for one console are merged into one.
    static let maxChunks = 32

    /// Replaces a console's scrollback with `data`.
    static func replace(_ db: Database, uuid: String, label: String, data: [UInt8], at: Date) throws {
        try db.execute(sql: "DELETE FROM scrollback_chunk WHERE uuid = ? AND label = ?", arguments: [uuid, label])
        try db.execute(sql: "INSERT INTO scrollback_chunk (uuid, label, data, updated_at) VALUES (?, ?, ?, ?)",
                       arguments: [uuid, label, Data(data), at.timeIntervalSince1970])
    }

    /// Appends `data` and keeps at least the last `keep` bytes (whole chunks), merging when chunks pile up.
    static func append(_ db: Database, uuid: String, label: String, data: [UInt8], keep: Int, at: Date) throws {
        guard !data.isEmpty else { return }
        try db.execute(sql: "INSERT INTO scrollback_chunk (uuid, label, data, updated_at) VALUES (?, ?, ?, ?)",
                       arguments: [uuid, label, Data(data), at.timeIntervalSince1970])
        let chunks = try Row.fetchAll(db, sql: """
            SELECT id, length(data) AS size FROM scrollback_chunk WHERE uuid = ? AND label = ? ORDER BY id DESC
            """, arguments: [uuid, label])
        // Newest first: keep chunks until `keep` bytes are covered; the older ones go.
        var covered = 0
        var oldestKept: Int64?
        for row in chunks {
            if covered >= keep { break }
            covered += row["size"] as Int
            oldestKept = row["id"]
        }
        if let oldestKept {
            try db.execute(sql: "DELETE FROM scrollback_chunk WHERE uuid = ? AND label = ? AND id < ?",
                           arguments: [uuid, label, oldestKept])
        }
        let kept = chunks.prefix { ($0["id"] as Int64) >= (oldestKept ?? .min) }.count
        if kept > maxChunks {
            let all = try read(db, uuid: uuid, label: label) ?? []
            try replace(db, uuid: uuid, label: label, data: Array(all.suffix(keep)), at: at)
        }
    }

    static func read(_ db: Database, uuid: String, label: String) throws -> [UInt8]? {
        // A database a daemon before migration 0002 wrote, read as it is (read-only opens do not migrate).
        if try !db.tableExists("scrollback_chunk") {
            return try Data.fetchOne(db, sql: "SELECT data FROM scrollback WHERE uuid = ? AND label = ?",
                                     arguments: [uuid, label]).map { [UInt8]($0) }
        }
        let parts = try Data.fetchAll(db, sql: "SELECT data FROM scrollback_chunk WHERE uuid = ? AND label = ? ORDER BY id",
                                      arguments: [uuid, label])
        guard !parts.isEmpty else { return nil }
        var out: [UInt8] = []
        for part in parts { out.append(contentsOf: part) }
        return out
    }

    static func readAll(_ db: Database) throws -> [(uuid: String, label: String, data: [UInt8])] {
        var out: [(uuid: String, label: String, data: [UInt8])] = []
        for row in try Row.fetchAll(db, sql: "SELECT uuid, label, data FROM scrollback_chunk ORDER BY uuid, label, id") {
            let uuid: String = row["uuid"], label: String = row["label"], data: Data = row["data"]
            if let last = out.last, last.uuid == uuid, last.label == label {
                out[out.count - 1].data.append(contentsOf: data)
            } else {
                out.append((uuid, label, [UInt8](data)))
            }
        }
        return out
    }
}
