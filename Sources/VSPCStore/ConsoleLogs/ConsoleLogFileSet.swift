import Foundation
import VSPCCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed file operation of the console log writer.
struct ConsoleLogFailure: Error, Equatable {
    var operation: String
    var path: String
    var errno: Int32
    /// Set when the failure is not an errno (a file of the wrong type).
    var reason: String?

    var description: String {
        "cannot \(operation) \(path): \(reason ?? String(cString: strerror(errno)))"
    }
}

/// A console whose files are open.
final class OpenConsoleLog {
    var dataFD: Int32
    /// -1 when the index could not be opened or written; it is opened again when an entry is due.
    var indexFD: Int32 = -1
    /// The data file's size as this writer knows it.
    var size: UInt64
    /// The index's last entry (nil for a fresh index).
    var lastEntry: ConsoleLogIndex.Entry?
    var lastUse: UInt64

    init(dataFD: Int32, size: UInt64, lastUse: UInt64) {
        self.dataFD = dataFD
        self.size = size
        self.lastUse = lastUse
    }
}

/// The console log files as the writer thread sees them: the open files (a bounded, least recently used set),
/// writing, rotation and retention. Used by that one thread only.
final class ConsoleLogFileSet {
    let directory: String
    let settings: ConsoleLogSettings
    /// At most this many consoles have files open (each holds a data and an index file).
    let maxOpenConsoles: Int

    private(set) var openLogs: [ConsoleKey: OpenConsoleLog] = [:]
    private var tick: UInt64 = 0

    /// Counters the writer collects after each batch.
    var writtenBytes: UInt64 = 0
    var rotations: UInt64 = 0
    var errors: UInt64 = 0
    var lastFailure: ConsoleLogFailure?

    init(directory: String, settings: ConsoleLogSettings, maxOpenConsoles: Int) {
        self.directory = directory
        self.settings = settings
        self.maxOpenConsoles = max(1, maxOpenConsoles)
    }

    private var maxBytes: UInt64 { UInt64(max(1, settings.maxBytes)) }
    private var fileMode: mode_t { mode_t(settings.fileMode) }

    func path(_ name: String) -> String { directory + "/" + name }

    func fail(_ operation: String, _ path: String, _ code: Int32, reason: String? = nil) {
        errors += 1
        lastFailure = ConsoleLogFailure(operation: operation, path: path, errno: code, reason: reason)
    }

    // MARK: Writing

    /// Writes as much of `pending` as the disk takes, rotating at the size limit. Returns how many of its bytes
    /// are written (all of them unless a failure was recorded). Runs of output that need no index entry of their
    /// own go out in one write(2).
    func writeOutput(_ key: ConsoleKey, _ pending: ConsoleLogPending) -> Int {
        check(key)
        let segments = pending.segments
        var i = 0
        var at = 0
        while i < segments.count {
            guard let log = openLog(key) else { return at }
            if log.size >= maxBytes {
                guard rotate(key) else { return at }
                continue
            }
            let milliseconds = segments[i].milliseconds
            if ConsoleLogIndex.needsEntry(after: log.lastEntry, at: milliseconds) {
                addEntry(key, log, ConsoleLogIndex.Entry(offset: log.size, milliseconds: milliseconds))
            }
            var end = segments[i].range.upperBound
            var next = i + 1
            while next < segments.count, !ConsoleLogIndex.needsEntry(after: log.lastEntry, at: segments[next].milliseconds) {
                end = segments[next].range.upperBound
                next += 1
            }
            let length = Int(min(UInt64(end - at), maxBytes - log.size))
            let written = pending.bytes.withUnsafeBufferPointer { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return writeSome(log.dataFD, base + at, length)
            }
            if written <= 0 {
                let code = written < 0 ? errno : EIO
                fail("write", path(ConsoleLogFiles.live(key)), code)
                // The descriptor may be the trouble (a file replaced under it): open by path next time.
                closeLog(key)
                return at
            }
            log.size += UInt64(written)
            at += written
            writtenBytes += UInt64(written)
            while i < segments.count && at >= segments[i].range.upperBound { i += 1 }
        }
        return pending.count
    }

    /// One write(2), retried on EINTR. Returns what write returned.
    private func writeSome(_ fd: Int32, _ pointer: UnsafePointer<UInt8>, _ length: Int) -> Int {
        while true {
            let n = write(fd, pointer, length)
            if n < 0 && errno == EINTR { continue }
            return n
        }
    }

    /// Writes all of `bytes` (a short write is continued). Returns false with errno set on failure.
    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var at = 0
        while at < bytes.count {
            let n = bytes.withUnsafeBufferPointer { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return writeSome(fd, base + at, bytes.count - at)
            }
            if n <= 0 {
                if n == 0 { errno = EIO }
                return false
            }
            at += n
        }
        return true
    }

    private func addEntry(_ key: ConsoleKey, _ log: OpenConsoleLog, _ entry: ConsoleLogIndex.Entry) {
        let indexPath = path(ConsoleLogFiles.index(key))
        if log.indexFD < 0 {
            guard let opened = openIndex(indexPath, dataSize: log.size) else { return }
            log.indexFD = opened.fd
            log.lastEntry = opened.last
            guard ConsoleLogIndex.needsEntry(after: log.lastEntry, at: entry.milliseconds) else { return }
        }
        if writeAll(log.indexFD, ConsoleLogIndex.encode(entry)) {
            log.lastEntry = entry
        } else {
            fail("write", indexPath, errno)
            close(log.indexFD)
            log.indexFD = -1
        }
    }

    // MARK: Opening

    /// A console's open files, opened by path when needed (the least recently used console's closed first).
    private func openLog(_ key: ConsoleKey) -> OpenConsoleLog? {
        tick += 1
        if let log = openLogs[key] {
            log.lastUse = tick
            return log
        }
        let dataPath = path(ConsoleLogFiles.live(key))
        let fd = open(dataPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, fileMode)
        if fd < 0 {
            fail("open", dataPath, errno)
            return nil
        }
        guard let st = prepare(fd, dataPath) else {
            close(fd)
            return nil
        }
        while openLogs.count >= maxOpenConsoles, let oldest = openLogs.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            closeLog(oldest.key)
        }
        let log = OpenConsoleLog(dataFD: fd, size: UInt64(max(0, st.st_size)), lastUse: tick)
        if let index = openIndex(path(ConsoleLogFiles.index(key)), dataSize: log.size) {
            log.indexFD = index.fd
            log.lastEntry = index.last
        }
        openLogs[key] = log
        return log
    }

    /// Checks that an opened file is a regular file and gives it the settings' mode and group. Nil (with the
    /// failure recorded) when it cannot be used.
    private func prepare(_ fd: Int32, _ path: String) -> stat? {
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            fail("stat", path, errno)
            return nil
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            fail("open", path, EINVAL, reason: "not a regular file")
            return nil
        }
        if st.st_mode & 0o7777 != fileMode, fchmod(fd, fileMode) != 0 {
            fail("chmod", path, errno)
            return nil
        }
        if let group = settings.groupID, st.st_gid != gid_t(group), fchown(fd, uid_t.max, gid_t(group)) != 0 {
            fail("chown", path, errno)
            return nil
        }
        return st
    }

    /// Opens a console's index for appending, checked against its data file's size: a missing, foreign or stale
    /// index (its last entry past the data's end, or an empty data file) starts again with just the header.
    private func openIndex(_ indexPath: String, dataSize: UInt64) -> (fd: Int32, last: ConsoleLogIndex.Entry?)? {
        let fd = open(indexPath, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, fileMode)
        if fd < 0 {
            fail("open", indexPath, errno)
            return nil
        }
        guard let st = prepare(fd, indexPath) else {
            close(fd)
            return nil
        }
        let header = ConsoleLogIndex.headerSize, entry = ConsoleLogIndex.entrySize
        let size = Int(max(0, st.st_size))
        var last: ConsoleLogIndex.Entry?
        var fresh = dataSize == 0 || size < header
        if !fresh {
            let aligned = header + (size - header) / entry * entry
            var bytes = readAt(fd, 0, header)
            if aligned > header { bytes += readAt(fd, aligned - entry, entry) }
            if let entries = ConsoleLogIndex.decode(bytes), bytes.count == min(aligned, header + entry) {
                last = entries.last
                if let last, last.offset > dataSize { fresh = true }
                if !fresh && aligned != size && ftruncate(fd, off_t(aligned)) != 0 { fresh = true }
            } else {
                fresh = true
            }
        }
        if fresh {
            last = nil
            guard ftruncate(fd, 0) == 0, writeAll(fd, ConsoleLogIndex.header) else {
                fail("write", indexPath, errno)
                close(fd)
                return nil
            }
        }
        return (fd, last)
    }

    private func readAt(_ fd: Int32, _ offset: Int, _ length: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: length)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, off_t(offset)) }
        return n > 0 ? Array(out[0..<n]) : []
    }

    /// Notices what happened to an open console's data file behind the writer's back: deleted (open it again by
    /// path), truncated by logrotate's copytruncate (start a fresh index), or grown.
    private func check(_ key: ConsoleKey) {
        guard let log = openLogs[key] else { return }
        var st = stat()
        guard fstat(log.dataFD, &st) == 0, st.st_nlink > 0 else {
            closeLog(key)
            return
        }
        let size = UInt64(max(0, st.st_size))
        if size < log.size {
            log.size = size
            if log.indexFD >= 0 {
                close(log.indexFD)
                log.indexFD = -1
            }
            log.lastEntry = nil
            let indexPath = path(ConsoleLogFiles.index(key))
            if let index = openIndex(indexPath, dataSize: 0) {
                log.indexFD = index.fd
            }
        } else {
            log.size = size
        }
    }

    // MARK: Closing and rotation

    func closeLog(_ key: ConsoleKey) {
        guard let log = openLogs.removeValue(forKey: key) else { return }
        close(log.dataFD)
        if log.indexFD >= 0 { close(log.indexFD) }
    }

    func closeAll() {
        for key in Array(openLogs.keys) { closeLog(key) }
    }

    /// Rotates a console's live file: `.keep` goes, each `.n` becomes `.n+1`, the live file and its index become
    /// `.1`. With keep 0 the live file and index are deleted. The next write creates a new live file.
    private func rotate(_ key: ConsoleKey) -> Bool {
        closeLog(key)
        let keep = settings.keep
        if keep <= 0 {
            guard remove(ConsoleLogFiles.live(key)) != nil, remove(ConsoleLogFiles.index(key)) != nil else { return false }
        } else {
            // `.keep` goes, and any higher-numbered files a larger keep setting left behind.
            var n = keep
            while true {
                guard let data = remove(ConsoleLogFiles.rotated(key, n)),
                    let index = remove(ConsoleLogFiles.rotatedIndex(key, n))
                else { return false }
                if n > keep && !data && !index { break }
                n += 1
            }
            for n in stride(from: keep - 1, through: 1, by: -1) {
                guard move(ConsoleLogFiles.rotated(key, n), ConsoleLogFiles.rotated(key, n + 1)),
                    move(ConsoleLogFiles.rotatedIndex(key, n), ConsoleLogFiles.rotatedIndex(key, n + 1))
                else { return false }
            }
            guard move(ConsoleLogFiles.live(key), ConsoleLogFiles.rotated(key, 1)),
                move(ConsoleLogFiles.index(key), ConsoleLogFiles.rotatedIndex(key, 1))
            else { return false }
        }
        rotations += 1
        return true
    }

    /// Unlinks a file of the folder: true when it was there, false when it was not, nil (recorded) on failure.
    func remove(_ name: String) -> Bool? {
        let target = path(name)
        if unlink(target) == 0 { return true }
        if errno == ENOENT { return false }
        fail("delete", target, errno)
        return nil
    }

    /// Renames a file of the folder (a missing one is no failure).
    private func move(_ from: String, _ to: String) -> Bool {
        if rename(path(from), path(to)) == 0 || errno == ENOENT { return true }
        fail("rename", path(from), errno)
        return false
    }
}
