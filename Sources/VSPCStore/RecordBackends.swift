import Foundation
import VSPCCore

/// Why `RecordBackends` could not open the records a `--db` value names.
public enum RecordBackendError: Error, CustomStringConvertible, Equatable {
    /// A URL of a database server this build does not speak (its scheme; the rest may hold a password).
    case unsupported(scheme: String)
    /// The cluster's records need PostgreSQL (a SQLite file serves one daemon).
    case clusterNeedsPostgres

    public var description: String {
        switch self {
        case .unsupported(let scheme):
            return "--db \(scheme)://...: unknown database URL scheme; give a SQLite database file path or a postgresql:// URL"
        case .clusterNeedsPostgres:
            return "several daemons share their records in PostgreSQL: give --db postgresql://user@host:port/database"
        }
    }
}

/// Opens the records that a `--db` value names: a file path is a SQLite database (`Store`); a `postgresql://` or
/// `postgres://` URL is PostgreSQL (`PostgresStore`, `PostgresCluster`). Each backend plugs in here, and nowhere else.
public enum RecordBackends {
    /// For the one daemon serving the records: takes the records' lock (a second daemon is refused), then
    /// opens them, creating and migrating as needed. `close()` releases the lock.
    /// PostgreSQL is shared by several daemons (no lock); `node` (`--node`, default: the host name) marks the
    /// events this one records.
    public static func openForDaemon(_ location: String, node: String? = nil,
                                     maxQueuedEvents: Int = 50_000) throws -> any RecordBackend {
        if let scheme = urlScheme(location) {
            guard ["postgresql", "postgres"].contains(scheme) else { throw RecordBackendError.unsupported(scheme: scheme) }
            return try PostgresStore(url: try PostgresURL(location), node: node ?? defaultNode,
                                     maxQueuedEvents: maxQueuedEvents)
        }
        let lock = try DatabaseLock(databasePath: location)
        let store = try Store(path: location, maxQueuedEvents: maxQueuedEvents)
        store.daemonLock = lock
        return store
    }

    /// The cluster's shared records, for a daemon whose `--db` is a PostgreSQL URL (`node`: `--node`).
    public static func openCluster(_ location: String, node: String) throws -> any ClusterRecords {
        guard let scheme = urlScheme(location) else { throw RecordBackendError.clusterNeedsPostgres }
        guard ["postgresql", "postgres"].contains(scheme) else { throw RecordBackendError.unsupported(scheme: scheme) }
        return try PostgresCluster(url: try PostgresURL(location), node: node)
    }

    /// This host's name: a node's default name.
    public static var defaultNode: String { ProcessInfo.processInfo.hostName }

    /// A `--db` value as it may be shown (a URL's password as `***`).
    public static func redacted(_ location: String) -> String {
        (try? PostgresURL(location))?.redacted ?? PostgresURL.redact(location)
    }

    /// For reading beside a running daemon or without one (`vspc history`, offline `vspc tail`): never
    /// creates, migrates or writes; the records must exist.
    public static func openForReading(_ location: String) throws -> any RecordReader {
        if let scheme = urlScheme(location) {
            guard ["postgresql", "postgres"].contains(scheme) else { throw RecordBackendError.unsupported(scheme: scheme) }
            return try PostgresStore(url: try PostgresURL(location), node: defaultNode, readOnly: true)
        }
        return try Store(path: location, readOnly: true)
    }

    /// The scheme of a `scheme://...` value (lowercased), nil for a file path.
    static func urlScheme(_ location: String) -> String? {
        guard let range = location.range(of: "://") else { return nil }
        let scheme = location[..<range.lowerBound]
        guard let first = scheme.unicodeScalars.first, CharacterSet.letters.contains(first),
              scheme.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) || "+-.".unicodeScalars.contains($0) })
        else { return nil }
        return scheme.lowercased()
    }
}
