import Foundation

/// The admin protocol, version 1: newline-delimited JSON over TCP (default 127.0.0.1:6780).
///
/// The client sends one request line; the server answers one response line. For `tail`, the response line is
/// followed by the raw console bytes (scrollback, then live output while `follow` is true) until either side
/// closes. Requests longer than 64 KiB are refused.
public enum AdminProtocol {
    public static let version = 1
    public static let maxRequestBytes = 64 * 1024
    /// The most events one `history` answer carries (the newest ones).
    public static let maxHistoryEvents = 10_000
    /// A console URL's time to live when `url` gives none (seconds).
    public static let defaultURLTTL = 600
}

public struct AdminRequest: Codable, Sendable, Equatable {
    public var version: Int
    /// `list`, `tail` or `status`.
    public var command: String
    /// For `tail`: a uuid in any spelling, a name, or a unique prefix of either.
    public var vm: String?
    /// For `tail`: the serial-port label, empty for the first port.
    public var label: String?
    /// For `tail`: at most this many bytes of scrollback first (all by default).
    public var bytes: Int?
    /// For `tail`: keep streaming live output.
    public var follow: Bool?
    /// For `forget`: also when the VM is connected (its connection and its people are closed).
    public var force: Bool?
    /// For `history`: only events since this time (ISO 8601, fractional seconds allowed).
    public var since: String?
    /// For `history`: only the newest this many events (at most `AdminProtocol.maxHistoryEvents`, the default).
    public var limit: Int?
    /// For `token-create`: the new token's SHA-256 (64 lowercase hex digits); the token itself is never sent.
    public var tokenHash: String?
    /// For `token-create`: the globs of the consoles it may see (all when absent).
    public var vms: [String]?
    /// For `token-create`: no URL that can write.
    public var tokenReadOnly: Bool?
    /// For `token-create`: seconds until it expires (never when absent).
    public var tokenTTL: Double?
    /// For `token-create`: a note for people.
    public var comment: String?
    /// For `token-revoke`: the token's id.
    public var token: String?
    /// For `url`: a read-only session.
    public var readOnly: Bool?
    /// For `url`: the link's time to live in seconds (`AdminProtocol.defaultURLTTL` when absent).
    public var ttl: Int?

    public init(command: String, vm: String? = nil, label: String? = nil, bytes: Int? = nil, follow: Bool? = nil,
                force: Bool? = nil, since: String? = nil, limit: Int? = nil, readOnly: Bool? = nil, ttl: Int? = nil) {
        self.readOnly = readOnly
        self.ttl = ttl
        self.since = since
        self.limit = limit
        self.version = AdminProtocol.version
        self.command = command
        self.vm = vm
        self.label = label
        self.bytes = bytes
        self.follow = follow
        self.force = force
    }
}

public struct ConsoleInfo: Codable, Sendable, Equatable {
    public var name: String
    /// 32 lowercase hex digits.
    public var uuid: String
    public var label: String
    public var port: Int
    /// A VM connection is attached now.
    public var connected: Bool
    /// People attached now, over every door.
    public var clients: Int
    /// When the VM connected (ISO 8601, UTC), or when it was last seen if disconnected.
    public var since: String?
    /// The port is listening (false when another process holds it).
    public var listening: Bool
    /// Why the port is not listening, when it is not.
    public var listenError: String?
    /// A vMotion is in progress.
    public var migrating: Bool
    /// Address of the VM's host connection.
    public var peer: String?
    /// The assignment is committed to the database (false while the disk refuses writes; vspcd retries).
    /// Absent from daemons before this field existed, which listed only saved assignments.
    public var saved: Bool?
    /// Several daemons: the node that owns the console (absent from one daemon alone, or when nobody does).
    public var owner: String?
    /// Several daemons: the VM is not connected here, and another node that is alive owns the console (the VM
    /// was last connected there).
    public var elsewhere: Bool?

    public init(name: String, uuid: String, label: String, port: Int, connected: Bool, clients: Int,
                since: String?, listening: Bool, listenError: String? = nil, migrating: Bool, peer: String?,
                saved: Bool? = true, owner: String? = nil, elsewhere: Bool? = nil) {
        self.saved = saved
        self.owner = owner
        self.elsewhere = elsewhere
        self.name = name
        self.uuid = uuid
        self.label = label
        self.port = port
        self.connected = connected
        self.clients = clients
        self.since = since
        self.listening = listening
        self.listenError = listenError
        self.migrating = migrating
        self.peer = peer
    }
}

public struct AdminResponse: Codable, Sendable {
    public var version: Int
    public var ok: Bool
    public var error: String?
    public var vms: [ConsoleInfo]?
    /// For `tail`: the console being streamed.
    public var vm: ConsoleInfo?
    /// For `tail`: how many of the raw bytes that follow are scrollback (the rest is live output).
    public var backlog: Int?
    /// For `status`: the counters as strings (the first form, kept for scripts that read it).
    public var status: StatusCounters?
    /// For `status`: the same, typed.
    public var daemon: DaemonStatus?
    /// For `history`: the VM and its events.
    public var history: HistoryAnswer?
    /// For a refusal of a reference that names several consoles: those consoles (see `VMLookup.ambiguity`).
    public var candidates: [ConsoleCandidate]?
    /// For `token-list`: every API token, without its hash.
    public var tokens: [APITokenInfo]?
    /// For `token-create` and `token-revoke`: the token.
    public var token: APITokenInfo?
    /// For `url`: the one-time console URL (only its minter sees it), its token's id, when it expires (ISO
    /// 8601, UTC) and its mode.
    public var url: String?
    public var tokenID: String?
    public var expires: String?
    public var mode: AccessMode?

    public init(ok: Bool, error: String? = nil, vms: [ConsoleInfo]? = nil, vm: ConsoleInfo? = nil,
                backlog: Int? = nil, status: StatusCounters? = nil, daemon: DaemonStatus? = nil,
                history: HistoryAnswer? = nil, candidates: [ConsoleCandidate]? = nil, tokens: [APITokenInfo]? = nil,
                token: APITokenInfo? = nil) {
        self.tokens = tokens
        self.token = token
        self.history = history
        self.candidates = candidates
        self.daemon = daemon
        self.backlog = backlog
        self.version = AdminProtocol.version
        self.ok = ok
        self.error = error
        self.vms = vms
        self.vm = vm
        self.status = status
    }
}

extension AdminProtocol {
    /// A time as people read it, in `zone`: `2026-11-25 14:00:07` (`vspc history`, the escape menu's `w`).
    public static func localTimestamp(_ date: Date, in zone: TimeZone) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = zone
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f.string(from: date)
    }

    /// A time as the protocol writes it: ISO 8601 in UTC, whole seconds.
    public static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }

    /// A request's time (`since`): ISO 8601 in UTC with milliseconds, so that nothing is lost in the request.
    public static func preciseTimestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    /// An ISO 8601 time, with or without fractional seconds; nil if it is not one.
    public static func parseTimestamp(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = f.date(from: text) { return date }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: text)
    }
}

/// The answer to `history`: the VM (its uuid and current name) and its events, oldest first.
public struct HistoryAnswer: Codable, Sendable, Equatable {
    public var uuid: String
    public var name: String
    public var events: [ConsoleEvent]

    public init(uuid: String, name: String, events: [ConsoleEvent]) {
        self.uuid = uuid
        self.name = name
        self.events = events
    }
}

/// The first form of `status`: counters written as strings, one JSON object with these keys (kept for scripts
/// that read it; `DaemonStatus` is the typed form).
public struct StatusCounters: Codable, Sendable, Equatable {
    public var consoles: String
    public var connected: String
    /// People attached to consoles.
    public var clients: String
    public var migrating: String
    public var freePorts: String
    public var descriptors: String
    public var descriptorLimit: String
    /// ISO 8601, UTC; empty before start-up.
    public var startedAt: String

    public init(consoles: Int, connected: Int, clients: Int, migrating: Int, freePorts: Int, descriptors: Int,
                descriptorLimit: Int, startedAt: String) {
        self.consoles = "\(consoles)"
        self.connected = "\(connected)"
        self.clients = "\(clients)"
        self.migrating = "\(migrating)"
        self.freePorts = "\(freePorts)"
        self.descriptors = "\(descriptors)"
        self.descriptorLimit = "\(descriptorLimit)"
        self.startedAt = startedAt
    }
}

/// The daemon at a glance, for `vspc status`.
public struct DaemonStatus: Codable, Sendable, Equatable {
    public var version: String
    /// ISO 8601, UTC.
    public var startedAt: String
    public var uptimeSeconds: Int
    /// Listed consoles (committed assignments), those with a VM connected, those in a vMotion.
    public var consoles: Int
    public var connected: Int
    public var migrating: Int
    /// People attached over telnet, and `tail -f` followers.
    public var telnetClients: Int
    public var tailFollowers: Int
    public var portsUsed: Int
    public var portsFree: Int
    public var portRangeStart: Int
    public var portRangeEnd: Int
    public var descriptors: Int
    public var descriptorLimit: Int
    /// Events and log lines left out by the per-connection budgets since start-up.
    public var eventsSuppressed: Int
    /// Listed consoles whose assignment the database has not taken yet.
    public var unsaved: Int?
    /// People attached over SSH.
    public var sshClients: Int?
    /// People attached, by door (`telnet`, `ssh`, `tail`, ...): every door, including those above.
    public var clientsByDoor: [String: Int]?
    /// Listed consoles whose port could not be bound (another process holds it, or the bind was refused): their
    /// ports count as used, yet nothing of the daemon listens there.
    public var notListening: Int?
    /// Several daemons: this daemon's node name, and every node with its heartbeat (absent from one daemon alone).
    public var node: String?
    public var nodes: [NodeStatus]?

    public init(version: String, startedAt: String, uptimeSeconds: Int, consoles: Int, connected: Int, migrating: Int,
                telnetClients: Int, tailFollowers: Int, portsUsed: Int, portsFree: Int, portRangeStart: Int,
                portRangeEnd: Int, descriptors: Int, descriptorLimit: Int, eventsSuppressed: Int) {
        self.version = version
        self.startedAt = startedAt
        self.uptimeSeconds = uptimeSeconds
        self.consoles = consoles
        self.connected = connected
        self.migrating = migrating
        self.telnetClients = telnetClients
        self.tailFollowers = tailFollowers
        self.portsUsed = portsUsed
        self.portsFree = portsFree
        self.portRangeStart = portRangeStart
        self.portRangeEnd = portRangeEnd
        self.descriptors = descriptors
        self.descriptorLimit = descriptorLimit
        self.eventsSuppressed = eventsSuppressed
    }
}
