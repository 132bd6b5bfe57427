import Foundation
import Logging
import NIOPosix
import PostgresNIO
import VSPCCore

/// Statements outside the records (creating or dropping a database), for set-up scripts and tests.
public enum PostgresAdmin {
    /// Runs each statement, in autocommit, on the database `url` names; returns the first column of the last
    /// statement's rows as text (`::text` casts are the caller's).
    @discardableResult
    public static func execute(_ url: String, _ statements: [String], timeout: Double = 30) throws -> [String] {
        let parsed = try PostgresURL(url)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        var quiet = Logger(label: "vspc.postgres-admin")
        quiet.logLevel = .critical
        let link = try PostgresLink(url: parsed, group: group, logger: quiet, timeout: timeout)
        defer { link.close() }
        return try link.run { conn in
            var last: [String] = []
            for statement in statements {
                last = try link.query(conn, PostgresQuery(unsafeSQL: statement)).map { row in
                    (try? row.decode(String?.self)).flatMap { $0 } ?? ""
                }
            }
            return last
        }
    }

    /// `url` with another database name (the rest as given).
    public static func url(_ url: String, database: String) throws -> String {
        guard var components = URLComponents(string: url) else {
            throw PostgresURL.Invalid(message: "not a URL: \(PostgresURL.redact(url))")
        }
        components.path = "/" + database
        guard let out = components.string else {
            throw PostgresURL.Invalid(message: "not a URL: \(PostgresURL.redact(url))")
        }
        return out
    }
}
