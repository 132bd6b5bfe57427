import Foundation

/// Everything that is recorded in a console's history. The raw value is what the database and
/// `vspc history` show.
public enum EventKind: String, CaseIterable, Codable, Sendable {
    case vmConnect = "vm-connect"
    case vmDisconnect = "vm-disconnect"
    case nameChange = "name-change"
    case portAssigned = "port-assigned"
    case portReused = "port-reused"
    case portExpired = "port-expired"
    case portBindFailed = "port-bind-failed"
    case portExhausted = "port-exhausted"
    /// A new assignment was refused: its address made too many this minute, or only the reserve is left.
    case portRefused = "port-refused"
    case portForgotten = "port-forgotten"
    case clientAttach = "client-attach"
    case clientDetach = "client-detach"
    case clientDropped = "client-dropped"
    /// A reader on a skip-ahead door (SSH) fell behind and skipped bytes (at most one a minute per person).
    case clientSkipped = "client-skipped"
    case clientRefused = "client-refused"
    /// A person's rights on an open session changed (a reload made its key read-only).
    case clientAccessChanged = "client-access-changed"
    /// A person sent a BREAK to the VM (it can drive SysRq on a Linux guest).
    case clientBreak = "client-break"
    /// A person listed the consoles its key may reach (`ssh list@host`).
    case clientList = "client-list"
    case exclusiveTaken = "write-exclusive-taken"
    case exclusiveReleased = "write-exclusive-released"
    case vmotionBegin = "vmotion-begin"
    case vmotionGoahead = "vmotion-goahead"
    case vmotionNotNow = "vmotion-notnow"
    case vmotionPeer = "vmotion-peer"
    case vmotionPeerRejected = "vmotion-peer-rejected"
    case vmotionComplete = "vmotion-complete"
    case vmotionCompleteRejected = "vmotion-complete-rejected"
    case vmotionAbort = "vmotion-abort"
    case vmotionAbortIgnored = "vmotion-abort-ignored"
    case vmotionExpired = "vmotion-expired"
    case vmotionSourceClosed = "vmotion-source-closed"
    case vmotionDestinationClosed = "vmotion-destination-closed"
    case vmTakeoverRefused = "vm-takeover-refused"
    case eventsSuppressed = "events-suppressed"
    case daemonStart = "daemon-start"
    case daemonStop = "daemon-stop"

    /// The level of the log line derived from an event of this kind.
    public var logLevel: LogLevel {
        switch self {
        case .vmotionBegin: return .debug
        case .exclusiveTaken, .exclusiveReleased, .clientRefused, .clientAccessChanged, .clientBreak: return .notice
        case .clientList: return .info
        case .vmConnect, .vmDisconnect, .nameChange, .portReused, .portExpired, .clientAttach, .clientDetach,
             .vmotionGoahead, .vmotionPeer, .vmotionComplete, .vmotionAbort, .vmotionSourceClosed:
            return .info
        case .portAssigned, .portForgotten, .daemonStart, .daemonStop: return .notice
        case .clientDropped, .clientSkipped, .vmTakeoverRefused, .eventsSuppressed, .vmotionNotNow, .vmotionPeerRejected, .vmotionCompleteRejected, .vmotionAbortIgnored,
             .vmotionExpired, .vmotionDestinationClosed:
            return .warning
        case .portBindFailed, .portExhausted: return .error
        case .portRefused: return .warning
        }
    }
}

/// One recorded event: written to the event table and, once, turned into a log line.
public struct ConsoleEvent: Equatable, Sendable {
    public var kind: EventKind
    public var time: Date
    public var uuid: String?
    public var label: String
    public var name: String?
    public var peer: String?
    public var detail: String?
    /// For the events that end a vMotion: the length of its window, in nanoseconds.
    public var window: UInt64?
    /// For the events that end a connection (`vm-disconnect`, `client-dropped`): why.
    public var reason: EndReason?

    public init(kind: EventKind, time: Date, uuid: String? = nil, label: String = "", name: String? = nil,
                peer: String? = nil, detail: String? = nil, window: UInt64? = nil, reason: EndReason? = nil) {
        self.window = window
        self.reason = reason
        self.kind = kind
        self.time = time
        self.uuid = uuid
        self.label = label
        self.name = name
        self.peer = peer
        self.detail = detail
    }

    /// The row for the store.
    public var record: NewEvent {
        NewEvent(kind: kind.rawValue, uuid: uuid, label: label, name: name, peer: peer, detail: detail, time: time)
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
