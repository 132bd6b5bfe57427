/// A `[host]:port` the daemon listens on or `vspc` connects to.
public struct Endpoint: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `:port`, `port` or `[v6]:port`; a missing host is `defaultHost`.
    public static func parse(_ text: String, defaultHost: String) -> Endpoint? {
        var host = defaultHost
        var portText = text
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = String(rest.dropFirst())
        } else if let colon = text.lastIndex(of: ":") {
            let h = String(text[..<colon])
            if !h.isEmpty { host = h }
            portText = String(text[text.index(after: colon)...])
        }
        guard let port = Int(portText), (0...65535).contains(port) else { return nil }
        return Endpoint(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Where the admin endpoint is: TCP `[host]:port`, or a Unix socket `unix:PATH`.
public enum AdminEndpoint: Equatable, Sendable, CustomStringConvertible {
    case tcp(Endpoint)
    case unix(path: String)

    public static func parse(_ text: String, defaultHost: String) -> AdminEndpoint? {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            return path.isEmpty ? nil : .unix(path: path)
        }
        return Endpoint.parse(text, defaultHost: defaultHost).map { .tcp($0) }
    }

    public var description: String {
        switch self {
        case .tcp(let endpoint): return endpoint.description
        case .unix(let path): return "unix:\(path)"
        }
    }
}
