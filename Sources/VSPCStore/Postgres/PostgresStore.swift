import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import VSPCCore

/// The records in PostgreSQL (`--db postgresql://...`), shared by several daemons (nodes). The same contract as
/// the SQLite `Store`: `enqueue` never blocks; one writer applies what is queued in one transaction per batch
/// (a savepoint per enqueue, so one failing write does not void the others) and calls each completion.
///
/// When the database goes away the writes wait: events, touches and prunes stay queued (events bounded by
/// `maxQueuedEvents`, the oldest left out and counted) and are retried, 0.5 s then up to 5 s apart, until the
/// database answers again; the other writes (assignments, scrollback, tokens) fail at once with
/// `StoreFailure(.unreachable)` so the core decides. One log line when the database goes, one when caught up.
public final class PostgresStore: RecordBackend, @unchecked Sendable {
    public let url: PostgresURL
    /// The node whose events these are (`--node`), stored with each event.
    public let node: String
    public let readOnly: Bool
    public let maxQueuedEvents: Int
    let group: MultiThreadedEventLoopGroup
    let writer: PostgresLink
    let reader: PostgresLink
    let logger: Logger

    private struct Unit {
        var ops: [StoreOp]
        var completion: (@Sendable (Error?) -> Void)?
        var queuedAt: UInt64
        /// Kept and retried while the database is away (events, touches, prunes), rather than failed.
        var waits: Bool
        var events: Int
    }
    private let lock = NSLock()
    private var pending: [Unit] = []
    private var drainScheduled = false
    private let writerQueue = DispatchQueue(label: "vspcd.store.postgres.writer", qos: .utility)
    private var queuedEvents = 0
    /// Of `queuedEvents`, those in the batch the writer is applying.
    private var inFlightEvents = 0
    private var droppedEvents = 0
    /// Since when the database has been unreachable (uptime ns); nil while it answers.
    private var outageSince: UInt64?
    private var retryDelay = 0.5
    private var failureLog = WriteFailureLog()
    private var closed = false
    public var commitObserver: (@Sendable (_ seconds: Double, _ failures: Int) -> Void)?

    /// Connects, and (unless `readOnly`) applies the migrations under an advisory lock.
    public init(url: PostgresURL, node: String, readOnly: Bool = false, maxQueuedEvents: Int = 50_000,
                logger: Logger = Logger(label: "vspcd.store")) throws {
        self.url = url
        self.node = node
        self.readOnly = readOnly
        self.maxQueuedEvents = maxQueuedEvents
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var quiet = Logger(label: "vspcd.store.postgres")
        quiet.logLevel = .critical
        do {
            writer = try PostgresLink(url: url, group: group, logger: quiet)
            reader = try PostgresLink(url: url, group: group, logger: quiet)
            if readOnly {
                try reader.run { conn in
                    let rows = try reader.query(conn, "SELECT to_regclass('public.assignments') IS NOT NULL AND to_regclass('public.events') IS NOT NULL")
                    guard try rows.first?.decode(Bool.self) == true else {
                        throw StoreFailure(.other, "not a vspcd database (schema missing)")
                    }
                }
            } else {
                try writer.run { conn in try PostgresMigrations.apply(writer, conn) }
            }
        } catch {
            try? group.syncShutdownGracefully()
            throw StoreError.cannotOpen(path: url.redacted, reason: "\(error)")
        }
    }

    deinit {
        // A reader nobody closed (`vspc` offline) closes here; on the group's own thread nothing may wait.
        if group.next().inEventLoop {
            writer.closeAsync()
            reader.closeAsync()
            group.shutdownGracefully(queue: .global()) { _ in }
        } else {
            writer.close()
            reader.close()
            try? group.syncShutdownGracefully()
        }
    }

    public func failure(of error: any Error) -> StoreFailure {
        PostgresErrors.failure(error, url: url)
    }

    /// Writes waiting for the database, and the age in seconds of the oldest (0 when none): the store's lag.
    public var backlog: (writes: Int, oldestSeconds: Double) {
        lock.lock()
        defer { lock.unlock() }
        guard let first = pending.first else { return (0, 0) }
        return (pending.count, Double(DispatchTime.now().uptimeNanoseconds &- first.queuedAt) / 1e9)
    }

    /// The backlog as the daemon's metrics read it (`vspc_store_queue_writes`, `vspc_store_lag_seconds`).
    public var queuedWrites: Int? { backlog.writes }
    public var oldestQueuedWriteAge: Double? {
        let backlog = self.backlog
        return backlog.writes > 0 ? backlog.oldestSeconds : nil
    }

    /// Whether the writer last found the database unreachable.
    public var isUnreachable: Bool {
        lock.lock()
        defer { lock.unlock() }
        return outageSince != nil
    }

    // MARK: Writes

    public func enqueue(_ ops: [StoreOp], completion: (@Sendable (Error?) -> Void)? = nil) {
        if readOnly && !ops.isEmpty {
            let err = StoreError.readOnly(path: url.redacted)
            writerQueue.async { completion?(err) }
            return
        }
        let events = Self.eventCount(ops)
        let waits = ops.allSatisfy(Self.waits)
        lock.lock()
        if outageSince != nil, ops.isEmpty {
            // The database is away: a flush does not wait for it.
            lock.unlock()
            let failure = StoreFailure(.unreachable, "the database at \(url.redacted) is unreachable; the write was not made")
            writerQueue.async { completion?(failure) }
            return
        }
        queuedEvents += events
        pending.append(Unit(ops: ops, completion: completion, queuedAt: DispatchTime.now().uptimeNanoseconds,
                            waits: waits, events: events))
        let left = events > 0 ? trimLocked(counting: inFlightEvents) : []
        // While the database is away the queue is retried on a timer; a write that cannot wait (a new port's
        // assignment) tries it now: committed if the database is back, else failed at once (`wentAway`), and the
        // core decides.
        let schedule = !drainScheduled && (outageSince == nil || !waits)
        if schedule { drainScheduled = true }
        lock.unlock()
        if !left.isEmpty {
            writerQueue.async { for completion in left { completion?(StoreError.queueFull) } }
        }
        if schedule {
            writerQueue.async { self.drain() }
        }
    }

    public func enqueue(_ op: StoreOp, completion: (@Sendable (Error?) -> Void)? = nil) {
        enqueue([op], completion: completion)
    }

    public func close() {
        if !readOnly { flush() }
        lock.lock()
        closed = true
        let lost = outageSince != nil ? pending.count : 0
        lock.unlock()
        if lost > 0 {
            logger.warning("store: \(lost) queued write\(lost == 1 ? "" : "s") not made: the database at \(url.redacted) is still unreachable")
        }
        writer.close()
        reader.close()
    }

    /// Over the bound: the oldest queued events-only writes go, counted. The batch in the writer's hands
    /// (`inFlight` events) is left out of the count, and trimmed if it comes back. Returns the completions to
    /// be told `queueFull`. Holds `lock`.
    private func trimLocked(counting inFlight: Int = 0) -> [(@Sendable (Error?) -> Void)?] {
        var left: [(@Sendable (Error?) -> Void)?] = []
        while queuedEvents - inFlight > maxQueuedEvents,
              let oldest = pending.firstIndex(where: { $0.events > 0 && $0.events == $0.ops.count }) {
            let unit = pending.remove(at: oldest)
            queuedEvents -= unit.events
            droppedEvents += unit.events
            left.append(unit.completion)
        }
        return left
    }

    /// Writes that may wait for the database (and are retried) rather than fail at once when it is away.
    static func waits(_ op: StoreOp) -> Bool {
        switch op {
        case .event, .touchAssignment, .prune: return true
        default: return false
        }
    }

    static func eventCount(_ ops: [StoreOp]) -> Int {
        ops.reduce(0) { n, op in if case .event = op { return n + 1 }; return n }
    }

    /// Runs on `writerQueue`: commits everything queued so far in one transaction.
    private func drain() {
        lock.lock()
        var batch = pending
        pending.removeAll(keepingCapacity: true)
        drainScheduled = false
        if droppedEvents > 0 {
            let dropped = droppedEvents
            droppedEvents = 0
            let event = ConsoleEvent(kind: .eventsSuppressed,
                                     detail: "… \(dropped) more suppressed while the database was unreachable or slow")
            batch.append(Unit(ops: [.event(event)], completion: nil, queuedAt: DispatchTime.now().uptimeNanoseconds,
                              waits: true, events: 1))
            queuedEvents += 1
        }
        inFlightEvents = batch.reduce(0) { $0 + $1.events }
        let isClosed = closed
        let away = outageSince != nil
        lock.unlock()
        // Nothing to write: done, unless the database is away (then an empty transaction asks whether it is back).
        if batch.allSatisfy({ $0.ops.isEmpty }) && (!away || isClosed) {
            for unit in batch { unit.completion?(nil) }
            return
        }
        let started = DispatchTime.now().uptimeNanoseconds
        var results = [Error?](repeating: nil, count: batch.count)
        do {
            // Two daemons' transactions touching the same rows in another order may deadlock (or fail to
            // serialize): PostgreSQL rolls one back, and it goes again, a few times, after a short pause.
            var attempt = 0
            while true {
                do {
                    do {
                        results = try write(batch, savepoints: false)
                    } catch let failure as StoreFailure where failure.kind != .unreachable && failure.kind != .busy {
                        // An event failed outside a savepoint (it never should): again, each write in its own.
                        results = try write(batch, savepoints: true)
                    }
                    break
                } catch let failure as StoreFailure where failure.kind == .busy && attempt < 10 {
                    attempt += 1
                    usleep(UInt32.random(in: 5_000...(20_000 * UInt32(attempt))))
                }
            }
        } catch let failure as StoreFailure where failure.kind == .unreachable {
            wentAway(batch, failure)
            commitObserver?(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9, batch.count)
            return
        } catch {
            let failure = PostgresErrors.failure(error, url: url)
            results = batch.map { $0.ops.isEmpty ? nil : failure }
        }
        lock.lock()
        queuedEvents -= batch.reduce(0) { $0 + $1.events }
        inFlightEvents = 0
        let since = outageSince
        outageSince = nil
        retryDelay = 0.5
        // More may have queued while the database was away: go on at once.
        let more = !pending.isEmpty && !drainScheduled
        if more { drainScheduled = true }
        lock.unlock()
        if let since {
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - since) / 1e9
            logger.notice("store: the database at \(url.redacted) is back: caught up after \(String(format: "%.1f", seconds)) s, \(batch.count) write\(batch.count == 1 ? "" : "s")")
        }
        if more { writerQueue.async { self.drain() } }
        commitObserver?(Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9, results.filter { $0 != nil }.count)
        for (i, unit) in batch.enumerated() {
            // A conflict (another node assigned first) or a fence (another node claimed since) is the cluster
            // working as meant: the core settles it and says so; only real failures are logged here.
            if let err = results[i], ![.conflict, .fenced].contains((err as? StoreFailure)?.kind) {
                failureLog.failed(unit.ops, err)
            }
            unit.completion?(results[i])
        }
        failureLog.report(logger)
    }

    /// The database went away during `batch`: the writes that may wait go back to the head of the queue, the
    /// others fail, and the writer tries again later.
    private func wentAway(_ batch: [Unit], _ failure: StoreFailure) {
        let kept = batch.filter { $0.waits && !$0.ops.isEmpty }
        let failed = batch.filter { !($0.waits && !$0.ops.isEmpty) }
        lock.lock()
        let first = outageSince == nil
        if first { outageSince = DispatchTime.now().uptimeNanoseconds }
        queuedEvents -= failed.reduce(0) { $0 + $1.events }
        inFlightEvents = 0
        pending.insert(contentsOf: kept, at: 0)
        let left = trimLocked()
        let delay = retryDelay
        retryDelay = min(retryDelay * 2, 5)
        let queued = pending.count
        let isClosed = closed
        lock.unlock()
        if first {
            logger.warning("store: \(failure.message); keeping \(queued) write\(queued == 1 ? "" : "s") queued and retrying until it is back")
        }
        for unit in failed { unit.completion?(unit.ops.isEmpty ? nil : failure) }
        for completion in left { completion?(StoreError.queueFull) }
        if !isClosed {
            writerQueue.asyncAfter(deadline: .now() + delay) { self.drain() }
        }
    }

    /// One transaction for the batch, a savepoint per unit (but events alone, which nothing refuses, unless
    /// `savepoints`). Throws `.unreachable` if the connection goes.
    /// The consoles whose rows the batch changes, their assignments locked first and in one order (uuid, label):
    /// two daemons' writers then never wait for each other in a circle (a deadlock PostgreSQL would break by
    /// rolling one back).
    private func lockConsoleRows(_ batch: [Unit], _ conn: PostgresConnection) throws {
        var keys = Set<ConsoleKey>()
        func collect(_ op: StoreOp) {
            switch op {
            case .upsertAssignment(let a): keys.insert(ConsoleKey(uuid: a.uuid, label: a.label))
            case let .touchAssignment(uuid, label, _, _), let .deleteAssignment(uuid, label),
                 let .saveScrollback(uuid, label, _, _), let .appendScrollback(uuid, label, _, _, _):
                keys.insert(ConsoleKey(uuid: uuid, label: label))
            case let .fenced(_, _, inner): inner.forEach(collect)
            case .event, .prune, .saveToken, .revokeToken: break
            }
        }
        for unit in batch { unit.ops.forEach(collect) }
        let sorted = keys.compactMap { key in (try? Self.uuidKey(key.uuid)).map { ($0, key.label) } }.sorted { $0 < $1 }
        guard !sorted.isEmpty else { return }
        try writer.query(conn, """
            SELECT 1 FROM assignments
            WHERE (uuid, label) IN (SELECT * FROM unnest(\(sorted.map(\.0))::text[], \(sorted.map(\.1))::text[]))
            ORDER BY uuid, label FOR UPDATE
            """)
    }

    private func write(_ batch: [Unit], savepoints: Bool) throws -> [Error?] {
        try writer.run { conn in
            var results = [Error?](repeating: nil, count: batch.count)
            // Events in a row are inserted together, a few hundred rows a statement.
            var events: [ConsoleEvent] = []
            func insertEvents() throws {
                var start = 0
                while start < events.count {
                    let end = min(start + 400, events.count)
                    try writer.query(conn, insertEventRows(events[start..<end], node: node))
                    start = end
                }
                events.removeAll()
            }
            try writer.query(conn, "BEGIN")
            do {
                try lockConsoleRows(batch, conn)
                for (i, unit) in batch.enumerated() where !unit.ops.isEmpty {
                    if !savepoints && unit.events == unit.ops.count {
                        for case let .event(e) in unit.ops { events.append(e) }
                        continue
                    }
                    try insertEvents()
                    try writer.query(conn, "SAVEPOINT unit")
                    do {
                        for op in unit.ops { try apply(op, conn) }
                        try writer.query(conn, "RELEASE SAVEPOINT unit")
                    } catch {
                        let failure = PostgresErrors.failure(error, url: url)
                        // Lost, or a deadlock with another daemon: the whole batch goes again (`drain`).
                        if failure.kind == .unreachable || failure.kind == .busy { throw failure }
                        results[i] = failure
                        try writer.query(conn, "ROLLBACK TO SAVEPOINT unit")
                    }
                }
                try insertEvents()
                try writer.query(conn, "COMMIT")
            } catch {
                let failure = PostgresErrors.failure(error, url: url)
                if failure.kind != .unreachable { _ = try? writer.query(conn, "ROLLBACK") }
                throw failure
            }
            return results
        }
    }

}
