import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSH
import VSPCCore

/// The authorized keys in force, shared by every connection of an `SSHServer`. `replace(with:)` (on SIGHUP or when
/// the file changes) applies to the next authentication; sessions already open keep the key they authenticated with
/// and are not dropped. Thread-safe.
public final class AuthorizedKeysHolder: Sendable {
    private let box: NIOLockedValueBox<AuthorizedKeys>

    public init(_ keys: AuthorizedKeys = .empty) {
        box = NIOLockedValueBox(keys)
    }

    public var current: AuthorizedKeys { box.withLockedValue { $0 } }

    public func replace(with keys: AuthorizedKeys) {
        box.withLockedValue { $0 = keys }
    }

    /// Reads and parses an authorized_keys file. Blocking file I/O: call it off the event loops (at start-up, or on
    /// a thread pool for a reload). Throws when the file cannot be read or holds more than `maxBytes`; malformed
    /// lines do not throw, they are `problems` of the result (log its `diagnostics`).
    public static func load(path: String, maxBytes: Int = 4 << 20) throws -> AuthorizedKeys {
        do {
            return AuthorizedKeys.parse(try SSHFiles.read(path, limit: maxBytes))
        } catch {
            throw AuthorizedKeysFileError(path: path, reason: "\(error)")
        }
    }
}

public struct AuthorizedKeysFileError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "cannot read authorized keys \(path): \(reason)" }
}

extension AuthorizedKeys {
    /// Logs what a load found: each skipped line and refused key as a warning, then a one-line summary.
    public func log(path: String, to logger: Logger) {
        for problem in diagnostics {
            logger.warning("authorized keys \(path) \(problem)")
        }
        let refused = keys.count - usableKeys.count
        logger.notice("authorized keys \(path): \(usableKeys.count) key(s) accepted, \(refused) refused, \(problems.count) line(s) skipped")
    }
}

/// What one SSH connection has done so far; touched only on the connection's event loop.
final class SSHConnectionState {
    let peer: String
    /// The client's address (nil when it cannot be read), for `from=` and the per-source limits.
    let address: IPAddress?
    /// Why lines holding a key the client proved it holds did not let it in (`from=`, `expiry-time=`).
    private(set) var denials: [String] = []
    /// The user name of the latest authentication request.
    var user: String?
    /// Keys (type and fingerprint) the client proved it holds that are not authorized, the first few.
    private(set) var refusedKeys: [String] = []
    private(set) var refusedCount = 0
    var authenticated: (key: AuthorizedKey, fingerprint: String, user: String)?
    var sessions = 0
    /// Why the server dropped the connection, for the sessions it carried (nil: it did not).
    var dropCause: SSHSessionEnd?
    /// Called once when authentication succeeds (swift-nio-ssh fires no event for it on a server).
    var onAuthenticated: (() -> Void)?

    init(peer: String, address: IPAddress? = nil) {
        self.peer = peer
        self.address = address
    }

    func denied(type: String, fingerprint: String, reasons: [String]) {
        guard denials.count < 4 else { return }
        denials.append("key \(type) \(fingerprint): \(reasons.prefix(4).joined(separator: "; "))")
    }

    func refused(type: String, fingerprint: String) {
        refusedCount += 1
        if refusedKeys.count < 4 { refusedKeys.append("\(type) \(fingerprint)") }
    }

    /// `ssh-ed25519 SHA256:... is not in the authorized keys`, or the same for several keys.
    var refusalSummary: String {
        let more = refusedCount > refusedKeys.count ? " and \(refusedCount - refusedKeys.count) more" : ""
        return refusedCount == 1
            ? "key \(refusedKeys[0]) is not in the authorized keys"
            : "keys \(refusedKeys.joined(separator: ", "))\(more) are not in the authorized keys"
    }
}

/// Public-key authentication against the authorized keys in force. swift-nio-ssh has verified the signature before
/// it asks; key types it cannot read (RSA, DSA, security keys) never get here. A connection that ends without
/// authenticating gets one log line from `SSHConnectionGuard`: the keys refused, or that no usable key was offered.
final class SSHKeyAuthenticator: NIOSSHServerUserAuthenticationDelegate {
    let keys: AuthorizedKeysHolder
    let state: SSHConnectionState
    let logger: Logger

    init(keys: AuthorizedKeysHolder, state: SSHConnectionState, logger: Logger) {
        self.keys = keys
        self.state = state
        self.logger = logger
    }

    var supportedAuthenticationMethods: NIOSSHAvailableUserAuthenticationMethods { .publicKey }

    func requestReceived(request: NIOSSHUserAuthenticationRequest,
                         responsePromise: EventLoopPromise<NIOSSHUserAuthenticationOutcome>) {
        state.user = request.username
        guard case .publicKey(let offer) = request.request else {
            if case .password = request.request {
                logger.debug("ssh: \(state.peer) (user \(SSHLogText.clean(request.username))) tried a password; only keys are accepted")
            }
            responsePromise.succeed(.failure)
            return
        }
        guard let (type, blob) = offer.publicKey.typeAndBlob else {
            responsePromise.succeed(.failure)
            return
        }
        let fingerprint = SSHFingerprint.sha256(blob)
        let key: AuthorizedKey
        switch keys.current.authorize(blob: blob, address: state.address, now: Date(), timeZone: .current) {
        case .granted(let granted):
            key = granted
        case .unknownKey:
            // Logged once, when the connection ends without authenticating (see SSHConnectionGuard).
            logger.debug("ssh: \(state.peer) offered \(type) key \(fingerprint), which is not in the authorized keys")
            state.refused(type: type, fingerprint: fingerprint)
            responsePromise.succeed(.failure)
            return
        case .refused(let reasons):
            logger.debug("ssh: \(state.peer) offered \(type) key \(fingerprint), refused: \(reasons.joined(separator: "; "))")
            state.denied(type: type, fingerprint: fingerprint, reasons: reasons)
            responsePromise.succeed(.failure)
            return
        }
        state.authenticated = (key, fingerprint, request.username)
        state.onAuthenticated?()
        state.onAuthenticated = nil
        let person = SSHLogText.clean(key.comment)
        logger.info("ssh: \(state.peer) authenticated with \(fingerprint) (\(person)) as user \(SSHLogText.clean(request.username))")
        responsePromise.succeed(.success)
    }
}

/// Text from the network made safe for a log line.
enum SSHLogText {
    /// At most 80 characters, control characters as `?`, quoted when empty.
    static func clean(_ text: String) -> String {
        if text.isEmpty { return "\"\"" }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars.prefix(80) {
            let v = scalar.value
            out.append(v < 0x20 || (v >= 0x7F && v <= 0x9F) ? "?" : scalar)
        }
        return String(out) + (text.unicodeScalars.count > 80 ? "..." : "")
    }
}
