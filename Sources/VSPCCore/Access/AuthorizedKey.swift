import Foundation

/// One key line of an authorized_keys file: who may attach to which consoles, and how.
public struct AuthorizedKey: Sendable, Hashable {
    /// The key type as written: `ssh-ed25519`, `ecdsa-sha2-nistp256`, ..., or a refused type such as `ssh-rsa`.
    public var keyType: String
    /// The public key blob (the base64 field, decoded): what the client offers, byte for byte.
    public var blob: [UInt8]
    /// The comment after the key (control characters replaced by `?`); it names the person in history.
    public var comment: String
    /// The `vms="..."` globs: plain globs match the VM's name, `uuid:` globs its uuid (see `permits`); nil when
    /// the option is absent (every VM).
    public var vms: [String]?
    /// `read-only` (or `restrict` without `read-write`): the session's keystrokes never reach the VM.
    public var readOnly: Bool
    /// `from="..."`: the client addresses the key may be used from; nil: anywhere.
    public var from: AddressPatternList?
    /// `expiry-time="..."`: when the key stops authenticating; nil: never.
    public var expiry: ExpiryTime?
    /// `no-pty` (or `restrict` without `pty`): a session never gets a terminal (its pty-req is refused).
    public var noPTY: Bool
    /// 1-based line number in the file.
    public var line: Int
    /// Why this server will not accept the key (an RSA key, for one); nil for a usable key.
    public var refusal: String?

    public init(keyType: String, blob: [UInt8], comment: String = "", vms: [String]? = nil, readOnly: Bool = false,
                from: AddressPatternList? = nil, expiry: ExpiryTime? = nil, noPTY: Bool = false,
                line: Int = 0, refusal: String? = nil) {
        self.keyType = keyType
        self.blob = blob
        self.comment = comment
        self.vms = vms
        self.readOnly = readOnly
        self.from = from
        self.expiry = expiry
        self.noPTY = noPTY
        self.line = line
        self.refusal = refusal
    }

    /// Whether the server accepts this key at all.
    public var isUsable: Bool { refusal == nil }

    /// The key as OpenSSH writes it, without options or comment: `ssh-ed25519 AAAA...`.
    public var publicKeyText: String { keyType + " " + Data(blob).base64EncodedString() }

    /// Whether this key may reach the VM called `vmName` whose uuid is `uuid` (any spelling). A plain glob matches
    /// the name only, exactly (case-sensitive, as OpenSSH compares names); a glob written `uuid:...` matches the
    /// uuid only (see `VMGlob.matchesUUID`). Without `vms=`, every VM. A refused key reaches nothing.
    public func permits(vmName: String, uuid: String) -> Bool {
        guard isUsable else { return false }
        guard let vms else { return true }
        return vms.contains { VMGlob.matchesVM($0, name: vmName, uuid: uuid) }
    }

    /// Why this line does not let a client at `address` in at `now` (its `from=` or its `expiry-time=`), or nil when
    /// it does. Local expiry times are read in `timeZone`.
    public func denial(address: IPAddress?, now: Date, timeZone: TimeZone) -> String? {
        if let from, !from.allows(address) {
            return "line \(line): the client's address \(address.map { "\($0)" } ?? "(unknown)") is not in from=\"\(from.text)\""
        }
        if let expiry, expiry.hasPassed(at: now, localTimeZone: timeZone) {
            return "line \(line): the key expired at \(expiry.text) (expiry-time)"
        }
        return nil
    }
}

/// The outcome of `AuthorizedKeys.authorize`.
public enum KeyAuthorization: Sendable, Equatable {
    /// This line lets the client in.
    case granted(AuthorizedKey)
    /// No usable line holds the key.
    case unknownKey
    /// Lines hold the key, but their `from=` or `expiry-time=` refuse this client now (one reason per line).
    case refused([String])
}

/// A line of an authorized_keys file that was skipped, and why.
public struct AuthorizedKeysProblem: Sendable, Hashable, CustomStringConvertible {
    /// 1-based line number.
    public var line: Int
    public var message: String

    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }

    public var description: String { "line \(line): \(message)" }
}

/// A parsed authorized_keys file: its key lines, the lines skipped, and a lookup by key blob.
public struct AuthorizedKeys: Sendable {
    /// Every key line in file order, refused keys included (with their `refusal`).
    public let keys: [AuthorizedKey]
    /// Lines skipped because they are malformed (unknown option, bad base64, ...), in file order.
    public let problems: [AuthorizedKeysProblem]
    private let index: [[UInt8]: Int]

    public init(keys: [AuthorizedKey], problems: [AuthorizedKeysProblem] = []) {
        self.keys = keys
        self.problems = problems
        var index: [[UInt8]: Int] = [:]
        // Like OpenSSH, the first usable line that holds a key decides its options.
        for (i, key) in keys.enumerated() where key.isUsable && index[key.blob] == nil {
            index[key.blob] = i
        }
        self.index = index
    }

    public static let empty = AuthorizedKeys(keys: [])

    /// The usable entry for an offered key blob (the first such line), or nil.
    public func key(forBlob blob: [UInt8]) -> AuthorizedKey? {
        index[blob].map { keys[$0] }
    }

    /// What the file says of a client at `address` offering `blob` at `now`: like OpenSSH, the first usable line
    /// holding the key whose `from=` and `expiry-time=` let the client in decides; lines that hold the key but
    /// refuse the client say why.
    public func authorize(blob: [UInt8], address: IPAddress?, now: Date, timeZone: TimeZone) -> KeyAuthorization {
        guard let first = index[blob] else { return .unknownKey }
        var reasons: [String] = []
        for key in keys[first...] where key.isUsable && key.blob == blob {
            guard let reason = key.denial(address: address, now: now, timeZone: timeZone) else { return .granted(key) }
            reasons.append(reason)
        }
        return .refused(reasons)
    }

    /// The keys the server accepts.
    public var usableKeys: [AuthorizedKey] { keys.filter(\.isUsable) }

    /// What to log after loading: every skipped line and every refused key, by line number, e.g.
    /// `line 3: RSA keys are not supported by this server; use ed25519 or ECDSA (alice@laptop)`.
    public var diagnostics: [AuthorizedKeysProblem] {
        var out = problems
        for key in keys {
            guard let refusal = key.refusal else { continue }
            out.append(AuthorizedKeysProblem(line: key.line, message: key.comment.isEmpty ? refusal : "\(refusal) (\(key.comment))"))
        }
        return out.sorted { $0.line < $1.line }
    }
}
