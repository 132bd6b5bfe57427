import Foundation

/// Why an admin request line was refused. `message` is the text sent back in the JSON error.
public enum AdminRequestError: Error, Equatable, Sendable {
    /// The line is longer than `AdminProtocol.maxRequestBytes` (its length in bytes).
    case tooLong(Int)
    /// Not one JSON object of the request's shape.
    case malformed
    /// A `version` other than `AdminProtocol.version`.
    case unsupportedVersion(Int)
    /// A command other than those of `AdminCommand.Name` (its first 64 scalars).
    case unknownCommand(String)
    /// `tail`, `forget` or `history` without a `vm`.
    case missingVM(command: String)
    /// A `vm` longer than `AdminRequest.maxVMBytes` (its length in bytes).
    case vmTooLong(Int)
    /// A `label` that no serial port can have (see `SerialPortLabel`).
    case invalidLabel
    /// A negative `bytes`.
    case negativeBytes(Int)
    /// A `limit` below 1.
    case invalidLimit(Int)
    /// A `since` that is not an ISO 8601 time.
    case invalidSince
    /// A field of a `token-*` command out of its bounds (what is wrong with it).
    case invalidToken(String)
    /// A `ttl` out of 1...`ConsoleTokens.maxTTL`.
    case invalidTTL(Int)

    public var message: String {
        switch self {
        case .tooLong:
            return "request longer than \(AdminProtocol.maxRequestBytes) bytes"
        case .malformed:
            return "malformed request: expected one JSON object per line"
        case .unsupportedVersion(let v):
            return "unsupported protocol version \(v); this daemon speaks \(AdminProtocol.version)"
        case .unknownCommand(let c):
            return "unknown command \"\(DisplayText.escape(c))\""
        case .missingVM(let c):
            return "\(c) needs a vm"
        case .vmTooLong:
            return "vm longer than \(AdminRequest.maxVMBytes) bytes"
        case .invalidLabel:
            return "label must be printable ASCII without space, ':' or '#', at most \(SerialPortLabel.maxLength) characters"
        case .negativeBytes:
            return "bytes must not be negative"
        case .invalidLimit:
            return "limit must be a positive number"
        case .invalidSince:
            return "since must be an ISO 8601 time"
        case .invalidToken(let why):
            return why
        case .invalidTTL:
            return "ttl must be from 1 second to \(ConsoleTokens.maxTTL / 3600) hours"
        }
    }
}

/// What a checked admin request asks for: the daemon switches over this, never over the request's strings.
public enum AdminCommand: Equatable, Sendable {
    /// The listed consoles.
    case list
    /// The daemon at a glance.
    case status
    /// A console's scrollback (its last `bytes`), then its live output with `follow`. `label` nil: any label.
    case tail(vm: String, label: String?, bytes: Int?, follow: Bool)
    /// Remove an assignment; a connected VM's only with `force`.
    case forget(vm: String, label: String, force: Bool)
    /// A VM's events (of one serial port with `label`), since a time, the newest `limit` of them.
    case history(vm: String, label: String?, since: Date?, limit: Int)
    /// A new API token (its hash only).
    case tokenCreate(APITokenRequest)
    /// Every API token.
    case tokenList
    /// Revoke the API token with this id.
    case tokenRevoke(id: String)

    /// A one-time browser URL for a console (`label` nil: any label), good for `ttl` seconds.
    case url(vm: String, label: String?, readOnly: Bool, ttl: Int)

    /// The command names of protocol version 1, as the request's `command` spells them.
    public enum Name: String, CaseIterable, Sendable {
        case list, tail, status, forget, history, url
        case tokenCreate = "token-create", tokenList = "token-list", tokenRevoke = "token-revoke"
    }

    /// The command of a request whose fields `AdminRequest.parse` has checked.
    init(checked request: AdminRequest, _ name: Name) {
        switch name {
        case .list: self = .list
        case .status: self = .status
        case .tail:
            self = .tail(vm: request.vm ?? "", label: request.label, bytes: request.bytes, follow: request.follow == true)
        case .forget:
            self = .forget(vm: request.vm ?? "", label: request.label ?? "", force: request.force == true)
        case .history:
            self = .history(vm: request.vm ?? "", label: request.label,
                            since: request.since.flatMap(AdminProtocol.parseTimestamp),
                            limit: min(request.limit ?? AdminProtocol.maxHistoryEvents, AdminProtocol.maxHistoryEvents))
        case .tokenCreate:
            self = .tokenCreate(APITokenRequest(hash: request.tokenHash ?? "", vms: request.vms ?? [],
                                                readOnly: request.tokenReadOnly == true, ttl: request.tokenTTL,
                                                comment: request.comment ?? ""))
        case .tokenList: self = .tokenList
        case .tokenRevoke: self = .tokenRevoke(id: request.token ?? "")
        case .url:
            self = .url(vm: request.vm ?? "", label: request.label, readOnly: request.readOnly == true,
                        ttl: request.ttl ?? AdminProtocol.defaultURLTTL)
        }
    }
}

extension AdminRequest {
    /// The commands of protocol version 1.
    public static let commands: Set<String> = Set(AdminCommand.Name.allCases.map(\.rawValue))
    /// The longest `vm` accepted, in UTF-8 bytes.
    public static let maxVMBytes = 1024
    /// How much of an unknown command is echoed in the error, in Unicode scalars.
    static let maxEchoedCommand = 64

    /// Parses one request line (without its newline) and checks it: length, JSON shape, version, command,
    /// and the bounds of `vm`, `label` and `bytes`. Pure; never traps, whatever the bytes.
    public static func parse(_ line: [UInt8]) -> Result<AdminRequest, AdminRequestError> {
        check(line).map(\.request)
    }

    /// `parse`, as the command the request asks for.
    public static func parseCommand(_ line: [UInt8]) -> Result<AdminCommand, AdminRequestError> {
        check(line).map(\.command)
    }

    static func check(_ line: [UInt8]) -> Result<(request: AdminRequest, command: AdminCommand), AdminRequestError> {
        guard line.count <= AdminProtocol.maxRequestBytes else { return .failure(.tooLong(line.count)) }
        let request: AdminRequest
        do {
            request = try JSONDecoder().decode(AdminRequest.self, from: Data(line))
        } catch {
            return .failure(.malformed)
        }
        guard request.version == AdminProtocol.version else { return .failure(.unsupportedVersion(request.version)) }
        guard let name = AdminCommand.Name(rawValue: request.command) else {
            let clipped = String.UnicodeScalarView(request.command.unicodeScalars.prefix(maxEchoedCommand))
            return .failure(.unknownCommand(String(clipped)))
        }
        if let vm = request.vm, vm.utf8.count > maxVMBytes { return .failure(.vmTooLong(vm.utf8.count)) }
        if name == .tail || name == .forget || name == .history || name == .url, (request.vm ?? "").isEmpty {
            return .failure(.missingVM(command: request.command))
        }
        if let label = request.label, !SerialPortLabel.isValid(label) { return .failure(.invalidLabel) }
        if let bytes = request.bytes, bytes < 0 { return .failure(.negativeBytes(bytes)) }
        if let limit = request.limit, limit < 1 { return .failure(.invalidLimit(limit)) }
        if let since = request.since, AdminProtocol.parseTimestamp(since) == nil { return .failure(.invalidSince) }
        if let why = checkToken(request, name) { return .failure(.invalidToken(why)) }
        if let ttl = request.ttl, !(1...ConsoleTokens.maxTTL).contains(ttl) { return .failure(.invalidTTL(ttl)) }
        return .success((request, AdminCommand(checked: request, name)))
    }
}

extension AdminRequest {
    /// What is wrong with the fields of a `token-*` request, or nil.
    static func checkToken(_ request: AdminRequest, _ name: AdminCommand.Name) -> String? {
        switch name {
        case .tokenCreate:
            guard let hash = request.tokenHash, APIToken.isHash(hash) else {
                return "token-create needs tokenHash, a SHA-256 as 64 lowercase hex digits"
            }
            let globs = request.vms ?? []
            if globs.count > APITokenRequest.maxGlobs { return "at most \(APITokenRequest.maxGlobs) vms globs" }
            for glob in globs where glob.isEmpty || glob.utf8.count > APITokenRequest.maxGlobBytes
                || glob.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                return "each vms glob must be 1 to \(APITokenRequest.maxGlobBytes) bytes, without control characters"
            }
            if let ttl = request.tokenTTL, !(ttl > 0 && ttl <= APITokenRequest.maxTTL) {
                return "tokenTTL must be more than 0 and at most \(Int(APITokenRequest.maxTTL)) seconds"
            }
            if let comment = request.comment, comment.utf8.count > APITokenRequest.maxCommentBytes
                || comment.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                return "comment must be at most \(APITokenRequest.maxCommentBytes) bytes, without control characters"
            }
        case .tokenRevoke:
            guard let id = request.token, !id.isEmpty, id.utf8.count <= 64 else { return "token-revoke needs token, a token id" }
        default:
            break
        }
        return nil
    }
}
