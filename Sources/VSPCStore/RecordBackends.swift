import Foundation
import VSPCCore

/// Why `RecordBackends` could not open the records a `--db` value names.
public enum RecordBackendError: Error, CustomStringConvertible, Equatable {
    /// A URL of a database server this build does not speak yet (its scheme; the rest may hold a password).
    case unsupported(scheme: String)

    public var description: String {
        switch self {
        case .unsupported(let scheme) where ["postgresql", "postgres"].contains(scheme):
            return "--db \(scheme)://...: PostgreSQL is not supported yet; give a SQLite database file path"
        case .unsupported(let scheme):
            return "--db \(scheme)://...: unknown database URL scheme; give a SQLite database file path"
        }
    }
}

/// Opens the records that a `--db` value names: a file path is a SQLite database (`Store`). A URL
/// (`scheme://...`) names a database server; each backend plugs in here, and nowhere else.
public enum RecordBackends {
    /// For the one daemon serving the records: takes the records' lock (a second daemon is refused), then
    /// opens them, creating and migrating as needed. `close()` releases the lock.
    public static func openForDaemon(_ location: String, maxQueuedEvents: Int = 50_000) throws -> any RecordBackend {
        if let scheme = urlScheme(location) { throw RecordBackendError.unsupported(scheme: scheme) }
        let lock = try DatabaseLock(databasePath: location)
        let store = try Store(path: location, maxQueuedEvents: maxQueuedEvents)
        store.daemonLock = lock
        return store
    }

    /// The cluster's shared records, for a daemon whose `--db` is a PostgreSQL URL (`node`: `--node`).
    public static func openCluster(_ location: String, node: String) throws -> any ClusterRecords {
        throw RecordBackendError.unsupported(scheme: urlScheme(location) ?? "file")
    }

    /// For reading beside a running daemon or without one (`vspc history`, offline `vspc tail`): never
    /// creates, migrates or writes; the records must exist.
    public static func openForReading(_ location: String) throws -> any RecordReader {
        if let scheme = urlScheme(location) { throw RecordBackendError.unsupported(scheme: scheme) }
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
