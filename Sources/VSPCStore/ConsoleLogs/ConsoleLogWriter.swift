import Foundation
import Logging
import VSPCCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the console log folder cannot be used.
public enum ConsoleLogWriterError: Error, CustomStringConvertible, Equatable {
    case cannotCreate(path: String, reason: String)
    case notADirectory(path: String)
    case notWritable(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotCreate(path, reason): return "cannot create the console log folder \(path): \(reason)"
        case let .notADirectory(path): return "the console log folder \(path) is not a directory"
        case let .notWritable(path, reason): return "cannot write in the console log folder \(path): \(reason)"
        }
    }
}

/// Keeps every byte each console printed in files (`ConsoleLogFiles` names them, `ConsoleLogIndex` times them).
///
/// `append` runs on the daemon's event loop and never touches the disk: it queues the bytes under a lock and
/// returns. A thread of its own writes the queue in batches (every `flushInterval`, sooner when the queue holds
/// `batchBytes`), rotates files at `maxBytes`, and deletes the files of long-silent consoles. When the disk fails,
/// a console's unwritten bytes wait for the next batch (up to `maxRetryBytesPerConsole`; newer bytes past that are
/// lost, so a file has one gap rather than many); the consoles themselves never wait. Call `close()` when done.
public final class ConsoleLogWriter: ConsoleOutputSink, @unchecked Sendable {
    /// The writer's limits and timings.
    public struct Tuning: Sendable, Equatable {
        /// How long output may wait before it is written.
        public var flushInterval: TimeInterval = 0.1
        /// Output waiting beyond this many bytes is written at once.
        public var batchBytes = 256 * 1024
        /// Output beyond this many queued bytes is dropped (and counted as lost).
        public var maxQueuedBytes = 64 * 1024 * 1024
        /// A console's bytes kept for a retry after a failed write; newer bytes beyond are lost.
        public var maxRetryBytesPerConsole = 1024 * 1024
        /// Open file descriptors at most (two per console: data and index).
        public var maxOpenFiles = 256
        /// How often the files of silent consoles are looked for (and once at start).
        public var retentionInterval: TimeInterval = 3600
        /// At most one error line per this interval.
        public var errorLogInterval: TimeInterval = 60
        public init() {}
    }

    public let settings: ConsoleLogSettings
    public let tuning: Tuning
    private let logger: Logger
    /// Used by the writer thread only.
    private let files: ConsoleLogFileSet

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var pending: [ConsoleKey: ConsoleLogPending] = [:]
    private var pendingBytes = 0
    private var stats = ConsoleLogStatistics()
    private var closed = false
    private var finished = false
    private var reopenRequested = false
    private var flushRequested: UInt64 = 0
    private var flushDone: UInt64 = 0

    // The writer thread's own.
    private var retry: [ConsoleKey: ConsoleLogPending] = [:]
    private var failing = false
    private var failureReported = false
    private var lastErrorLog: Date?
    private var lostAtLastReport: UInt64 = 0
    private var errorsSinceReport: UInt64 = 0

    /// Creates the folder if it is missing (mode and group from `settings`) and starts the writer thread.
    public init(settings: ConsoleLogSettings, logger: Logger, tuning: Tuning = Tuning()) throws {
        try Self.prepareDirectory(settings)
        self.settings = settings
        self.tuning = tuning
        self.logger = logger
        files = ConsoleLogFileSet(directory: settings.directory, settings: settings,
                                  maxOpenConsoles: max(1, tuning.maxOpenFiles / 2))
        let thread = Thread { [self] in run() }
        thread.name = "vspcd.console-logs"
        thread.start()
    }

    // MARK: The sink (any thread)

    public func append(_ key: ConsoleKey, _ bytes: [UInt8], at date: Date) {
        guard !bytes.isEmpty else { return }
        let milliseconds = Self.milliseconds(date)
        condition.lock()
        defer { condition.unlock() }
        guard !closed else { return }
        guard stats.queuedBytes <= tuning.maxQueuedBytes - bytes.count else {
            stats.lostBytes += UInt64(bytes.count)
            return
        }
        let before = pendingBytes
        pending[key, default: ConsoleLogPending()].append(bytes, milliseconds: milliseconds)
        pendingBytes += bytes.count
        stats.queuedBytes += bytes.count
        // Wake the writer when output starts waiting (it then waits flushInterval) and when a batch is full.
        if before == 0 || (before < tuning.batchBytes && pendingBytes >= tuning.batchBytes) {
            condition.broadcast()
        }
    }

    public func reopen() {
        condition.lock()
        reopenRequested = true
        condition.broadcast()
        condition.unlock()
    }

    /// Writes what is queued (trying failed writes once more), closes the files and stops the thread; later
    /// output is ignored. Blocks until done; calling it again returns at once.
    public func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    public func statistics() -> ConsoleLogStatistics {
        condition.lock()
        defer { condition.unlock() }
        return stats
    }

    /// Blocks until everything queued before the call has been tried (written, or kept for a retry after a
    /// failure). For tests and for a daemon that wants the files current.
    public func flush() {
        condition.lock()
        defer { condition.unlock() }
        guard !finished else { return }
        flushRequested += 1
        let target = flushRequested
        condition.broadcast()
        while flushDone < target && !finished { condition.wait() }
    }

    // MARK: The writer thread

    private func run() {
        // Deadlines on the monotonic clock, so that a step of the wall clock neither stalls nor hurries writes.
        var nextRetention = Self.monotonicSeconds()
        var batchDeadline: Double?
        while true {
            condition.lock()
            while !closed && !reopenRequested && flushDone >= flushRequested && pendingBytes < tuning.batchBytes {
                let now = Self.monotonicSeconds()
                if now >= nextRetention { break }
                var wake = nextRetention
                if pendingBytes > 0 || !retry.isEmpty {
                    let deadline = batchDeadline ?? now + tuning.flushInterval
                    batchDeadline = deadline
                    if now >= deadline { break }
                    wake = min(deadline, wake)
                }
                _ = condition.wait(until: Date().addingTimeInterval(min(wake - now, 10)))
            }
            batchDeadline = nil
            let batch = pending
            pending = [:]
            pendingBytes = 0
            let reopen = reopenRequested
            reopenRequested = false
            let target = flushRequested
            let closing = closed
            condition.unlock()

            if reopen { files.closeAll() }
            let result = write(batch)
            let consumed = result.consumed
            var lost = result.lost
            if closing {
                // The last try failed: what is left is lost.
                lost += retry.values.reduce(0) { $0 + $1.count }
                retry = [:]
            }
            let now = Date()
            if Self.monotonicSeconds() >= nextRetention {
                files.applyRetention(now: now)
                nextRetention = Self.monotonicSeconds() + max(0.01, tuning.retentionInterval)
            }
            if closing { files.closeAll() }

            condition.lock()
            stats.writtenBytes += files.writtenBytes
            stats.rotations += files.rotations
            stats.writeErrors += files.errors
            stats.lostBytes += UInt64(lost)
            stats.queuedBytes -= consumed + lost
            let snapshot = stats
            condition.unlock()
            report(errors: files.errors, failure: files.lastFailure, statistics: snapshot, now: now)
            files.writtenBytes = 0
            files.rotations = 0
            files.errors = 0
            files.lastFailure = nil

            condition.lock()
            flushDone = target
            if closing { finished = true }
            condition.broadcast()
            condition.unlock()
            if closing { return }
        }
    }

    /// Writes a batch after the bytes kept from failed writes. Returns how many queued bytes were written and
    /// how many were given up.
    private func write(_ batch: [ConsoleKey: ConsoleLogPending]) -> (consumed: Int, lost: Int) {
        var work = retry
        retry = [:]
        for (key, output) in batch {
            if var earlier = work.removeValue(forKey: key) {
                earlier.append(output)
                work[key] = earlier
            } else {
                work[key] = output
            }
        }
        var consumed = 0, lost = 0
        for (key, output) in work {
            // A key whose file name would not read back as that console (not a vc-uuid) gets no file.
            let parsed = ConsoleLogFiles.parse(ConsoleLogFiles.live(key))
            guard parsed?.key == key, parsed?.rotation == nil, parsed?.isIndex == false else {
                lost += output.count
                continue
            }
            let done = files.writeOutput(key, output)
            consumed += done
            guard done < output.count else { continue }
            let left = output.count - done
            let kept = min(left, max(0, tuning.maxRetryBytesPerConsole))
            lost += left - kept
            if kept > 0 { retry[key] = output.slice(from: done, length: kept) }
        }
        return (consumed, lost)
    }

    /// At most one error line per `errorLogInterval` while writes fail or output is dropped, and one line when
    /// writing works again.
    private func report(errors: UInt64, failure: ConsoleLogFailure?, statistics: ConsoleLogStatistics, now: Date) {
        errorsSinceReport += errors
        let lostSinceReport = statistics.lostBytes - lostAtLastReport
        if errors > 0 || lostSinceReport > 0 {
            if errors > 0 { failing = true }
            if lastErrorLog.map({ now.timeIntervalSince($0) >= tuning.errorLogInterval }) ?? true {
                let cause = failure.map { "\($0.description); " } ?? "the queue is full; "
                logger.error("console logs: \(cause)\(lostSinceReport) bytes lost since the last report, \(statistics.queuedBytes) bytes queued, \(errorsSinceReport) failed writes")
                lastErrorLog = now
                lostAtLastReport = statistics.lostBytes
                errorsSinceReport = 0
                failureReported = true
            }
        } else if failing && retry.isEmpty {
            failing = false
            if failureReported {
                failureReported = false
                logger.notice("console logs: writing again (\(statistics.lostBytes) bytes lost in all since start)")
            }
        }
    }

    // MARK: Helpers

    static func monotonicSeconds() -> Double {
        Double(DispatchTime.now().uptimeNanoseconds) / 1e9
    }

    /// Milliseconds since 1970, whatever the date (a date far out of range is clamped).
    static func milliseconds(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1000).rounded(.down)
        guard value.isFinite else { return 0 }
        if value >= 9.2e18 { return Int64.max }
        if value <= -9.2e18 { return Int64.min }
        return Int64(value)
    }

    /// Creates the folder (and any missing parent) with the settings' mode and group, and checks that it can be
    /// written.
    static func prepareDirectory(_ settings: ConsoleLogSettings) throws {
        let path = settings.directory
        var st = stat()
        if stat(path, &st) != 0 {
            guard errno == ENOENT else {
                throw ConsoleLogWriterError.cannotCreate(path: path, reason: String(cString: strerror(errno)))
            }
            try createDirectories(path, settings)
        } else if st.st_mode & S_IFMT != S_IFDIR {
            throw ConsoleLogWriterError.notADirectory(path: path)
        }
        if access(path, W_OK | X_OK) != 0 {
            throw ConsoleLogWriterError.notWritable(path: path, reason: String(cString: strerror(errno)))
        }
    }

    private static func createDirectories(_ path: String, _ settings: ConsoleLogSettings) throws {
        var st = stat()
        if path.isEmpty || stat(path, &st) == 0 { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try createDirectories(parent, settings) }
        let mode = mode_t(settings.directoryMode)
        func failure(_ code: Int32) -> ConsoleLogWriterError {
            .cannotCreate(path: path, reason: String(cString: strerror(code)))
        }
        if mkdir(path, mode) != 0 {
            let code = errno
            if code == EEXIST && stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR { return }
            throw failure(code)
        }
        // mkdir's mode passes through the umask; set it exactly.
        if chmod(path, mode) != 0 { throw failure(errno) }
        if let group = settings.groupID, chown(path, uid_t.max, gid_t(group)) != 0 { throw failure(errno) }
    }
}
