import Foundation
import GRDB
import VSPCCore

public enum StoreError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case databaseNotFound(path: String)
    case migrationsNotFound(path: String?)
    case noMigrations(path: String)
    case migrationFailed(file: String, reason: String)
    case invalidUUID(String)
    case readOnly(path: String)
    /// The writer is behind by more than `Store.maxQueuedEvents` events: this event was counted, not queued.
    case queueFull

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "cannot open database at \(path): \(reason)"
        case let .databaseNotFound(path):
            return "database not found at \(path) (has vspcd been started with this database path?)"
        case let .migrationsNotFound(path):
            if let path { return "migrations folder not found at \(path)" }
            return "migrations folder not found (set VSPC_MIGRATIONS_DIR)"
        case let .noMigrations(path):
            return "migrations folder \(path) contains no .sql files"
        case let .migrationFailed(file, reason):
            return "migration \(file) failed: \(reason)"
        case let .invalidUUID(s):
            return "invalid VM uuid '\(s)' (expected 32 hex digits)"
        case .queueFull:
            return "the database writer is behind; the event was counted and left out"
        case let .readOnly(path):
            return "database at \(path) is opened read-only"
        }
    }
}

extension Store {
    /// The kind of a failed write, from SQLite's result code or the store's own refusal; the message is the
    /// error's own text.
    public func failure(of error: any Error) -> StoreFailure {
        StoreFailure(Self.kind(of: error), "\(error)")
    }

    static func kind(of error: any Error) -> StoreFailure.Kind {
        if let error = error as? StoreError {
            if case .readOnly = error { return .readOnly }
            return .other
        }
        guard let error = error as? DatabaseError else { return .other }
        switch error.resultCode {
        case .SQLITE_FULL: return .diskFull
        case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_CANTOPEN: return .readOnly
        case .SQLITE_BUSY, .SQLITE_LOCKED: return .busy
        default: return .other
        }
    }
}
