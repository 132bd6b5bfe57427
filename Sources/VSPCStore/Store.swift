import Foundation
import GRDB
import Logging
import VSPCCore

/// Persistent state of vspcd: port assignments, the event log and console scrollback.
///
/// SQLite (WAL) through a GRDB `DatabasePool`. Reads are synchronous; writes are queued with
/// `enqueue` and committed in batches by a single background writer.
public final class Store: RecordBackend, @unchecked Sendable {
    public let path: String
    public let readOnly: Bool

    let pool: DatabasePool
    private let logger = Logger(label: "vspcd.store")

    // Writer state (guarded by `lock`).
    private struct Unit {
        var ops: [StoreOp]
        var completion: (@Sendable (Error?) -> Void)?
    }
    private let lock = NSLock()
    private var pending: [Unit] = []
    private var drainScheduled = false
    private let writerQueue = DispatchQueue(label: "vspcd.store.writer", qos: .utility)
    /// Events waiting for the writer at most; beyond it (a slow disk) events are counted and left out, and one
    /// `events-suppressed` event says how many once the writer catches up. Other writes are never left out.
    public let maxQueuedEvents: Int
    private var queuedEvents = 0
    private var droppedEvents = 0
    /// Failed writes not yet logged, and when a failure was last logged (at most one line a minute).
    private var failureLog = WriteFailureLog()
    /// The one-daemon lock, when `RecordBackends` opened the store for a daemon; released by `close()`.
    var daemonLock: DatabaseLock?
    /// Called on the writer thread after each batch: its duration in seconds and how many units failed.
    public var commitObserver: (@Sendable (_ seconds: Double, _ failures: Int) -> Void)?

    /// Opens (creating if needed) a DatabasePool in WAL mode at `path` and applies migrations.
    /// With `readOnly`, the file must exist (it is never created) and no migration is applied.
    public init(path: String, readOnly: Bool = false, maxQueuedEvents: Int = 50_000) throws {
        self.maxQueuedEvents = maxQueuedEvents
        self.path = path
        self.readOnly = readOnly
        let fm = FileManager.default
        var config = Configuration()
        config.label = "vspcd.store"
        config.busyMode = .timeout(10)
        if readOnly {
            guard fm.fileExists(atPath: path) else { throw StoreError.databaseNotFound(path: path) }
            config.readonly = true
        } else {
            try Self.preparePrivateFiles(path, logger: Logger(label: "vspcd.store"))
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            throw StoreError.cannotOpen(path: path, reason: Self.reason(error))
        }
        if !readOnly {
            try Self.migrator().migrate(pool)
        } else {
            // Fail early with a clear message if the file is not a vspcd database.
            do {
                let ok = try pool.read { db in try db.tableExists("assignment") && db.tableExists("event") }
                if !ok { throw StoreError.cannotOpen(path: path, reason: "not a vspcd database (schema missing)") }
            } catch let e as StoreError {
                throw e
            } catch {
                throw StoreError.cannotOpen(path: path, reason: Self.reason(error))
            }
        }
    }

    /// The database, its -wal and -shm files are private (0600) whatever the umask, and directories the store
    /// creates are 0700. The file is created 0600 before SQLite opens it; SQLite gives a -wal or -shm it
    /// creates the mode of the database file. A database, -wal or -shm left group- or world-accessible (by an
    /// older vspcd, or by hand) loses those bits at start, with one notice per file: they hold console output.
    static func preparePrivateFiles(_ path: String, logger: Logger) throws {
        do {
            try PrivateFiles.createDirectories((path as NSString).deletingLastPathComponent)
            try PrivateFiles.createFile(path)
            for file in [path, path + "-wal", path + "-shm"] {
                if let change = try PrivateFiles.tighten(file) {
                    logger.notice("""
                        made \(file) private: mode \(PrivateFiles.octal(change.old)) -> \(PrivateFiles.octal(change.new)) \
                        (it holds console scrollback)
                        """)
                }
            }
        } catch {
            throw StoreError.cannotOpen(path: path, reason: "\(error)")
        }
    }

    private static func reason(_ error: Error) -> String {
        if let e = error as? DatabaseError { return e.message ?? "\(e.resultCode)" }
        return "\(error)"
    }

    // MARK: Migrations

    /// The migrations: `migrations/sqlite/*.sql` of the package, compiled into this module by the EmbedMigrations
    /// build plugin. `$VSPC_MIGRATIONS_DIR` replaces them with the `*.sql` files of another folder (for
    /// trying a migration before it is committed).
    static func migrationSources() throws -> [(name: String, sql: String)] {
        guard let env = ProcessInfo.processInfo.environment["VSPC_MIGRATIONS_DIR"], !env.isEmpty else {
            return EmbeddedMigrations.sqlite
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: env, isDirectory: &isDirectory), isDirectory.boolValue,
              let names = try? FileManager.default.contentsOfDirectory(atPath: env)
        else { throw StoreError.migrationsNotFound(path: env) }
        let dir = URL(fileURLWithPath: env, isDirectory: true)
        return try names.filter { $0.hasSuffix(".sql") }.sorted().map { name in
            let file = dir.appendingPathComponent(name)
            do {
                return (name, try String(contentsOf: file, encoding: .utf8))
            } catch {
                throw StoreError.migrationFailed(file: name, reason: "cannot read \(file.path): \(error.localizedDescription)")
            }
        }
    }

    /// One registered migration per `*.sql` file, in file-name order, identified by the file name.
    static func migrator() throws -> DatabaseMigrator {
        let sources = try migrationSources()
        guard !sources.isEmpty else {
            throw StoreError.noMigrations(path: ProcessInfo.processInfo.environment["VSPC_MIGRATIONS_DIR"] ?? "migrations/sqlite/")
        }
        var migrator = DatabaseMigrator()
        for (name, sql) in sources {
            migrator.registerMigration(name) { db in
                do {
                    try db.execute(sql: sql)
                } catch {
                    throw StoreError.migrationFailed(file: name, reason: reason(error))
                }
            }
        }
        return migrator
    }

    // MARK: Writes

    /// Queues one op. Never blocks. `completion` runs on the writer thread after commit (nil) or failure.
    public func enqueue(_ op: StoreOp, completion: (@Sendable (Error?) -> Void)? = nil) {
        enqueue([op], completion: completion)
    }

    /// Queues several ops that are applied atomically together (all or none), in order.
    /// Never blocks. `completion` runs on the writer thread after commit (nil) or failure (error).
    public func enqueue(_ ops: [StoreOp], completion: (@Sendable (Error?) -> Void)? = nil) {
        if readOnly && !ops.isEmpty {
            let err = StoreError.readOnly(path: path)
            writerQueue.async { completion?(err) }
            return
        }
        let events = Self.eventCount(ops)
        lock.lock()
        if events > 0, events == ops.count, queuedEvents + events > maxQueuedEvents {
            droppedEvents += events
            lock.unlock()
            writerQueue.async { completion?(StoreError.queueFull) }
            return
        }
        queuedEvents += events
        pending.append(Unit(ops: ops, completion: completion))
        let schedule = !drainScheduled
        drainScheduled = true
        lock.unlock()
        if schedule {
            writerQueue.async { self.drain() }
        }
    }

    /// Flushes, then releases the one-daemon lock if this store holds it.
    public func close() {
        if !readOnly { flush() }
        daemonLock?.release()
    }

    /// Runs on `writerQueue`: commits everything queued so far in one transaction.
    private func drain() {
        lock.lock()
        var batch = pending
        pending.removeAll(keepingCapacity: true)
        drainScheduled = false
        let batchEvents = batch.reduce(0) { $0 + Self.eventCount($1.ops) }
        queuedEvents -= batchEvents
        // Caught up: say how many events a slow disk cost.
        if droppedEvents > 0, queuedEvents == 0 {
            batch.append(Unit(ops: [.event(ConsoleEvent(kind: .eventsSuppressed,
                                                    detail: "… \(droppedEvents) more suppressed while the database was slow"))],
                              completion: nil))
            droppedEvents = 0
        }
        lock.unlock()
        if batch.isEmpty { return }

        var results = [Error?](repeating: nil, count: batch.count)
        let started = DispatchTime.now().uptimeNanoseconds
        defer {
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            commitObserver?(seconds, results.filter { $0 != nil }.count)
        }
        do {
            try pool.write { db in
                for (i, unit) in batch.enumerated() where !unit.ops.isEmpty {
                    // A savepoint per unit: a failing unit is rolled back alone, the rest of the batch commits.
                    do {
                        try db.inSavepoint {
                            for op in unit.ops { try self.apply(op, db) }
                            return .commit
                        }
                    } catch {
                        results[i] = error
                    }
                }
            }
        } catch {
            // The batch transaction itself failed: retry the units one by one so that each gets its own result.
            logger.debug("store: batch of \(batch.count) writes failed, retrying one by one: \(error)")
            for (i, unit) in batch.enumerated() where !unit.ops.isEmpty {
                do {
                    try pool.write { db in
                        for op in unit.ops { try self.apply(op, db) }
                    }
                    results[i] = nil
                } catch {
                    results[i] = error
                }
            }
        }
        for (i, unit) in batch.enumerated() {
            if let err = results[i] {
                failureLog.failed(unit.ops, err)
            }
            unit.completion?(results[i])
        }
        failureLog.report(logger)
    }

    /// How many of `ops` are events (the only writes the queue bound may leave out).
    private static func eventCount(_ ops: [StoreOp]) -> Int {
        ops.reduce(0) { n, op in if case .event = op { return n + 1 }; return n }
    }


    private static func uuidKey(_ s: String) throws -> String {
        guard let u = UUIDSpelling.normalize(s) else { throw StoreError.invalidUUID(s) }
        return u
    }

    private func apply(_ op: StoreOp, _ db: Database) throws {
        switch op {
        case let .upsertAssignment(a):
            try db.execute(sql: """
                INSERT INTO assignment (uuid, label, name, port, created_at, last_seen)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(uuid, label) DO UPDATE SET
                    name = excluded.name, port = excluded.port, last_seen = excluded.last_seen
                """, arguments: [try Self.uuidKey(a.uuid), a.label, a.name, a.port,
                                 a.createdAt.timeIntervalSince1970, a.lastSeen.timeIntervalSince1970])
        case let .deleteAssignment(uuid, label):
            try db.execute(sql: "DELETE FROM assignment WHERE uuid = ? AND label = ?",
                           arguments: [try Self.uuidKey(uuid), label])
        case let .touchAssignment(uuid, label, name, at):
            try db.execute(sql: "UPDATE assignment SET name = ?, last_seen = ? WHERE uuid = ? AND label = ?",
                           arguments: [name, at.timeIntervalSince1970, try Self.uuidKey(uuid), label])
        case let .event(e):
            // Event uuids are normalized when possible; an unparsable one is kept verbatim rather than losing the event.
            let u = e.uuid.map { UUIDSpelling.normalize($0) ?? $0 }
            try db.execute(sql: """
                INSERT INTO event (ts, kind, uuid, label, name, peer, detail, door, user_name, key_comment, key_fingerprint)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [e.time.timeIntervalSince1970, e.kind.rawValue, u, e.label, e.name, e.peer, e.detail,
                                 e.door, e.user, e.keyComment, e.fingerprint])
        case let .saveScrollback(uuid, label, data, at):
            try ScrollbackChunks.replace(db, uuid: try Self.uuidKey(uuid), label: label, data: data, at: at)
        case let .appendScrollback(uuid, label, data, keep, at):
            try ScrollbackChunks.append(db, uuid: try Self.uuidKey(uuid), label: label, data: data, keep: keep, at: at)
        case let .prune(r):
            if let age = r.maxAge {
                let cutoff = Date().timeIntervalSince1970 - age
                try db.execute(sql: "DELETE FROM event WHERE ts < ?", arguments: [cutoff])
                // The scrollback of a VM serial port that no longer holds a port goes with its old events.
                try db.execute(sql: """
                    DELETE FROM scrollback_chunk WHERE NOT EXISTS
                        (SELECT 1 FROM assignment a WHERE a.uuid = scrollback_chunk.uuid AND a.label = scrollback_chunk.label)
                    AND NOT EXISTS (SELECT 1 FROM scrollback_chunk newer WHERE newer.uuid = scrollback_chunk.uuid
                        AND newer.label = scrollback_chunk.label AND newer.updated_at >= ?)
                    """, arguments: [cutoff])
            }
            if let count = r.maxCount {
                try db.execute(sql: """
                    DELETE FROM event WHERE id IN
                        (SELECT id FROM event ORDER BY ts DESC, id DESC LIMIT -1 OFFSET ?)
                    """, arguments: [max(0, count)])
            }
        case let .saveToken(t):
            try db.execute(sql: """
                INSERT INTO api_token (id, hash, vms, read_only, comment, created_at, expires_at, revoked_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [t.id, t.hash, t.vms.joined(separator: "\n"), t.readOnly, t.comment,
                                 t.createdAt.timeIntervalSince1970, t.expiresAt?.timeIntervalSince1970,
                                 t.revokedAt?.timeIntervalSince1970])
        case let .revokeToken(id, at):
            try db.execute(sql: "UPDATE api_token SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                           arguments: [at.timeIntervalSince1970, id])
        case let .fenced(_, _, ops):
            // One daemon alone owns every console: nothing to fence.
            for inner in ops { try apply(inner, db) }
        }
    }
}
