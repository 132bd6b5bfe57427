import Foundation

/// One event: what the concentrator records, the row the store writes and reads back, and what `vspc history`
/// and the admin protocol carry. Written once; the store adds its `id`.
public struct ConsoleEvent: Equatable, Sendable, Codable {
    /// Its row, once stored (nil before).
    public var id: Int64?
    public var time: Date
    public var kind: EventKind
    public var uuid: String?
    public var label: String
    public var name: String?
    public var peer: String?
    public var detail: String?
    /// Who, for the audit, each in a field of its own (never parsed out of `detail`): the door, the user name an
    /// SSH client asked for (as sent: escaped when shown), the key's comment and its SHA256 fingerprint.
    public var door: String?
    public var user: String?
    public var keyComment: String?
    public var fingerprint: String?
    /// For the events that end a vMotion: the length of its window, in nanoseconds (not stored).
    public var window: UInt64?
    /// For the events that end a connection (`vm-disconnect`, `client-dropped`): why (not stored: `detail`
    /// carries its text).
    public var reason: EndReason?

    /// An event the concentrator records now.
    public init(kind: EventKind, time: Date, uuid: String? = nil, label: String = "", name: String? = nil,
                peer: String? = nil, detail: String? = nil, window: UInt64? = nil, reason: EndReason? = nil,
                door: String? = nil, user: String? = nil, keyComment: String? = nil, fingerprint: String? = nil) {
        self.kind = kind
        self.time = time
        self.uuid = uuid
        self.label = label
        self.name = name
        self.peer = peer
        self.detail = detail
        self.window = window
        self.reason = reason
        self.door = door
        self.user = user
        self.keyComment = keyComment
        self.fingerprint = fingerprint
    }

    /// An event to write, stamped now unless told otherwise.
    public init(kind: EventKind, uuid: String? = nil, label: String = "", name: String? = nil, peer: String? = nil,
                detail: String? = nil, time: Date = Date()) {
        self.init(kind: kind, time: time, uuid: uuid, label: label, name: name, peer: peer, detail: detail)
    }

    /// An event read back from the store.
    public init(id: Int64, time: Date, kind: EventKind, uuid: String? = nil, label: String = "", name: String? = nil,
                peer: String? = nil, detail: String? = nil, door: String? = nil, user: String? = nil,
                keyComment: String? = nil, fingerprint: String? = nil) {
        self.init(kind: kind, time: time, uuid: uuid, label: label, name: name, peer: peer, detail: detail,
                  door: door, user: user, keyComment: keyComment, fingerprint: fingerprint)
        self.id = id
    }

    private enum CodingKeys: String, CodingKey {
        case id, time, kind, uuid, label, name, peer, detail, door, user, keyComment, fingerprint
    }

    /// The log line: `kind VM-name (uuid#label) peer=ADDRESS: detail`.
    public var logLine: String {
        var line = kind.rawValue
        if let uuid {
            let key = label.isEmpty ? uuid : "\(uuid)#\(label)"
            line += name.map { " \($0) (\(key))" } ?? " \(key)"
        } else if let name {
            line += " \(name)"
        }
        if let peer { line += " peer=\(peer)" }
        if let detail { line += ": \(detail)" }
        return line
    }
}
