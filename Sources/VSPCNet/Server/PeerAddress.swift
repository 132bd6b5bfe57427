import NIOCore

/// How every door and the proxy port write a peer: `ip:port`, with IPv6 in brackets (`[::1]:40001`), so the
/// port is never mistaken for part of the address (the core reads it back with `ConcentratorStateMachine.address`).
enum PeerAddress {
    static func describe(_ address: SocketAddress?) -> String {
        guard let address else { return "?" }
        if let ip = address.ipAddress, let port = address.port {
            return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
        }
        return "\(address)"
    }
}
