import Foundation
import NIOSSL
import PostgresNIO

/// A `--db postgresql://user:password@host:port/database?sslmode=...` value, parsed. The password is never
/// shown: `redacted` and every error carry `***` in its place.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public enum SSLMode: String, Sendable, Equatable {
        /// In the clear.
        case disable
        /// TLS if the server offers it (libpq's default), the certificate unchecked.
        case prefer
        /// TLS, the certificate unchecked (libpq's `require`).
        case require
        /// TLS, the certificate checked against the system's (or `sslrootcert`'s) CAs, and the host name too.
        case verifyFull = "verify-full"
        /// TLS, the certificate checked against the CAs, not the host name.
        case verifyCA = "verify-ca"
    }

    public var user: String
    public var password: String?
    public var host: String
    public var port: Int
    public var database: String
    public var sslMode: SSLMode
    /// `?sslrootcert=FILE`: the CAs for `verify-ca` / `verify-full`.
    public var rootCertificate: String?
    /// `?host=/dir`: a Unix socket folder instead of TCP (as libpq).
    public var socketDirectory: String?

    /// Why a `postgresql://` value cannot be used (never with its password).
    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public var message: String
        public var description: String { message }
    }

    public static func isPostgres(_ location: String) -> Bool {
        let lower = location.lowercased()
        return lower.hasPrefix("postgresql://") || lower.hasPrefix("postgres://")
    }

    public init(_ text: String) throws {
        guard Self.isPostgres(text), let components = URLComponents(string: text) else {
            throw Invalid(message: "--db \(Self.redact(text)): not a postgresql://user@host:port/database URL")
        }
        guard let user = components.user, !user.isEmpty else {
            throw Invalid(message: "--db \(Self.redact(text)): the URL names no user (postgresql://USER@host/database)")
        }
        self.user = user
        self.password = components.password
        self.host = components.host.map { $0.hasPrefix("[") && $0.hasSuffix("]") ? String($0.dropFirst().dropLast()) : $0 }
            ?? "127.0.0.1"
        if host.isEmpty { host = "127.0.0.1" }
        self.port = components.port ?? 5432
        guard (1...65535).contains(port) else {
            throw Invalid(message: "--db \(Self.redact(text)): port \(port) is out of range")
        }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? user : (path.removingPercentEncoding ?? path)
        self.sslMode = .prefer
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let mode = item.value.flatMap(SSLMode.init(rawValue:)) else {
                    throw Invalid(message: "--db \(Self.redact(text)): sslmode must be disable, prefer, require, verify-ca or verify-full")
                }
                sslMode = mode
            case "sslrootcert": rootCertificate = item.value
            case "host":
                guard let dir = item.value, dir.hasPrefix("/") else {
                    throw Invalid(message: "--db \(Self.redact(text)): ?host= must be a socket folder (/path)")
                }
                socketDirectory = dir
            case "application_name", "connect_timeout": break
            default:
                throw Invalid(message: "--db \(Self.redact(text)): unknown parameter \(item.name.debugDescription)")
            }
        }
    }

    /// The URL with its password as `***` (for logs, errors and status).
    public var redacted: String {
        var out = "postgresql://\(user)"
        if password != nil { out += ":***" }
        let shownHost = host.contains(":") ? "[\(host)]" : host
        out += "@\(shownHost):\(port)/\(database)"
        var query: [String] = []
        if sslMode != .prefer { query.append("sslmode=\(sslMode.rawValue)") }
        if let socketDirectory { query.append("host=\(socketDirectory)") }
        if !query.isEmpty { out += "?" + query.joined(separator: "&") }
        return out
    }

    public var description: String { redacted }

    /// Any text that may hold a `scheme://user:password@` URL, with the password as `***`.
    public static func redact(_ text: String) -> String {
        guard let scheme = text.range(of: "://") else { return text }
        let rest = text[scheme.upperBound...]
        guard let at = rest.lastIndex(of: "@") else { return text }
        let userInfo = rest[..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return text }
        return String(text[..<colon]) + ":***" + String(rest[at...])
    }

    /// The connection settings postgres-nio takes.
    func configuration() throws -> PostgresConnection.Configuration {
        var config: PostgresConnection.Configuration
        if let socketDirectory {
            config = .init(unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: user, password: password,
                           database: database)
        } else {
            config = .init(host: host, port: port, username: user, password: password, database: database,
                           tls: try tls())
        }
        config.options.connectTimeout = .seconds(5)
        return config
    }

    private func tls() throws -> PostgresConnection.Configuration.TLS {
        var tls = TLSConfiguration.makeClientConfiguration()
        switch sslMode {
        case .disable: return .disable
        case .prefer, .require: tls.certificateVerification = .none
        case .verifyCA: tls.certificateVerification = .noHostnameVerification
        case .verifyFull: tls.certificateVerification = .fullVerification
        }
        if let rootCertificate { tls.trustRoots = .file(rootCertificate) }
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: tls)
        } catch {
            throw Invalid(message: "--db \(redacted): cannot set up TLS: \(error)")
        }
        return sslMode == .prefer ? .prefer(context) : .require(context)
    }
}
