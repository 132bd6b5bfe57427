import Foundation

/// OpenSSH's private key file ("openssh-key-v1", described in OpenSSH's PROTOCOL.key) holding one unencrypted
/// ed25519 key: the file `ssh-keygen -t ed25519 -N ''` writes. vspcd keeps its SSH host key in this format, so
/// `ssh-keygen -lf` prints its fingerprint and an operator may bring a key made by ssh-keygen.
public enum OpenSSHKeyFile {
    public struct Ed25519Key: Sendable, Equatable {
        /// The 32-byte public key.
        public var publicKey: [UInt8]
        /// The 32-byte private seed.
        public var seed: [UInt8]
        public var comment: String

        public init(publicKey: [UInt8], seed: [UInt8], comment: String) {
            self.publicKey = publicKey
            self.seed = seed
            self.comment = comment
        }
    }

    /// Why a file is not a usable key; the text is meant to follow the file's path in a message.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    static let begin = "-----BEGIN OPENSSH PRIVATE KEY-----"
    static let end = "-----END OPENSSH PRIVATE KEY-----"
    static let magic = Array("openssh-key-v1".utf8) + [0]
    static let ed25519 = "ssh-ed25519"

    /// The public key blob (`string "ssh-ed25519", string key`), as in authorized_keys and known_hosts.
    public static func ed25519PublicBlob(_ publicKey: [UInt8]) -> [UInt8] {
        var w = SSHWireWriter()
        w.writeString(Array(ed25519.utf8))
        w.writeString(publicKey)
        return w.bytes
    }

    /// The file's text. `checkInt` is the random number OpenSSH stores twice to tell a wrong passphrase; any value
    /// does for an unencrypted key.
    public static func encode(_ key: Ed25519Key, checkInt: UInt32) -> String {
        var secret = SSHWireWriter()
        secret.writeUInt32(checkInt)
        secret.writeUInt32(checkInt)
        secret.writeString(Array(ed25519.utf8))
        secret.writeString(key.publicKey)
        secret.writeString(key.seed + key.publicKey)
        secret.writeString(Array(key.comment.utf8))
        var pad: UInt8 = 1
        while secret.bytes.count % 8 != 0 {
            secret.bytes.append(pad)
            pad += 1
        }
        var w = SSHWireWriter()
        w.bytes = magic
        w.writeString(Array("none".utf8))
        w.writeString(Array("none".utf8))
        w.writeString([])
        w.writeUInt32(1)
        w.writeString(ed25519PublicBlob(key.publicKey))
        w.writeString(secret.bytes)
        let encoded = Data(w.bytes).base64EncodedString()
        var lines = [begin]
        var rest = Substring(encoded)
        while !rest.isEmpty {
            lines.append(String(rest.prefix(70)))
            rest = rest.dropFirst(70)
        }
        lines.append(end)
        return lines.joined(separator: "\n") + "\n"
    }

    public static func decodeEd25519(_ text: String) throws -> Ed25519Key {
        try decodeWithCheckInt(text).key
    }

    static func decodeWithCheckInt(_ text: String) throws -> (key: Ed25519Key, checkInt: UInt32) {
        guard let b = text.range(of: begin), let e = text.range(of: end, range: b.upperBound..<text.endIndex) else {
            if text.contains(begin) { throw Failure("is truncated (no \(end) line)") }
            if let other = text.range(of: "-----BEGIN ") {
                let label = text[other.upperBound...].prefix { $0 != "-" && $0 != "\n" }.prefix(40)
                throw Failure("holds a PEM \"\(label)\", not an OpenSSH private key")
            }
            throw Failure("is not an OpenSSH private key (no \(begin) line)")
        }
        let body = text[b.upperBound..<e.lowerBound].filter { !$0.isWhitespace }
        guard let data = Data(base64Encoded: String(body)) else { throw Failure("is corrupt: bad base64") }
        var r = SSHWireReader([UInt8](data)[...])
        let corrupt = Failure("is corrupt: not a well-formed openssh-key-v1 structure")
        guard r.rest.starts(with: magic) else { throw Failure("is not an openssh-key-v1 key") }
        r.rest = r.rest.dropFirst(magic.count)
        guard let cipher = r.readString(), r.readString() != nil, r.readString() != nil,
              let count = r.readUInt32() else { throw corrupt }
        guard cipher.elementsEqual("none".utf8) else {
            throw Failure("is encrypted with a passphrase; vspcd needs an unencrypted key")
        }
        guard count == 1 else { throw Failure("holds \(count) keys; vspcd needs exactly one") }
        guard let publicBlob = r.readString(), let secretBytes = r.readString() else { throw corrupt }
        var pub = SSHWireReader(publicBlob)
        guard let type = pub.readString() else { throw corrupt }
        guard type.elementsEqual(ed25519.utf8) else {
            let name = type.count <= 64 && type.allSatisfy({ $0 > 0x20 && $0 < 0x7F })
                ? String(decoding: type, as: UTF8.self) : "unknown"
            throw Failure("is a \(name) key; vspcd's host key must be ssh-ed25519")
        }
        guard let publicKey = pub.readString(), publicKey.count == 32, pub.isAtEnd else { throw corrupt }
        var s = SSHWireReader(secretBytes)
        guard let check1 = s.readUInt32(), let check2 = s.readUInt32(), check1 == check2 else { throw corrupt }
        guard let type2 = s.readString(), type2.elementsEqual(ed25519.utf8),
              let publicKey2 = s.readString(), publicKey2.elementsEqual(publicKey),
              let secret = s.readString(), secret.count == 64, secret.suffix(32).elementsEqual(publicKey),
              let comment = s.readString() else { throw corrupt }
        for (i, byte) in s.rest.enumerated() where Int(byte) != i + 1 { throw corrupt }
        let key = Ed25519Key(publicKey: Array(publicKey), seed: Array(secret.prefix(32)),
                             comment: String(decoding: comment, as: UTF8.self))
        return (key, check1)
    }
}

/// Writes RFC 4251 `uint32`s and `string`s.
struct SSHWireWriter {
    var bytes: [UInt8] = []

    mutating func writeUInt32(_ value: UInt32) {
        bytes.append(contentsOf: [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)])
    }

    mutating func writeString<C: Collection>(_ value: C) where C.Element == UInt8 {
        writeUInt32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }
}
