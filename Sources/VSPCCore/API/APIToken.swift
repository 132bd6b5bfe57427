import Foundation

/// An API token of the JSON API (`vspc token create`): what the daemon keeps of it. The token itself
/// (`vspc_` and 43 base64url characters, 256 random bits) is printed once by `vspc token create` and never
/// stored or sent in clear: the daemon and the database hold only its SHA-256 (`hash`). The `id` is the first 12
/// hex digits of the hash: it names the token in `vspc token list|revoke` and in the audit.
public struct APIToken: Codable, Sendable, Equatable {
    public var id: String
    /// SHA-256 of the token's UTF-8 bytes, 64 lowercase hex digits.
    public var hash: String
    /// `--vms`: globs as in an authorized key's `vms=` (`VMGlob.matchesVM`); empty: every console.
    public var vms: [String]
    /// `--read-only`: no URL that can write (`POST .../urls` with mode read-write is refused).
    public var readOnly: Bool
    public var comment: String
    public var createdAt: Date
    /// nil: never expires.
    public var expiresAt: Date?
    /// When it was revoked (kept for the listing and the audit); nil while not.
    public var revokedAt: Date?

    public init(id: String, hash: String, vms: [String], readOnly: Bool, comment: String, createdAt: Date,
                expiresAt: Date?, revokedAt: Date? = nil) {
        self.id = id
        self.hash = hash
        self.vms = vms
        self.readOnly = readOnly
        self.comment = comment
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
    }

    /// The id of the token whose hash is `hash`: its first 12 hex digits (console-URL tokens are named the same way).
    public static func id(ofHash hash: String) -> String { String(hash.prefix(12)) }

    /// Whether `text` is a SHA-256 as tokens are stored: 64 lowercase hex digits.
    public static func isHash(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The prefix every token starts with (so that a leaked one is recognisable, and never taken for a password).
    public static let prefix = "vspc_"

    /// Neither revoked nor expired at `date`.
    public func isLive(at date: Date) -> Bool {
        revokedAt == nil && (expiresAt.map { date < $0 } ?? true)
    }

    /// Whether the token may see the console of VM `name` with `uuid`.
    public func sees(name: String, uuid: String) -> Bool {
        vms.isEmpty || vms.contains { VMGlob.matchesVM($0, name: name, uuid: uuid) }
    }

    /// `active`, `expired` or `revoked` at `date`.
    public func state(at date: Date) -> String {
        if revokedAt != nil { return "revoked" }
        return isLive(at: date) ? "active" : "expired"
    }

    /// As `vspc token list` and the admin protocol show it: without the hash.
    public func info(at date: Date) -> APITokenInfo {
        APITokenInfo(id: id, vms: vms, readOnly: readOnly, comment: comment,
                     createdAt: AdminProtocol.timestamp(createdAt), expiresAt: expiresAt.map(AdminProtocol.timestamp),
                     revokedAt: revokedAt.map(AdminProtocol.timestamp), state: state(at: date))
    }
}

/// A token as listed (`vspc token list`): everything but its hash; times ISO 8601, UTC.
public struct APITokenInfo: Codable, Sendable, Equatable {
    public var id: String
    public var vms: [String]
    public var readOnly: Bool
    public var comment: String
    public var createdAt: String
    public var expiresAt: String?
    public var revokedAt: String?
    /// `active`, `expired` or `revoked`.
    public var state: String

    public init(id: String, vms: [String], readOnly: Bool, comment: String, createdAt: String, expiresAt: String?,
                revokedAt: String?, state: String) {
        self.id = id
        self.vms = vms
        self.readOnly = readOnly
        self.comment = comment
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.state = state
    }
}

/// What `token-create` asks for (checked by `AdminRequest.parse`).
public struct APITokenRequest: Equatable, Sendable {
    public var hash: String
    public var vms: [String]
    public var readOnly: Bool
    /// Seconds until it expires; nil: never.
    public var ttl: Double?
    public var comment: String

    public init(hash: String, vms: [String], readOnly: Bool, ttl: Double?, comment: String) {
        self.hash = hash
        self.vms = vms
        self.readOnly = readOnly
        self.ttl = ttl
        self.comment = comment
    }

    /// Bounds of the fields.
    public static let maxGlobs = 64
    public static let maxGlobBytes = 256
    public static let maxCommentBytes = 256
    /// Ten years.
    public static let maxTTL: Double = 10 * 365 * 86400
}

/// One call of the JSON API, for the audit (`api-call`): who (the token, the client certificate's subject, the
/// address), what (method, path without its query) and the answer's status.
public struct APICall: Equatable, Sendable {
    public var tokenID: String
    public var method: String
    public var path: String
    public var status: Int
    public var peer: String
    /// The client certificate's subject (`C=..,O=..,CN=..`), with `--http-client-ca`.
    public var subject: String?
    /// The console the call was about, when it named one the token may see.
    public var console: ConsoleKey?
    /// The call acts (mints a URL): always recorded. Reads are summarised (see `APITokens.audit`).
    public var acts: Bool

    /// How a console URL minted through the API names its minter: `api token ID`, then the client
    /// certificate's subject in parentheses when there is one.
    public static let minterPrefix = "api token "

    public init(tokenID: String, method: String, path: String, status: Int, peer: String, subject: String?,
                console: ConsoleKey?, acts: Bool) {
        self.tokenID = tokenID
        self.method = method
        self.path = path
        self.status = status
        self.peer = peer
        self.subject = subject
        self.console = console
        self.acts = acts
    }
}
