import Foundation
import NIOCore
import NIOPosix

/// Network errors as people read them: the common errno values become one plain sentence that says what to do;
/// the raw error (SwiftNIO's wording) is kept as `detail`, for debug output only.
public enum SocketErrorText {
    /// The errno behind an error from SwiftNIO or the system, if there is one.
    public static func errnoCode(of error: Error) -> Int32? {
        if let io = error as? IOError { return io.errnoCode }
        if let connection = error as? NIOConnectionError {
            for failure in connection.connectionErrors {
                if let code = errnoCode(of: failure.error) { return code }
            }
            return nil
        }
        if case .connectTimeout? = error as? ChannelError { return ETIMEDOUT }
        return nil
    }

    /// Why a connection to `what` failed, as a clause: "nothing is listening there; start ...".
    public static func connectReason(_ error: Error, option: String) -> String {
        if let connection = error as? NIOConnectionError, connection.connectionErrors.isEmpty {
            return "its host name does not resolve; check \(option)"
        }
        switch errnoCode(of: error) {
        case ECONNREFUSED?: return "nothing is listening there; start vspcd, or give \(option) the address it listens on"
        case ENOENT?: return "no such socket; start vspcd, or give \(option) the path it listens on"
        case EACCES?, EPERM?: return "permission denied; run this as a user in vspcd's group, or as root"
        case ENETUNREACH?, EHOSTUNREACH?: return "the network or host is unreachable; check the address in \(option) and the routes to it"
        case ETIMEDOUT?: return "no answer in time; check the address in \(option) and any firewall on the way"
        case let code?: return "\(systemText(code)); check \(option)"
        case nil: return "the connection failed; check \(option)"
        }
    }

    /// Why a listener could not be opened, as a clause: "another process already listens there; ...".
    public static func listenReason(_ error: Error) -> String {
        switch errnoCode(of: error) {
        case EADDRINUSE?: return "another process already listens there; stop it, or choose another port or path"
        case EACCES?, EPERM?: return "permission denied; use a port above 1023 (or give vspcd CAP_NET_BIND_SERVICE), or a folder vspcd may write to"
        case ENOENT?: return "its folder does not exist; create it, or choose another path"
        case EADDRNOTAVAIL?: return "this machine has no such address; use one of its addresses, or 0.0.0.0"
        case let code?: return "\(systemText(code)); check the address"
        case nil: return "\(error)"
        }
    }

    /// The system's own words for an errno value, in lower case ("address already in use").
    static func systemText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text).lowercased()
    }
}

/// A listener the daemon could not open: a plain sentence, with the raw error kept for debug logs.
public struct ListenError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public let detail: String

    /// `what` names the listener and its address: "the metrics port 127.0.0.1:9100".
    public init(_ what: String, _ error: Error) {
        description = "cannot listen on \(what): \(SocketErrorText.listenReason(error))"
        detail = "\(error)"
    }
}
