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

/// An event to be recorded (see `StoreOp.event`).
public struct NewEvent: Sendable, Equatable {
    public var time: Date
    public var kind: String
    public var uuid: String?
    public var label: String
    public var name: String?
    public var peer: String?
    public var detail: String?

    public init(kind: String, uuid: String? = nil, label: String = "", name: String? = nil,
                peer: String? = nil, detail: String? = nil, time: Date = Date()) {
        self.time = time
        self.kind = kind
        self.uuid = uuid
        self.label = label
        self.name = name
        self.peer = peer
        self.detail = detail
    }
}

/// A recorded event.
public struct EventRecord: Sendable, Codable, Equatable {
    public var id: Int64
    public var time: Date
    public var kind: String
    public var uuid: String?
    public var label: String
    public var name: String?
    public var peer: String?
    public var detail: String?

    public init(id: Int64, time: Date, kind: String, uuid: String? = nil, label: String = "",
                name: String? = nil, peer: String? = nil, detail: String? = nil) {
        self.id = id
        self.time = time
        self.kind = kind
        self.uuid = uuid
        self.label = label
        self.name = name
        self.peer = peer
        self.detail = detail
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
    case event(NewEvent)
    /// Replaces a console's saved scrollback with `data`.
    case saveScrollback(uuid: String, label: String, data: [UInt8], at: Date)
    /// Appends what the console printed since its last save; the saved scrollback keeps its last `keep` bytes.
    case appendScrollback(uuid: String, label: String, data: [UInt8], keep: Int, at: Date)
    /// Delete events older than maxAge (relative to now) and beyond the newest maxCount, and the scrollback,
    /// older than maxAge, of VM serial ports that no longer hold a port.
    case prune(Retention)
}
