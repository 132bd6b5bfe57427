import Foundation
import Logging
import NIOPosix
import PostgresNIO
import VSPCCore

/// `vspc migrate-db FROM TO`: a SQLite database's records (assignments, events, scrollback, API tokens) copied
/// into PostgreSQL in one transaction. The target is migrated first, and refused if it holds assignments or
/// events already.
public enum RecordCopy {
    public struct Counts: Equatable, Sendable, CustomStringConvertible {
        public var assignments = 0
        public var events = 0
        public var scrollbacks = 0
        public var tokens = 0
        public init() {}
        public var description: String {
            "\(assignments) assignments, \(events) events, \(scrollbacks) scrollbacks, \(tokens) API tokens"
        }
    }

    public struct Refused: Error, CustomStringConvertible, Equatable {
        public var message: String
        public var description: String { message }
    }

    /// Copies the SQLite database at `sqlitePath` into the PostgreSQL database `postgresURL` names.
    public static func sqliteToPostgres(from sqlitePath: String, to postgresURL: String) throws -> Counts {
        guard RecordBackends.urlScheme(sqlitePath) == nil else {
            throw Refused(message: "FROM must be a SQLite database file, not \(RecordBackends.redacted(sqlitePath))")
        }
        let url = try PostgresURL(postgresURL)
        let source = try Store(path: sqlitePath, readOnly: true)
        let assignments = try source.loadAssignments()
        let events = try source.events(uuid: nil, label: nil, since: nil, limit: nil)
        let scrollback = try source.allScrollback()
        let tokens = try source.loadTokens()

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        var quiet = Logger(label: "vspc.migrate-db")
        quiet.logLevel = .critical
        let link: PostgresLink
        do {
            link = try PostgresLink(url: url, group: group, logger: quiet, timeout: 300)
        } catch {
            throw StoreError.cannotOpen(path: url.redacted, reason: "\(error)")
        }
        defer { link.close() }
        return try link.run { conn in
            try PostgresMigrations.apply(link, conn)
            let q = PostgresCluster.Query(link: link, conn: conn)
            try q("BEGIN")
            do {
                let held = try q("SELECT (SELECT count(*) FROM assignments), (SELECT count(*) FROM events)")
                if let row = held.first {
                    let (a, e) = try row.decode((Int64, Int64).self)
                    if a > 0 || e > 0 {
                        throw Refused(message: """
                            \(url.redacted) already holds \(a) assignments and \(e) events: migrate-db copies only into \
                            a database that has none (a new one, or one whose tables were emptied)
                            """)
                    }
                }
                var counts = Counts()
                for a in assignments {
                    try q("""
                        INSERT INTO assignments (uuid, label, name, port, created_at, last_seen)
                        VALUES (\(a.uuid), \(a.label), \(a.name), \(a.port), \(a.createdAt.timeIntervalSince1970), \(a.lastSeen.timeIntervalSince1970))
                        """)
                    counts.assignments += 1
                }
                for e in events {
                    try q(insertEvent(e, node: nil))
                    counts.events += 1
                }
                for s in scrollback where !s.data.isEmpty {
                    try q("""
                        INSERT INTO scrollback (uuid, label, data, updated_at)
                        VALUES (\(s.uuid), \(s.label), \(Data(s.data)), \(Date().timeIntervalSince1970))
                        """)
                    counts.scrollbacks += 1
                }
                for t in tokens {
                    try q(insertToken(t))
                    counts.tokens += 1
                }
                try q("COMMIT")
                return counts
            } catch {
                _ = try? q("ROLLBACK")
                throw error
            }
        }
    }
}
