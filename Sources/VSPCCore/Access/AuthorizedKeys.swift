import Foundation

/// The authorized_keys parser: OpenSSH's format, one key per line, with options before the key type.
///
///     vms="web-*,db-0?",read-only,from="10.1.0.0/16" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... alice@laptop
///
/// Options honoured (names ignore case):
/// * `vms="glob,glob"`: the VMs the key may reach: plain globs by name, `uuid:` globs by uuid (see `VMGlob`);
///   default every VM. A negated glob (`!x`) is refused rather than misread.
/// * `read-only`: the session may watch but not type. `read-write`: it may type (the default; see `restrict`).
/// * `from="pattern-list"`: the client addresses the key may be used from (see `AddressPatternList`).
/// * `expiry-time="YYYYMMDD[HHMM[SS]][Z]"`: the key stops working then (see `ExpiryTime`).
/// * `no-pty`: sessions get no terminal; `pty` gives it back after `restrict` (`no-pty` wins over `pty`).
/// * `restrict`: read-only and no terminal, unless the line also says `read-write` or `pty`.
/// * `no-agent-forwarding`, `no-port-forwarding`, `no-x11-forwarding`, `no-user-rc`: accepted; this server never
///   offers what they forbid.
///
/// Every other option, OpenSSH's (`command=`, `environment=`, `permitopen=`, `permitlisten=`, `principals=`,
/// `tunnel=`, `cert-authority`, `verify-required`, `no-touch-required`, `agent-forwarding`, `port-forwarding`,
/// `x11-forwarding`, `user-rc`) or unknown, makes the line skipped with a problem naming the option: honouring
/// part of a line could give the key more than it says (a `command=` key would get a console).
/// * Quoted values may hold commas, spaces and `\"`.
/// * Key types: `ssh-ed25519`, `ecdsa-sha2-nistp256`, `-nistp384`, `-nistp521`. `ssh-rsa`, `ssh-dss`, security-key
///   and certificate lines are parsed but refused with a reason (`AuthorizedKey.refusal`).
///
/// Malformed lines are reported with their line number and skipped; nothing the file holds can make the parser fail.
/// Lines end with LF or CRLF; blank lines and `#` comments are skipped; a line longer than `maxLineLength` bytes is
/// a problem.
extension AuthorizedKeys {
    public static let maxLineLength = 16 * 1024

    public static func parse(_ text: String, maxLineLength: Int = maxLineLength) -> AuthorizedKeys {
        parse(Array(text.utf8), maxLineLength: maxLineLength)
    }

    public static func parse<C: Collection>(_ input: C, maxLineLength: Int = maxLineLength) -> AuthorizedKeys
    where C.Element == UInt8 {
        let bytes = Array(input)
        var keys: [AuthorizedKey] = []
        var problems: [AuthorizedKeysProblem] = []
        var start = 0
        var number = 0
        while start < bytes.count {
            number += 1
            let end = bytes[start...].firstIndex(of: 0x0A) ?? bytes.count
            var line = bytes[start..<end]
            start = end + 1
            if line.last == 0x0D { line = line.dropLast() }
            if line.count > maxLineLength {
                problems.append(.init(line: number, message: "line is longer than \(maxLineLength) bytes"))
                continue
            }
            var parser = LineParser(line: line, number: number)
            switch parser.parse() {
            case .none: break
            case .key(let key): keys.append(key)
            case .problem(let message): problems.append(.init(line: number, message: message))
            }
        }
        return AuthorizedKeys(keys: keys, problems: problems)
    }
}

private enum LineOutcome {
    case none
    case key(AuthorizedKey)
    case problem(String)
}

private struct ParseFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

private enum KeyTypes {
    static let rsa = "RSA keys are not supported by this server; use ed25519 or ECDSA"

    /// nil: not a key type; "": accepted; otherwise the reason the type is refused.
    static func refusal(for type: String) -> String? {
        switch type {
        case "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521":
            return ""
        case "ssh-rsa":
            return rsa
        case "ssh-dss":
            return "DSA keys are not supported by this server; use ed25519 or ECDSA"
        case "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com":
            return "security-key (FIDO) keys are not supported by this server; use ed25519 or ECDSA"
        default:
            if type.hasSuffix("-cert-v01@openssh.com") {
                return "certificates are not supported by this server; list the plain ed25519 or ECDSA key"
            }
            return nil
        }
    }

    static let ecdsaCurves = [
        "ecdsa-sha2-nistp256": ("nistp256", 65), "ecdsa-sha2-nistp384": ("nistp384", 97),
        "ecdsa-sha2-nistp521": ("nistp521", 133),
    ]
}

private enum OptionKind {
    case flag, valued
}

private enum Options {
    /// Options that forbid what this server never offers: nothing to do.
    static let acceptedFlags: Set<String> = ["no-agent-forwarding", "no-port-forwarding", "no-x11-forwarding", "no-user-rc"]
    /// OpenSSH's options this server does not implement: the line is skipped.
    static let unsupported: [String: OptionKind] = [
        "command": .valued, "environment": .valued, "permitopen": .valued, "permitlisten": .valued,
        "principals": .valued, "tunnel": .valued, "cert-authority": .flag, "verify-required": .flag,
        "no-touch-required": .flag, "agent-forwarding": .flag, "port-forwarding": .flag, "x11-forwarding": .flag,
        "user-rc": .flag,
    ]
}

private struct LineParser {
    let line: ArraySlice<UInt8>
    let number: Int
    var i: Int
    var vms: [String]?
    var readOnly = false
    var readWrite = false
    var restrict = false
    var noPTY = false
    var pty = false
    var from: AddressPatternList?
    var expiry: ExpiryTime?

    init(line: ArraySlice<UInt8>, number: Int) {
        self.line = line
        self.number = number
        self.i = line.startIndex
    }

    static func isBlank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }

    mutating func skipBlanks() {
        while i < line.endIndex, Self.isBlank(line[i]) { i += 1 }
    }

    /// The bytes from the cursor to the next blank (or the end); the cursor moves past them.
    mutating func token() -> ArraySlice<UInt8> {
        let start = i
        while i < line.endIndex, !Self.isBlank(line[i]) { i += 1 }
        return line[start..<i]
    }

    mutating func parse() -> LineOutcome {
        skipBlanks()
        guard i < line.endIndex, line[i] != UInt8(ascii: "#") else { return .none }
        do {
            var save = self
            let first = String(decoding: save.token(), as: UTF8.self)
            if KeyTypes.refusal(for: first) == nil {
                try parseOptions(firstToken: first)
                if readOnly && readWrite { throw ParseFailure("options read-only and read-write contradict each other") }
                skipBlanks()
            }
            return .key(try parseKey())
        } catch let failure as ParseFailure {
            return .problem(failure.message)
        } catch {
            return .problem("\(error)")
        }
    }

    mutating func parseKey() throws -> AuthorizedKey {
        let typeBytes = token()
        guard !typeBytes.isEmpty else { throw ParseFailure("no key after the options") }
        let type = String(decoding: typeBytes, as: UTF8.self)
        guard let refusal = KeyTypes.refusal(for: type) else {
            throw ParseFailure("unknown key type \(Self.show(typeBytes))")
        }
        skipBlanks()
        let encoded = token()
        guard !encoded.isEmpty else { throw ParseFailure("no key data after \(type)") }
        guard let decoded = Data(base64Encoded: Data(encoded)), !decoded.isEmpty else {
            throw ParseFailure("the \(type) key data is not valid base64")
        }
        let blob = [UInt8](decoded)
        if refusal.isEmpty { try Self.validate(blob: blob, type: type) }
        skipBlanks()
        var comment = line[i...]
        while let last = comment.last, Self.isBlank(last) { comment = comment.dropLast() }
        return AuthorizedKey(keyType: type, blob: blob, comment: Self.clean(comment), vms: vms,
                             readOnly: readOnly || (restrict && !readWrite), from: from, expiry: expiry,
                             noPTY: noPTY || (restrict && !pty), line: number, refusal: refusal.isEmpty ? nil : refusal)
    }

    mutating func parseOptions(firstToken: String) throws {
        while true {
            let nameStart = i
            while i < line.endIndex, !Self.isBlank(line[i]),
                  line[i] != UInt8(ascii: ","), line[i] != UInt8(ascii: "="), line[i] != UInt8(ascii: "\"") {
                i += 1
            }
            let nameBytes = line[nameStart..<i]
            guard !nameBytes.isEmpty else {
                throw ParseFailure(i < line.endIndex && line[i] == UInt8(ascii: "\"")
                                   ? "unexpected quote in the options" : "empty option in the options")
            }
            var value: [UInt8]?
            if i < line.endIndex, line[i] == UInt8(ascii: "=") {
                i += 1
                value = try quotedValue(name: nameBytes)
            } else if i < line.endIndex, line[i] == UInt8(ascii: "\"") {
                throw ParseFailure("unexpected quote after option \(Self.show(nameBytes))")
            }
            try apply(name: nameBytes, value: value, firstToken: firstToken)
            guard i < line.endIndex else { throw ParseFailure("no key after the options") }
            if line[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            if Self.isBlank(line[i]) { return }
            throw ParseFailure("unexpected character after option \(Self.show(nameBytes))")
        }
    }

    /// A `"..."` value at the cursor; `\"` stands for a quote, every other byte for itself.
    mutating func quotedValue(name: ArraySlice<UInt8>) throws -> [UInt8] {
        guard i < line.endIndex, line[i] == UInt8(ascii: "\"") else {
            throw ParseFailure("option \(Self.show(name)) needs a quoted value")
        }
        i += 1
        var value: [UInt8] = []
        while i < line.endIndex {
            let b = line[i]
            if b == UInt8(ascii: "\\"), i + 1 < line.endIndex, line[i + 1] == UInt8(ascii: "\"") {
                value.append(UInt8(ascii: "\""))
                i += 2
            } else if b == UInt8(ascii: "\"") {
                i += 1
                return value
            } else {
                value.append(b)
                i += 1
            }
        }
        throw ParseFailure("unterminated quote in option \(Self.show(name))")
    }

    mutating func apply(name nameBytes: ArraySlice<UInt8>, value: [UInt8]?, firstToken: String) throws {
        let name = String(decoding: nameBytes, as: UTF8.self).lowercased()
        let shown = Self.show(nameBytes)
        func needs(_ kind: OptionKind) throws {
            switch (kind, value) {
            case (.flag, .some): throw ParseFailure("option \(shown) takes no value")
            case (.valued, .none): throw ParseFailure("option \(shown) needs a value (\(name)=\"...\")")
            default: break
            }
        }
        switch name {
        case "vms":
            try needs(.valued)
            guard vms == nil else { throw ParseFailure("option vms is given twice") }
            vms = try Self.globs(value ?? [])
        case "read-only":
            try needs(.flag)
            readOnly = true
        case "read-write":
            try needs(.flag)
            readWrite = true
        case "restrict":
            try needs(.flag)
            restrict = true
        case "no-pty":
            try needs(.flag)
            noPTY = true
        case "pty":
            try needs(.flag)
            pty = true
        case "from":
            try needs(.valued)
            guard from == nil else { throw ParseFailure("option from is given twice") }
            switch AddressPatternList.parse(try Self.text(value ?? [], option: "from")) {
            case .success(let list): from = list
            case .failure(let error): throw ParseFailure(error.message)
            }
        case "expiry-time":
            try needs(.valued)
            guard expiry == nil else { throw ParseFailure("option expiry-time is given twice") }
            switch ExpiryTime.parse(try Self.text(value ?? [], option: "expiry-time")) {
            case .success(let time): expiry = time
            case .failure(let error): throw ParseFailure(error.message)
            }
        case _ where Options.acceptedFlags.contains(name):
            try needs(.flag)
        case _ where Options.unsupported[name] != nil:
            throw ParseFailure("option \(shown) is not supported by this server; the line is skipped rather than "
                               + "give the key more access than it says")
        default:
            if value == nil, String(decoding: nameBytes, as: UTF8.self) == firstToken {
                throw ParseFailure("unknown key type or option \(shown)")
            }
            throw ParseFailure("unknown option \(shown)")
        }
    }

    static func text(_ value: [UInt8], option: String) throws -> String {
        guard let text = String(bytes: value, encoding: .utf8) else {
            throw ParseFailure("option \(option) is not valid UTF-8")
        }
        return text
    }

    static func globs(_ value: [UInt8]) throws -> [String] {
        let text = try Self.text(value, option: "vms")
        var globs: [String] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let glob = part.trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
            if glob.isEmpty { continue }
            if glob.hasPrefix("!") {
                throw ParseFailure("negated VM patterns (\(show(Array(glob.utf8)[...]))) are not supported in vms")
            }
            if glob.lowercased().hasPrefix(VMGlob.uuidPrefix) {
                let body = glob.dropFirst(VMGlob.uuidPrefix.count)
                guard !body.isEmpty, body.allSatisfy({ $0.isHexDigit || "*?-{} ".contains($0) }) else {
                    throw ParseFailure("uuid glob \(show(Array(glob.utf8)[...])) in vms must be hex digits, -, * and ?")
                }
            }
            globs.append(glob)
        }
        guard !globs.isEmpty else {
            throw ParseFailure("option vms lists no VM (leave it out to allow every VM)")
        }
        return globs
    }

    /// Checks that the blob is the key the line says: its type string, then the key's fields and nothing more.
    static func validate(blob: [UInt8], type: String) throws {
        var reader = SSHWireReader(blob[...])
        let bad = ParseFailure("the key data is not a valid \(type) key")
        guard let embedded = reader.readString() else { throw bad }
        guard embedded.elementsEqual(type.utf8) else {
            if embedded.count <= 64, embedded.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
                throw ParseFailure("the key data is a \(String(decoding: embedded, as: UTF8.self)) key, not \(type)")
            }
            throw bad
        }
        if type == "ssh-ed25519" {
            guard let point = reader.readString(), point.count == 32 else { throw bad }
        } else if let (curve, length) = KeyTypes.ecdsaCurves[type] {
            guard let name = reader.readString(), name.elementsEqual(curve.utf8),
                  let point = reader.readString(), point.count == length, point.first == 0x04 else { throw bad }
        }
        guard reader.isAtEnd else { throw bad }
    }

    /// File text for a message: at most 40 characters, control characters as `?`, in quotes.
    static func show(_ bytes: ArraySlice<UInt8>) -> String {
        let text = clean(bytes)
        return "\"" + (text.count > 40 ? String(text.prefix(40)) + "..." : text) + "\""
    }

    /// UTF-8 (invalid sequences as U+FFFD) with control characters replaced by `?`.
    static func clean(_ bytes: ArraySlice<UInt8>) -> String {
        var out = String.UnicodeScalarView()
        for scalar in String(decoding: bytes, as: UTF8.self).unicodeScalars {
            let v = scalar.value
            out.append(v < 0x20 || (v >= 0x7F && v <= 0x9F) ? "?" : scalar)
        }
        return String(out)
    }
}

/// Reads RFC 4251 `string`s (a 4-byte big-endian length, then that many bytes) from a byte slice.
struct SSHWireReader {
    var rest: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { rest = bytes }

    var isAtEnd: Bool { rest.isEmpty }

    mutating func readUInt32() -> UInt32? {
        guard rest.count >= 4 else { return nil }
        let value = rest.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        rest = rest.dropFirst(4)
        return value
    }

    mutating func readString() -> ArraySlice<UInt8>? {
        let saved = rest
        guard let length = readUInt32(), Int(length) <= rest.count else {
            rest = saved
            return nil
        }
        let value = rest.prefix(Int(length))
        rest = rest.dropFirst(Int(length))
        return value
    }
}
