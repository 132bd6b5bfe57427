import Foundation
import PostgresNIO
import VSPCCore

/// The schema: `migrations/postgres/*.sql` (embedded at build time), applied in file-name order inside one
/// transaction that holds an advisory lock, so two daemons starting at once do not both migrate; each applied
/// file is a row of `schema_version`.
enum PostgresMigrations {
    /// The advisory lock's key (any constant the nodes agree on).
    static let lockKey: Int64 = 0x7673_7063_6d69_67

    static func apply(_ link: PostgresLink, _ conn: PostgresConnection,
                      sources: [(name: String, sql: String)] = EmbeddedMigrations.postgres) throws {
        try link.query(conn, "BEGIN")
        do {
            try link.query(conn, "SELECT pg_advisory_xact_lock(\(lockKey))")
            try link.query(conn, """
                CREATE TABLE IF NOT EXISTS schema_version (
                    name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())
                """)
            var applied = Set<String>()
            for row in try link.query(conn, "SELECT name FROM schema_version") {
                applied.insert(try row.decode(String.self))
            }
            for (name, sql) in sources where !applied.contains(name) {
                for statement in statements(sql) {
                    do {
                        try link.query(conn, PostgresQuery(unsafeSQL: statement))
                    } catch let failure as StoreFailure where failure.kind != .unreachable {
                        throw StoreError.migrationFailed(file: name, reason: failure.message)
                    }
                }
                try link.query(conn, "INSERT INTO schema_version (name) VALUES (\(name))")
            }
            try link.query(conn, "COMMIT")
        } catch {
            _ = try? link.query(conn, "ROLLBACK")
            throw error
        }
    }

    /// The statements of a migration file: comment lines (`--`) left out, each statement ending with `;` at
    /// the end of a line.
    static func statements(_ sql: String) -> [String] {
        var out: [String] = []
        var current: [Substring] = []
        for line in sql.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("--") { continue }
            current.append(line)
            if trimmed.hasSuffix(";") {
                var text = current.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
                text.removeLast()
                out.append(text)
                current = []
            }
        }
        let rest = current.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        if !rest.isEmpty { out.append(rest) }
        return out
    }
}
