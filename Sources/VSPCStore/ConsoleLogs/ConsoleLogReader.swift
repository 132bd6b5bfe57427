import Foundation
import VSPCCore

#if canImport(Glibc)
import Glibc
#endif

/// Reads the console logs of a `--console-log-dir` (layout: `ConsoleLogFiles`, `ConsoleLogIndex`) for
/// `vspc log`, `vspc grep` and the daemon's `/console_log/<uuid>`. It only reads, so it works with the daemon
/// running or stopped; a file the writer is appending to is read up to the size it had when it was listed.
///
/// Time windows (`since`, `until`): a line belongs to the window when the time of its first byte is at or after
/// `since` and before `until`. A byte's time is that of the last index entry at or before it; bytes whose time
/// is unknown (a file without a readable index, or before its first entry) are left out of any window, and
/// read when neither `since` nor `until` is given. Each file starts a line: a line the writer split across a
/// rotation is two lines here.
public struct ConsoleLogReader: Sendable {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// One file of a console's log and its time index.
    public struct Segment: Equatable, Sendable {
        public var key: ConsoleKey
        public var path: String
        /// nil for the live file, else its rotation number (1 is the newest).
        public var rotation: Int?
        /// The file's size when it was listed: what is read of it.
        public var size: UInt64
        /// Empty when the index is missing or unreadable: the times of the file's bytes are unknown.
        public var entries: [ConsoleLogIndex.Entry]

        public init(key: ConsoleKey, path: String, rotation: Int?, size: UInt64, entries: [ConsoleLogIndex.Entry]) {
            self.key = key
            self.path = path
            self.rotation = rotation
            self.size = size
            self.entries = entries
        }

        /// The time of the byte at `offset`, nil if unknown.
        public func time(of offset: UInt64) -> Date? {
            ConsoleLogIndex.time(of: offset, in: entries)?.date
        }
    }

    /// A piece of a console's log, as `read` hands it over.
    public struct Chunk: Sendable {
        public var segment: Segment
        /// Where `bytes` start in the segment's file.
        public var offset: UInt64
        public var bytes: [UInt8]
        /// The first chunk of a range read from the file: `bytes` start at a line start.
        public var startsRange: Bool
    }

    /// An index larger than this is not read (a 10 MiB file with an entry each second for a year is ~500 MiB of
    /// output; its index stays far below).
    static let maxIndexBytes = 64 * 1024 * 1024

    /// What one listing of the folder found: each console with a data file, and its rotation numbers.
    public struct Listing: Sendable {
        /// Sorted by uuid and label.
        public var consoles: [ConsoleKey]
        var rotations: [ConsoleKey: [Int]]
    }

    /// Lists the folder once (for work over many consoles).
    public func listing() throws -> Listing {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        var rotations: [ConsoleKey: [Int]] = [:]
        for name in names {
            guard let parsed = ConsoleLogFiles.parse(name), !parsed.isIndex else { continue }
            rotations[parsed.key, default: []] += parsed.rotation.map { [$0] } ?? []
        }
        let consoles = rotations.keys.sorted { ($0.uuid, $0.label) < ($1.uuid, $1.label) }
        return Listing(consoles: consoles, rotations: rotations)
    }

    /// Every console with a live or rotated data file, sorted by uuid and label.
    public func consoles() throws -> [ConsoleKey] {
        try listing().consoles
    }

    /// A console's files, oldest first: the rotated ones from the highest number down to `.1`, then the live file.
    /// Files that cannot be opened are left out.
    public func segments(_ key: ConsoleKey) -> [Segment] {
        segments(key, in: (try? listing()) ?? Listing(consoles: [], rotations: [:]))
    }

    /// `segments(_:)` from a listing made before.
    public func segments(_ key: ConsoleKey, in listing: Listing) -> [Segment] {
        var out: [Segment] = []
        for n in (listing.rotations[key] ?? []).sorted(by: >) {
            if let s = segment(key, data: ConsoleLogFiles.rotated(key, n), index: ConsoleLogFiles.rotatedIndex(key, n), rotation: n) {
                out.append(s)
            }
        }
        if let live = liveSegment(key) {
            out.append(live)
        }
        return out
    }

    /// The live file and its index as they are now; nil when there is no live file.
    public func liveSegment(_ key: ConsoleKey) -> Segment? {
        segment(key, data: ConsoleLogFiles.live(key), index: ConsoleLogFiles.index(key), rotation: nil)
    }

    private func segment(_ key: ConsoleKey, data: String, index: String, rotation: Int?) -> Segment? {
        let path = directory + "/" + data
        guard let size = Self.regularFileSize(path) else { return nil }
        var entries: [ConsoleLogIndex.Entry] = []
        let indexPath = directory + "/" + index
        if let indexSize = Self.regularFileSize(indexPath), indexSize <= UInt64(Self.maxIndexBytes),
            let file = try? LogFile(path: indexPath), let bytes = try? file.read(at: 0, count: Int(indexSize)),
            let decoded = ConsoleLogIndex.decode(bytes)
        {
            entries = decoded
        }
        return Segment(key: key, path: path, rotation: rotation, size: size, entries: entries)
    }

    /// The byte ranges of a segment that hold the window's lines, line-aligned (see the type's rule); the whole
    /// file when `since` and `until` are nil.
    public func ranges(of segment: Segment, since: Date?, until: Date?) throws -> [Range<UInt64>] {
        let size = segment.size
        guard size > 0 else { return [] }
        if since == nil && until == nil { return [0..<size] }
        let sinceMS = since.map { Int64(($0.timeIntervalSince1970 * 1000).rounded(.down)) }
        let untilMS = until.map { Int64(($0.timeIntervalSince1970 * 1000).rounded(.down)) }
        // The spans of bytes whose time is in the window, merged.
        var spans: [Range<UInt64>] = []
        for (i, entry) in segment.entries.enumerated() where entry.offset < size {
            let inWindow = (sinceMS.map { entry.milliseconds >= $0 } ?? true) && (untilMS.map { entry.milliseconds < $0 } ?? true)
            guard inWindow else { continue }
            let end = i + 1 < segment.entries.count ? min(segment.entries[i + 1].offset, size) : size
            guard entry.offset < end else { continue }
            if let last = spans.last, last.upperBound == entry.offset {
                spans[spans.count - 1] = last.lowerBound..<end
            } else {
                spans.append(entry.offset..<end)
            }
        }
        guard !spans.isEmpty else { return [] }
        // Lines whose first byte is in a span: from the first line start in it to the first line start after it.
        let file = try LogFile(path: segment.path)
        var out: [Range<UInt64>] = []
        for span in spans {
            let lower = try file.lineStart(atOrAfter: span.lowerBound, size: size)
            let upper = try file.lineStart(atOrAfter: span.upperBound, size: size)
            guard lower < upper else { continue }
            if let last = out.last, last.upperBound >= lower {
                out[out.count - 1] = last.lowerBound..<max(last.upperBound, upper)
            } else {
                out.append(lower..<upper)
            }
        }
        return out
    }

    /// What a console printed in the window, across its rotated files, oldest first, handed to `body` in chunks
    /// of at most `chunkSize` bytes (cut anywhere; `Chunk.offset` places them). Returns the segments read.
    @discardableResult
    public func read(_ key: ConsoleKey, since: Date? = nil, until: Date? = nil, chunkSize: Int = 1 << 20,
                     _ body: (Chunk) throws -> Void) throws -> [Segment] {
        let segments = segments(key)
        for segment in segments {
            let ranges = try ranges(of: segment, since: since, until: until)
            guard !ranges.isEmpty else { continue }
            let file = try LogFile(path: segment.path)
            for range in ranges {
                var at = range.lowerBound
                while at < range.upperBound {
                    let count = Int(min(UInt64(max(1, chunkSize)), range.upperBound - at))
                    let bytes = try file.read(at: at, count: count)
                    if bytes.isEmpty { break } // the file shrank under us
                    try body(Chunk(segment: segment, offset: at, bytes: bytes, startsRange: at == range.lowerBound))
                    at += UInt64(bytes.count)
                }
            }
        }
        return segments
    }

    /// The live file: all of it, or its last `bytes` bytes; nil when the console has no live file.
    public func tail(_ key: ConsoleKey, bytes: Int?) throws -> [UInt8]? {
        let path = directory + "/" + ConsoleLogFiles.live(key)
        let file: LogFile
        do {
            file = try LogFile(path: path)
        } catch let error as LogFileError where error.code == ENOENT {
            return nil
        }
        let size = try file.size()
        let count = bytes.map { UInt64(max(0, $0)) }.map { min($0, size) } ?? size
        return try file.read(at: size - count, count: Int(count))
    }

    static func regularFileSize(_ path: String) -> UInt64? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return UInt64(st.st_size)
    }
}

/// A failed read of a log file; its description names the file and the reason.
public struct LogFileError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var code: Int32
    public var description: String { "\(path): \(String(cString: strerror(code)))" }
}

/// A log file opened read-only, read with `pread`.
public final class LogFile {
    public let path: String
    private let fd: Int32

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LogFileError(path: path, code: errno) }
        self.fd = fd
    }

    deinit { close(fd) }

    public func size() throws -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw LogFileError(path: path, code: errno) }
        return UInt64(st.st_size)
    }

    /// The device and inode, to notice a file replaced under the same name.
    public func identity() throws -> (device: UInt64, inode: UInt64) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw LogFileError(path: path, code: errno) }
        return (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// Up to `count` bytes from `offset` (fewer at the end of the file).
    public func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        guard count > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: count)
        let got = try out.withUnsafeMutableBytes { try read(at: offset, into: $0) }
        if got < count { out.removeLast(count - got) }
        return out
    }

    /// Fills `buffer` from `offset` as far as the file goes; returns the bytes read.
    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw LogFileError(path: path, code: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// `offset` when a line starts there (the file's start, or after a `\n`), else the offset after the next
    /// `\n` (`size` when there is none).
    func lineStart(atOrAfter offset: UInt64, size: UInt64) throws -> UInt64 {
        if offset == 0 { return 0 }
        if offset >= size { return size }
        var at = offset - 1
        let step = 64 * 1024
        while at < size {
            let bytes = try read(at: at, count: Int(min(UInt64(step), size - at)))
            if bytes.isEmpty { return size }
            if let nl = bytes.firstIndex(of: 0x0A) { return at + UInt64(nl) + 1 }
            at += UInt64(bytes.count)
        }
        return size
    }
}
