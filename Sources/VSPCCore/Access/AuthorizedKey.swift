import Foundation

/// One key line of an authorized_keys file: who may attach to which consoles, and how.
public struct AuthorizedKey: Sendable, Hashable {
    /// The key type as written: `ssh-ed25519`, `ecdsa-sha2-nistp256`, ..., or a refused type such as `ssh-rsa`.
    public var keyType: String
    /// The public key blob (the base64 field, decoded): what the client offers, byte for byte.
    public var blob: [UInt8]
    /// The comment after the key (control characters replaced by `?`); it names the person in history.
    public var comment: String
    /// The `vms="..."` globs, matched against the VM's name or uuid; nil when the option is absent (every VM).
    public var vms: [String]?
    /// `read-only`: the session's keystrokes never reach the VM.
    public var readOnly: Bool
    /// 1-based line number in the file.
    public var line: Int
    /// Why this server will not accept the key (an RSA key, for one); nil for a usable key.
    public var refusal: String?

    public init(keyType: String, blob: [UInt8], comment: String = "", vms: [String]? = nil, readOnly: Bool = false,
                line: Int = 0, refusal: String? = nil) {
        self.keyType = keyType
        self.blob = blob
        self.comment = comment
        self.vms = vms
        self.readOnly = readOnly
        self.line = line
        self.refusal = refusal
    }

    /// Whether the server accepts this key at all.
    public var isUsable: Bool { refusal == nil }

    /// The key as OpenSSH writes it, without options or comment: `ssh-ed25519 AAAA...`.
    public var publicKeyText: String { keyType + " " + Data(blob).base64EncodedString() }

    /// Whether this key may reach the VM called `vmName` whose uuid is `uuid` (any spelling). A glob matches the
    /// name exactly (case-sensitive), or the uuid in its 32-hex, 16-16 (`xxxxxxxxxxxxxxxx-xxxxxxxxxxxxxxxx`) or
    /// RFC 4122 form, ignoring case. Without `vms=`, every VM. A refused key reaches nothing.
    public func permits(vmName: String, uuid: String) -> Bool {
        guard isUsable else { return false }
        guard let vms else { return true }
        let uuidForms = VMUUIDForms.forms(of: uuid)
        for glob in vms {
            if VMGlob.matches(glob, vmName) { return true }
            let lowered = Array(glob.lowercased())
            for form in uuidForms where VMGlob.matches(lowered, Array(form)) { return true }
        }
        return false
    }
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
