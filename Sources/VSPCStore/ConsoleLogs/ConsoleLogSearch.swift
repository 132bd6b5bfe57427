import Foundation
import VSPCCore

#if canImport(Glibc)
import Glibc
#endif

/// A line `vspc grep` prints: a match or a context line.
public struct GrepLine: Sendable {
    public var key: ConsoleKey
    public var segment: ConsoleLogReader.Segment
    /// Where the line starts in the segment's file.
    public var offset: UInt64
    /// The line without its `\n` (cut at the scanner's `maxLine`).
    public var bytes: [UInt8]
    public var isMatch: Bool
    /// The first line after a gap (or of another file): grep's `--` goes before it.
    public var startsGroup: Bool
}

/// Scans files for `vspc grep` fast: reads a range in big chunks, runs the matcher over all complete lines of a
/// chunk at once, and finds line bounds only around hits. A line cut by a chunk's end is carried into the next
/// chunk; a line longer than `maxLine` is searched in pieces. Context lines (`-C`) are found around hits: the
/// lines before a hit within the chunk (or kept from the previous one), and the lines after it. The lines
/// printed are grep's: every match, and with `context` N the N lines before and after each.
public final class GrepScanner {
    public let chunkSize: Int
    public let maxLine: Int
    public let matcher: LineMatcher
    public let context: Int
    private let emit: (GrepLine) -> Void
    private let buffer: UnsafeMutableRawBufferPointer
    /// Match lines found so far.
    public private(set) var matches = 0

    // Per range.
    private var key = ConsoleKey(uuid: "", label: "")
    private var segment: ConsoleLogReader.Segment?
    /// The offset (in the file) just after the last line printed, to tell adjacent lines from a gap.
    private var printedEnd: UInt64?
    private var afterPending = 0
    /// Up to `context` lines of earlier chunks that were not printed, oldest first.
    private var history: [(offset: UInt64, bytes: [UInt8])] = []
    private var printedAny = false

    /// `chunkSize`: bytes read at a time; `maxLine`: longer lines are searched in pieces.
    public init(matcher: LineMatcher, context: Int, chunkSize: Int = 4 << 20, maxLine: Int = 1 << 20,
                emit: @escaping (GrepLine) -> Void) {
        self.matcher = matcher
        self.context = max(0, context)
        self.chunkSize = max(1, chunkSize)
        self.maxLine = max(1, maxLine)
        self.emit = emit
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: self.chunkSize + self.maxLine, alignment: 64)
    }

    deinit { buffer.deallocate() }

    /// Searches `range` of `segment`'s file (which starts at a line start).
    public func scan(_ key: ConsoleKey, _ segment: ConsoleLogReader.Segment, _ file: LogFile, _ range: Range<UInt64>) throws {
        self.key = key
        self.segment = segment
        printedEnd = nil
        afterPending = 0
        history = []
        let base = buffer.baseAddress!
        var pending = 0 // bytes carried at the buffer's start
        var bufferOffset = range.lowerBound // the file offset of buffer[0]
        var at = range.lowerBound
        while true {
            let want = Int(min(UInt64(chunkSize), range.upperBound - at))
            var got = 0
            if want > 0 {
                got = try file.read(at: at, into: UnsafeMutableRawBufferPointer(rebasing: buffer[pending..<(pending + want)]))
            }
            at += UInt64(got)
            let filled = pending + got
            let atEnd = got < want || at >= range.upperBound
            if filled == 0 { return }
            let bytes = UnsafeRawPointer(base)
            // The lines to search: those complete in the buffer; all at the end of the range. A line that goes on
            // is carried into the next read, unless it is longer than maxLine: it is then searched as it is.
            let consumed: Int
            let nl = atEnd ? nil : Self.lastNewline(bytes, 0, filled)
            if atEnd {
                let last = bytes.load(fromByteOffset: filled - 1, as: UInt8.self)
                region(bytes, last == 0x0A ? filled - 1 : filled, bufferOffset)
                consumed = filled
            } else if let nl, filled - nl - 1 <= maxLine {
                region(bytes, nl, bufferOffset)
                consumed = nl + 1
            } else if let nl {
                region(bytes, nl, bufferOffset)
                region(bytes + nl + 1, filled - nl - 1, bufferOffset + UInt64(nl + 1))
                consumed = filled
            } else if filled <= maxLine {
                consumed = 0
            } else {
                region(bytes, filled, bufferOffset)
                consumed = filled
            }
            if atEnd { return }
            pending = filled - consumed
            if pending > 0 { memmove(base, base + consumed, pending) }
            bufferOffset += UInt64(consumed)
        }
    }

    /// Searches the lines of bytes[0..<end] (separated by `\n`; `end` is the last line's end).
    private func region(_ bytes: UnsafeRawPointer, _ end: Int, _ fileOffset: UInt64) {
        var pos = 0
        pos = after(bytes, pos, end, fileOffset)
        while pos <= end {
            guard let hit = matcher.firstMatch(in: UnsafeRawBufferPointer(start: bytes + pos, count: end - pos)) else { break }
            let hitAt = pos + hit.lowerBound
            let lineStart = Self.lastNewline(bytes, pos, hitAt).map { $0 + 1 } ?? pos
            let lineEnd = memchr(bytes + hitAt, 0x0A, end - hitAt).map { UnsafeRawPointer($0) - bytes } ?? end
            if context > 0 { before(bytes, lineStart, pos, fileOffset) }
            line(bytes, lineStart, lineEnd, fileOffset, isMatch: true)
            pos = after(bytes, lineEnd + 1, end, fileOffset)
        }
        guard context > 0 else { return }
        // Keep the last unprinted lines for a hit early in the next chunk.
        var kept: [(offset: UInt64, bytes: [UInt8])] = []
        var lineEnd = end
        while kept.count < context && lineEnd >= pos {
            let start = lineEnd > pos ? (Self.lastNewline(bytes, pos, lineEnd).map { $0 + 1 } ?? pos) : pos
            kept.insert((fileOffset + UInt64(start), Array(UnsafeRawBufferPointer(start: bytes + start, count: lineEnd - start))), at: 0)
            if start == pos { break }
            lineEnd = start - 1
        }
        if kept.count < context && pos == 0 { kept = history + kept }
        history = Array(kept.suffix(context))
    }

    /// Prints the lines owed after a match, from `pos`, matching ones as matches; returns where it stopped.
    private func after(_ bytes: UnsafeRawPointer, _ start: Int, _ end: Int, _ fileOffset: UInt64) -> Int {
        var pos = start
        while afterPending > 0 && pos <= end {
            let lineEnd = memchr(bytes + pos, 0x0A, end - pos).map { UnsafeRawPointer($0) - bytes } ?? end
            let isMatch = matcher.firstMatch(in: UnsafeRawBufferPointer(start: bytes + pos, count: lineEnd - pos)) != nil
            line(bytes, pos, lineEnd, fileOffset, isMatch: isMatch)
            pos = lineEnd + 1
        }
        return pos
    }

    /// Prints up to `context` unprinted lines before the line at `lineStart` (those from `floor` on, then kept ones).
    private func before(_ bytes: UnsafeRawPointer, _ lineStart: Int, _ floor: Int, _ fileOffset: UInt64) {
        var lines: [(offset: UInt64, bytes: [UInt8])] = []
        var next = lineStart
        while lines.count < context && next > floor {
            let end = next - 1
            let start = Self.lastNewline(bytes, floor, end).map { $0 + 1 } ?? floor
            lines.insert((fileOffset + UInt64(start), Array(UnsafeRawBufferPointer(start: bytes + start, count: end - start))), at: 0)
            next = start
        }
        if lines.count < context && next == 0 && floor == 0 {
            lines = Array(history.suffix(context - lines.count)) + lines
        }
        history = []
        for l in lines {
            emit(make(l.offset, l.bytes, isMatch: false))
        }
    }

    private func line(_ bytes: UnsafeRawPointer, _ start: Int, _ end: Int, _ fileOffset: UInt64, isMatch: Bool) {
        let content = Array(UnsafeRawBufferPointer(start: bytes + start, count: end - start))
        emit(make(fileOffset + UInt64(start), content, isMatch: isMatch))
        if isMatch {
            matches += 1
            afterPending = context
        } else {
            afterPending -= 1
        }
    }

    /// The index of the last `\n` in bytes[from..<to].
    static func lastNewline(_ bytes: UnsafeRawPointer, _ from: Int, _ to: Int) -> Int? {
        let p = bytes.assumingMemoryBound(to: UInt8.self)
        var i = to
        while i > from {
            i -= 1
            if p[i] == 0x0A { return i }
        }
        return nil
    }

    private func make(_ offset: UInt64, _ bytes: [UInt8], isMatch: Bool) -> GrepLine {
        let gap = printedAny && (printedEnd.map { $0 != offset } ?? true)
        printedEnd = offset + UInt64(bytes.count) + 1
        printedAny = true
        // A segment that is listed but unreadable never reaches here; `segment` is set by `scan`.
        let segment = self.segment ?? ConsoleLogReader.Segment(key: key, path: "", rotation: nil, size: 0, entries: [])
        return GrepLine(key: key, segment: segment, offset: offset, bytes: bytes, isMatch: isMatch, startsGroup: gap)
    }
}
