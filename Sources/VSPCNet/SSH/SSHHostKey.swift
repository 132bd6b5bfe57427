import Crypto
import Foundation
import NIOSSH
import VSPCCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// OpenSSH's key fingerprints.
public enum SSHFingerprint {
    /// `SHA256:` and the unpadded base64 of the SHA-256 of the public key blob, as `ssh-keygen -l` prints it.
    public static func sha256<C: Collection>(_ blob: C) -> String where C.Element == UInt8 {
        var text = Data(SHA256.hash(data: Array(blob))).base64EncodedString()
        while text.hasSuffix("=") { text.removeLast() }
        return "SHA256:" + text
    }
}

extension AuthorizedKey {
    /// The key's OpenSSH fingerprint (`SHA256:...`).
    public var fingerprint: String { SSHFingerprint.sha256(blob) }
}

extension NIOSSHPublicKey {
    /// The key's type name and wire blob, as authorized_keys holds them.
    var typeAndBlob: (type: String, blob: [UInt8])? {
        let text = String(openSSHPublicKey: self)
        guard let space = text.firstIndex(of: " "),
              let data = Data(base64Encoded: String(text[text.index(after: space)...])) else { return nil }
        return (String(text[..<space]), [UInt8](data))
    }
}

public struct SSHHostKeyError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The server's ed25519 host key.
///
/// It lives in OpenSSH's own private key format (unencrypted `openssh-key-v1`, what `ssh-keygen -t ed25519 -N ''`
/// writes), so `ssh-keygen -lf PATH` prints its fingerprint and a key made by ssh-keygen can be used instead.
/// `loadOrCreate` reuses the file when it exists, so clients' known_hosts stay valid; when it is missing it creates
/// it (mode 0600 whatever the umask, missing parent folders 0700) together with `PATH.pub` (the public line for
/// known_hosts). A file that exists but is not a usable key stops start-up with a clear error: it is never
/// overwritten. A key file open to group or others (any of mode 077) stops start-up too, naming the file and
/// its mode.
public struct SSHHostKey: Sendable {
    public let privateKey: NIOSSHPrivateKey
    /// `ssh-ed25519 AAAA...`
    public let publicKeyText: String
    /// `SHA256:...`, as `ssh-keygen -lf` and ssh's "host key fingerprint" print it.
    public let fingerprint: String
    /// The file, or nil for a key made in memory.
    public let path: String?
    /// The file was created by this call.
    public let created: Bool
    /// Things to log: a `.pub` that could not be written.
    public let warnings: [String]

    init(seed: [UInt8], path: String?, created: Bool, warnings: [String]) throws {
        let key = try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
        let blob = OpenSSHKeyFile.ed25519PublicBlob(Array(key.publicKey.rawRepresentation))
        self.privateKey = NIOSSHPrivateKey(ed25519Key: key)
        self.publicKeyText = "ssh-ed25519 " + Data(blob).base64EncodedString()
        self.fingerprint = SSHFingerprint.sha256(blob)
        self.path = path
        self.created = created
        self.warnings = warnings
    }

    /// A fresh key that lives only in memory.
    public static func ephemeral() -> SSHHostKey {
        // A fresh Curve25519 seed is always 32 valid bytes.
        try! SSHHostKey(seed: Array(Curve25519.Signing.PrivateKey().rawRepresentation), path: nil, created: true, warnings: [])
    }

    /// Loads the key at `path`, or creates it there. Blocking file I/O: call it at start-up, never on an event loop.
    public static func loadOrCreate(at path: String, comment: String = "vspcd") throws -> SSHHostKey {
        if let key = try load(path) { return key }
        let directory = (path as NSString).deletingLastPathComponent
        try SSHFiles.makeDirectories(directory.isEmpty ? "." : directory)

        let fresh = Curve25519.Signing.PrivateKey()
        let file = OpenSSHKeyFile.Ed25519Key(publicKey: Array(fresh.publicKey.rawRepresentation),
                                             seed: Array(fresh.rawRepresentation), comment: comment)
        let text = OpenSSHKeyFile.encode(file, checkInt: UInt32.random(in: .min ... .max))
        let temporary = "\(path).tmp.\(getpid()).\(UInt32.random(in: .min ... .max))"
        do {
            try SSHFiles.writeNew(temporary, Array(text.utf8), mode: 0o600)
        } catch {
            throw SSHHostKeyError("cannot create ssh host key \(path): \(error)")
        }
        // link() publishes the complete file, and fails rather than replace a key another process just made.
        if link(temporary, path) != 0 {
            let code = errno
            unlink(temporary)
            if code == EEXIST, let key = try load(path) { return key }
            throw SSHHostKeyError("cannot create ssh host key \(path): \(SSHFiles.describe(code))")
        }
        unlink(temporary)
        SSHFiles.syncDirectory(directory.isEmpty ? "." : directory)

        var warnings: [String] = []
        let publicKeyText = "ssh-ed25519 " + Data(OpenSSHKeyFile.ed25519PublicBlob(file.publicKey)).base64EncodedString()
        let pub = Array("\(publicKeyText) \(comment)\n".utf8)
        do {
            let temporaryPub = "\(path).pub.tmp.\(getpid())"
            try SSHFiles.writeNew(temporaryPub, pub, mode: 0o644)
            if rename(temporaryPub, path + ".pub") != 0 {
                let code = errno
                unlink(temporaryPub)
                throw SSHHostKeyError(SSHFiles.describe(code))
            }
        } catch {
            warnings.append("cannot write \(path).pub: \(error)")
        }
        return try SSHHostKey(seed: file.seed, path: path, created: true, warnings: warnings)
    }

    /// The key in an existing file; nil when there is no file.
    static func load(_ path: String) throws -> SSHHostKey? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT { return nil }
            throw SSHHostKeyError("cannot read ssh host key \(path): \(SSHFiles.describe(code))")
        }
        let advice = "fix it, or remove it to have a new key made (clients will then see a changed host key)"
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw SSHHostKeyError("ssh host key \(path) is not a regular file; \(advice)")
        }
        let bytes: [UInt8]
        do {
            bytes = try SSHFiles.read(path, limit: 64 * 1024)
        } catch {
            throw SSHHostKeyError("cannot read ssh host key \(path): \(error)")
        }
        let file: OpenSSHKeyFile.Ed25519Key
        do {
            file = try OpenSSHKeyFile.decodeEd25519(String(decoding: bytes, as: UTF8.self))
        } catch {
            throw SSHHostKeyError("ssh host key \(path) \(error); \(advice)")
        }
        let derived = try? Curve25519.Signing.PrivateKey(rawRepresentation: file.seed)
        guard let derived, Array(derived.publicKey.rawRepresentation) == file.publicKey else {
            throw SSHHostKeyError("ssh host key \(path) is corrupt: its public half does not match its private half; \(advice)")
        }
        // Like sshd, a private host key that others may read (or write) is not used: whoever read it can pose as
        // this server.
        if info.st_mode & 0o077 != 0 {
            let mode = String(info.st_mode & 0o7777, radix: 8)
            throw SSHHostKeyError("ssh host key \(path) has mode 0\(mode): it is open to group or others, so it is "
                                  + "not used; chmod 600 \(path) (and consider the key exposed: remove it to have a "
                                  + "new one made)")
        }
        let key = try SSHHostKey(seed: file.seed, path: path, created: false, warnings: [])
        return key
    }
}

/// Small blocking POSIX file helpers for start-up and reloads (never on an event loop).
enum SSHFiles {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func describe(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// The whole file; fails when it is larger than `limit` bytes.
    static func read(_ path: String, limit: Int) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: describe(errno)) }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: describe(errno))
            }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
            if out.count > limit { throw Failure(description: "larger than \(limit) bytes") }
        }
    }

    /// Creates `path` (which must not exist) with exactly `mode`, writes `bytes` and syncs it to disk.
    static func writeNew(_ path: String, _ bytes: [UInt8], mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw Failure(description: describe(errno)) }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(path) }
        }
        guard fchmod(fd, mode) == 0 else { throw Failure(description: describe(errno)) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { systemWrite(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: describe(errno))
            }
            written += n
        }
        guard fsync(fd) == 0 else { throw Failure(description: describe(errno)) }
        ok = true
    }

    /// `mkdir -p`, each folder it creates getting mode 0700 whatever the umask.
    static func makeDirectories(_ path: String) throws {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else {
                throw SSHHostKeyError("cannot create \(path): it exists and is not a folder")
            }
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path { try makeDirectories(parent) }
        if mkdir(path, 0o700) != 0 {
            let code = errno
            if code == EEXIST { return }
            throw SSHHostKeyError("cannot create folder \(path): \(describe(code))")
        }
        chmod(path, 0o700)
    }

    /// Makes a rename or link in `directory` durable (best effort).
    static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}

#if canImport(Glibc)
private let systemRead = Glibc.read
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
private let systemRead = Darwin.read
private let systemWrite = Darwin.write
#endif
