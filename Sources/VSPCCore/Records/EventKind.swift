import Foundation

/// Everything that is recorded in a console's history. The raw value is what the database and
/// `vspc history` show.
/// What an event is: the raw value is what the database and `vspc history` show. Known kinds are the static
/// values below; a kind read back from the database that this version does not know (a newer or older vspcd
/// wrote it) is kept as it is.
public struct EventKind: RawRepresentable, Hashable, Codable, Sendable, ExpressibleByStringLiteral,
    CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
    public var description: String { rawValue }

    public static let vmConnect: EventKind = "vm-connect"
    public static let vmDisconnect: EventKind = "vm-disconnect"
    public static let nameChange: EventKind = "name-change"
    public static let portAssigned: EventKind = "port-assigned"
    public static let portReused: EventKind = "port-reused"
    public static let portExpired: EventKind = "port-expired"
    public static let portBindFailed: EventKind = "port-bind-failed"
    public static let portExhausted: EventKind = "port-exhausted"
    /// A new assignment was refused: its address made too many this minute, or only the reserve is left.
    public static let portRefused: EventKind = "port-refused"
    public static let portForgotten: EventKind = "port-forgotten"
    public static let clientAttach: EventKind = "client-attach"
    public static let clientDetach: EventKind = "client-detach"
    public static let clientDropped: EventKind = "client-dropped"
    /// A reader on a skip-ahead door (SSH) fell behind and skipped bytes (at most one a minute per person).
    public static let clientSkipped: EventKind = "client-skipped"
    public static let clientRefused: EventKind = "client-refused"
    /// A person's rights on an open session changed (a reload made its key read-only).
    public static let clientAccessChanged: EventKind = "client-access-changed"
    /// A person sent a BREAK to the VM (it can drive SysRq on a Linux guest).
    public static let clientBreak: EventKind = "client-break"
    /// A person listed the consoles its key may reach (`ssh list@host`).
    public static let clientList: EventKind = "client-list"
    /// A one-time console URL was minted (`vspc url`): its token's id, mode, expiry and who minted it.
    public static let consoleURL: EventKind = "console-url"
    public static let exclusiveTaken: EventKind = "write-exclusive-taken"
    public static let exclusiveReleased: EventKind = "write-exclusive-released"
    public static let vmotionBegin: EventKind = "vmotion-begin"
    public static let vmotionGoahead: EventKind = "vmotion-goahead"
    public static let vmotionNotNow: EventKind = "vmotion-notnow"
    public static let vmotionPeer: EventKind = "vmotion-peer"
    public static let vmotionPeerRejected: EventKind = "vmotion-peer-rejected"
    public static let vmotionComplete: EventKind = "vmotion-complete"
    public static let vmotionCompleteRejected: EventKind = "vmotion-complete-rejected"
    public static let vmotionAbort: EventKind = "vmotion-abort"
    public static let vmotionAbortIgnored: EventKind = "vmotion-abort-ignored"
    public static let vmotionExpired: EventKind = "vmotion-expired"
    public static let vmotionSourceClosed: EventKind = "vmotion-source-closed"
    public static let vmotionDestinationClosed: EventKind = "vmotion-destination-closed"
    public static let vmTakeoverRefused: EventKind = "vm-takeover-refused"
    public static let eventsSuppressed: EventKind = "events-suppressed"
    /// A console line matched a watch pattern (`--watch NAME=REGEX`).
    public static let consoleMatch: EventKind = "console-match"
    /// A call of the JSON API (calls that act each; reads summarised, see `APITokens.audit`).
    public static let apiCall: EventKind = "api-call"
    public static let apiTokenCreated: EventKind = "api-token-created"
    public static let apiTokenRevoked: EventKind = "api-token-revoked"
    public static let daemonStart: EventKind = "daemon-start"
    public static let daemonStop: EventKind = "daemon-stop"

    /// Every kind this version records.
    public static let all: [EventKind] = [
        .vmConnect, .vmDisconnect, .nameChange, .portAssigned,
        .portReused, .portExpired, .portBindFailed, .portExhausted,
        .portRefused, .portForgotten, .clientAttach, .clientDetach,
        .clientDropped, .clientSkipped, .clientRefused, .clientAccessChanged,
        .clientBreak, .clientList, .exclusiveTaken, .exclusiveReleased,
        .vmotionBegin, .vmotionGoahead, .vmotionNotNow, .vmotionPeer,
        .vmotionPeerRejected, .vmotionComplete, .vmotionCompleteRejected, .vmotionAbort,
        .vmotionAbortIgnored, .vmotionExpired, .vmotionSourceClosed, .vmotionDestinationClosed,
        .vmTakeoverRefused, .eventsSuppressed, .daemonStart, .daemonStop,
        .consoleMatch, .consoleURL, .apiCall, .apiTokenCreated, .apiTokenRevoked,
    ]

    /// The level of the log line derived from an event of this kind (info for a kind this version does not know).
    public var logLevel: LogLevel { Self.levels[self] ?? .info }

    private static let levels: [EventKind: LogLevel] = {
        var levels: [EventKind: LogLevel] = [:]
        for kind in [EventKind.vmotionBegin] { levels[kind] = .debug }
        for kind in [EventKind.vmConnect, .vmDisconnect, .nameChange, .portReused, .portExpired, .clientAttach,
                     .clientDetach, .clientList, .apiCall, .vmotionGoahead, .vmotionPeer, .vmotionComplete, .vmotionAbort,
                     .vmotionSourceClosed] { levels[kind] = .info }
        for kind in [EventKind.exclusiveTaken, .exclusiveReleased, .clientRefused, .clientAccessChanged, .clientBreak,
                     .portAssigned, .portForgotten, .daemonStart, .daemonStop, .consoleMatch, .consoleURL,
                     .apiTokenCreated, .apiTokenRevoked] {
            levels[kind] = .notice
        }
        for kind in [EventKind.clientDropped, .clientSkipped, .vmTakeoverRefused, .eventsSuppressed, .vmotionNotNow,
                     .vmotionPeerRejected, .vmotionCompleteRejected, .vmotionAbortIgnored, .vmotionExpired,
                     .vmotionDestinationClosed, .portRefused] { levels[kind] = .warning }
        for kind in [EventKind.portBindFailed, .portExhausted] { levels[kind] = .error }
        return levels
    }()
}
