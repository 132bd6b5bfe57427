import Foundation

/// A VM serial port's persistent proxy port assignment.
public struct Assignment: Sendable, Codable, Equatable {
    /// Always 32 lowercase hex digits once stored (see `UUIDSpelling.normalize`).
    public var uuid: String
    public var label: String
    public var name: String
    public var port: Int
    public var createdAt: Date
    public var lastSeen: Date

    public init(uuid: String, label: String = "", name: String, port: Int,
                createdAt: Date = Date(), lastSeen: Date = Date()) {
        self.uuid = uuid
        self.label = label
        self.name = name
        self.port = port
        self.createdAt = createdAt
        self.lastSeen = lastSeen
    }
}

/// Event retention policy. nil means "no limit" for that dimension.
public struct Retention: Sendable, Equatable {
    public var maxAge: TimeInterval?
    public var maxCount: Int?

    public init(maxAge: TimeInterval? = nil, maxCount: Int? = nil) {
        self.maxAge = maxAge
        self.maxCount = maxCount
    }
}

/// A write operation, executed asynchronously by the store's single writer.
public enum StoreOp: Sendable, Equatable {
    /// Insert, or update name/port/last_seen of an existing (uuid,label) row (created_at is kept).
    case upsertAssignment(Assignment)
    case deleteAssignment(uuid: String, label: String)
    /// Update name + last_seen; no-op if the assignment does not exist.
    case touchAssignment(uuid: String, label: String, name: String, at: Date)
    case event(ConsoleEvent)
    /// Replaces a console's saved scrollback with `data`.
    case saveScrollback(uuid: String, label: String, data: [UInt8], at: Date)
    /// Appends what the console printed since its last save; the saved scrollback keeps its last `keep` bytes.
    case appendScrollback(uuid: String, label: String, data: [UInt8], keep: Int, at: Date)
    /// Delete events older than maxAge (relative to now) and beyond the newest maxCount, and the scrollback,
    /// older than maxAge, of VM serial ports that no longer hold a port.
    case prune(Retention)
    /// Insert an API token (its hash, never the token).
    case saveToken(APIToken)
    /// Mark an API token revoked.
    case revokeToken(id: String, at: Date)
    /// PostgreSQL, several daemons: `ops` (for `key`) apply only while `owner` still holds the console at that
    /// epoch; a stale owner's write fails with `StoreFailure.Kind.fenced`. One daemon alone (SQLite): applied.
    indirect case fenced(ConsoleKey, Owner, [StoreOp])
}

extension StoreOp {
    /// What the write is, for a store's log line about a failure (no bytes, no secrets).
    public var logName: String {
        switch self {
        case let .upsertAssignment(a): return "upsertAssignment \(a.uuid)/\(a.label) port \(a.port)"
        case let .deleteAssignment(u, l): return "deleteAssignment \(u)/\(l)"
        case let .touchAssignment(u, l, _, _): return "touchAssignment \(u)/\(l)"
        case let .event(e): return "event \(e.kind)"
        case let .saveScrollback(u, l, _, _): return "saveScrollback \(u)/\(l)"
        case let .appendScrollback(u, l, _, _, _): return "appendScrollback \(u)/\(l)"
        case .prune: return "prune"
        case let .saveToken(t): return "saveToken \(t.id)"
        case let .revokeToken(id, _): return "revokeToken \(id)"
        case let .fenced(key, owner, ops): return "fenced \(key) \(owner.node)@\(owner.epoch): \(ops.map(\.logName))"
        }
    }
}
