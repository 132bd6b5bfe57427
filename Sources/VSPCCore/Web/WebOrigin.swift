import Foundation

/// Origins of the browser console: the base of console URLs (`--http-public-url`), and the check of a
/// WebSocket's `Origin` against the listener's own origin (the `Host` the request came to) and that base.
public enum WebOrigin {
    /// `https://vspc.example.com[:8443][/prefix]`: a console URL is `BASE/console/<token>`.
    public struct Base: Sendable, Equatable {
        public var scheme: String
        /// Lowercased; an IPv6 address in brackets.
        public var host: String
        public var port: Int?
        /// Empty, or `/prefix` without a trailing slash.
        public var path: String

        /// `scheme://host[:port]`, as browsers send it in `Origin`.
        public var origin: String { "\(scheme)://\(host)\(port.map { ":\($0)" } ?? "")" }
        public var text: String { origin + path }
    }

    /// The longest base accepted.
    public static let maxLength = 2048

    /// A base URL, or nil: http or https, a host, an optional port, an optional path; no query, fragment or user.
    public static func parseBase(_ text: String) -> Base? {
        guard text.utf8.count <= maxLength, text.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }),
              let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty,
              components.query == nil, components.fragment == nil, components.user == nil, components.password == nil
        else { return nil }
        if let port = components.port, !(1...65535).contains(port) { return nil }
        var path = components.percentEncodedPath
        while path.hasSuffix("/") { path.removeLast() }
        let bracketed = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return Base(scheme: scheme, host: bracketed.lowercased(), port: components.port, path: path)
    }

    /// Whether a WebSocket upgrade's `Origin` is this listener's own: the same host and port as the request's
    /// `Host` (over http or https), or the public base's origin. A missing or `null` origin is refused.
    public static func allows(origin: String?, host: String?, publicBase: Base?) -> Bool {
        guard let origin = origin?.lowercased(), origin != "null" else { return false }
        if let publicBase, origin == publicBase.origin.lowercased() { return true }
        guard let host = host?.lowercased(), !host.isEmpty, host.utf8.count <= 512,
              !host.contains("/"), !host.contains("@") else { return false }
        return origin == "http://" + host || origin == "https://" + host
    }
}
