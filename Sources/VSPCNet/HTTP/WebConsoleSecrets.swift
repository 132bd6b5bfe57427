import Crypto
import Foundation
import NIOConcurrencyHelpers
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The secrets of the browser console, made and hashed here in the driver (the core sees hashes only): console
/// URL tokens and the cookies that tie a session to its browser; and who asks for a token on the admin socket.
enum WebConsoleSecrets {
    /// 256 random bits from the system's generator, base64url without padding (43 characters), and its SHA-256.
    static func makeToken() -> (token: String, hash: String) {
        let token = randomText()
        return (token, hash(token))
    }

    static func randomText() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        for _ in 0..<4 { withUnsafeBytes(of: generator.next() as UInt64) { bytes.append(contentsOf: $0) } }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// SHA-256 as 64 lowercase hex digits: how console-URL and API tokens are kept (`vspc token create` sends
    /// the same hash of its token to the daemon).
    static func hash(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// A token as it may appear in a path: base64url, 16 to 128 characters (anything else is no token at all).
    static func isTokenShaped(_ text: Substring) -> Bool {
        (16...128).contains(text.utf8.count)
            && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x5F }
    }

    /// The user id of the peer of an admin connection on a Unix socket (`SO_PEERCRED`); nil over TCP. Read on
    /// the channel's loop (a system call on its own socket, answered at once).
    static func peerUID(_ channel: any Channel) -> UInt32? {
        #if os(Linux)
        guard case .unixDomainSocket? = channel.localAddress, let provider = channel as? any SocketOptionProvider else {
            return nil
        }
        struct PeerCredentials { var pid: Int32 = 0; var uid: UInt32 = 0; var gid: UInt32 = 0 }
        let future: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: NIOBSDSocket.OptionLevel.socket, name: NIOBSDSocket.Option(rawValue: 17 /* SO_PEERCRED */))
        // Completed already: the option is read at once on the channel's own loop.
        let uid = NIOLockedValueBox<UInt32?>(nil)
        future.whenSuccess { credentials in uid.withLockedValue { $0 = credentials.uid } }
        return uid.withLockedValue { $0 }
        #else
        return nil
        #endif
    }

    /// The user name of a uid (the password database; may block: call off the loop).
    static func userName(_ uid: UInt32) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid_t(uid), &entry, &buffer, buffer.count, &result) == 0, result != nil,
              let name = entry.pw_name else { return nil }
        return String(cString: name)
    }
}
