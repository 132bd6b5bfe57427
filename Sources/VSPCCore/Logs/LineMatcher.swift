#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds a pattern in console output, line by line, without splitting the output into lines first: `vspc grep`
/// runs `firstMatch` over whole chunks of a log, the watch patterns over what a console printed.
///
/// A regex is a POSIX extended regular expression (ERE, as `grep -E` reads it) compiled by the C library's
/// `regcomp` with `REG_EXTENDED | REG_NEWLINE` (and `REG_ICASE` with `ignoreCase`): `.` and `[^...]` never match
/// a newline, `^` and `$` match at the start and end of every line. It is matched with `REG_STARTEND`, so the
/// bytes are read in place and NUL bytes are ordinary bytes. Bytes are bytes (the process keeps the C locale):
/// 0xFF and invalid UTF-8 are fine, and `ignoreCase` folds ASCII letters only. As in POSIX, `.` matches neither
/// a newline nor a NUL byte (`[^a]` does match NUL). With `fixed`, the pattern is a
/// plain string, found with `memmem` (`ignoreCase` folds ASCII letters while scanning).
///
/// A match never spans a `\n`; the start and end of the buffer count as the start and end of a line. A pattern
/// holding a newline is refused (`grep` would read it as several patterns).
///
/// Threads: glibc's `regexec` takes a lock kept in the compiled pattern, so calls on one matcher from several
/// threads are safe but run one at a time. A matcher is meant to be used by one thread at a time; give each
/// thread its own (they are cheap to compile) to match in parallel.
public struct LineMatcher: Sendable {
    /// Why a pattern was refused; its description is the message to show.
    public struct PatternError: Error, CustomStringConvertible, Equatable, Sendable {
        public var description: String
    }

    public let pattern: String
    public let ignoreCase: Bool
    public let fixed: Bool
    private let engine: Engine

    private enum Engine: Sendable {
        case regex(CompiledRegex)
        case literal([UInt8])
        /// The pattern with its ASCII letters lower-cased.
        case foldedLiteral([UInt8])
    }

    public init(pattern: String, ignoreCase: Bool = false, fixed: Bool = false) throws {
        guard !pattern.utf8.contains(0x0A) else {
            throw PatternError(description: "a pattern cannot contain a newline")
        }
        self.pattern = pattern
        self.ignoreCase = ignoreCase
        self.fixed = fixed
        if fixed {
            let bytes = Array(pattern.utf8)
            engine = ignoreCase ? .foldedLiteral(bytes.map(Self.lower)) : .literal(bytes)
        } else {
            guard !pattern.utf8.contains(0) else {
                throw PatternError(description: "a regular expression cannot contain a NUL byte")
            }
            engine = .regex(try CompiledRegex(pattern, ignoreCase: ignoreCase))
        }
    }

    /// Whether one line (without its `\n`) holds a match.
    public func matches(_ line: [UInt8]) -> Bool {
        line.withUnsafeBytes { firstMatch(in: $0) != nil }
    }

    /// The leftmost match in `buffer` (byte offsets), or nil. The buffer may hold any bytes and many lines.
    public func firstMatch(in buffer: UnsafeRawBufferPointer) -> Range<Int>? {
        guard let base = buffer.baseAddress else {
            // An empty buffer is one empty line.
            return withUnsafeBytes(of: UInt8(0)) { match($0.baseAddress!, count: 0) }
        }
        return match(base, count: buffer.count)
    }

    private func match(_ base: UnsafeRawPointer, count: Int) -> Range<Int>? {
        switch engine {
        case .literal(let needle):
            return Self.find(needle, in: base, count: count)
        case .foldedLiteral(let needle):
            return Self.findFolded(needle, in: base, count: count)
        case .regex(let regex):
            return regex.firstMatch(base, count: count)
        }
    }

    static func lower(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }

    private static func find(_ needle: [UInt8], in base: UnsafeRawPointer, count: Int) -> Range<Int>? {
        if needle.isEmpty { return 0..<0 }
        return needle.withUnsafeBytes { n -> Range<Int>? in
            guard let hit = Memmem.find(base, count, n.baseAddress, n.count) else { return nil }
            let start = UnsafeRawPointer(hit) - base
            return start..<(start + n.count)
        }
    }

    /// ASCII case-insensitive search: lower-cases growing windows of the buffer into a scratch buffer and runs
    /// `memmem` there, so the work done is proportional to the distance to the first hit.
    private static func findFolded(_ needle: [UInt8], in base: UnsafeRawPointer, count: Int) -> Range<Int>? {
        if needle.isEmpty { return 0..<0 }
        guard count >= needle.count else { return nil }
        let maxWindow = 64 * 1024
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: maxWindow + needle.count, alignment: 16)
        defer { scratch.deallocate() }
        let source = base.assumingMemoryBound(to: UInt8.self)
        let folded = scratch.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var start = 0
        var window = 256
        while start + needle.count <= count {
            // The window overlaps the next one by needle.count - 1 bytes, so that no hit is cut.
            let end = min(count, start + window + needle.count - 1)
            for i in start..<end { folded[i - start] = lower(source[i]) }
            let found = needle.withUnsafeBytes { n in Memmem.find(folded, end - start, n.baseAddress, n.count) }
            if let found {
                let at = start + (UnsafeRawPointer(found) - UnsafeRawPointer(folded))
                return at..<(at + needle.count)
            }
            start += window
            window = min(window * 2, maxWindow)
        }
        return nil
    }
}

/// The C library's `memmem` (a GNU extension that the C module does not export), looked up once; a plain
/// `memchr` + `memcmp` search where it is missing.
private enum Memmem {
    typealias Function = @convention(c) (UnsafeRawPointer?, Int, UnsafeRawPointer?, Int) -> UnsafeMutableRawPointer?

    static let function: Function? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "memmem")
        .map { unsafeBitCast($0, to: Function.self) }

    static func find(_ haystack: UnsafeRawPointer, _ count: Int, _ needle: UnsafeRawPointer?,
                     _ needleCount: Int) -> UnsafeMutableRawPointer? {
        guard let needle, needleCount > 0 else { return UnsafeMutableRawPointer(mutating: haystack) }
        if let function { return function(haystack, count, needle, needleCount) }
        let first = Int32(needle.load(as: UInt8.self))
        var at = haystack
        let end = haystack + count
        while end - at >= needleCount, let hit = memchr(at, first, end - at) {
            let candidate = UnsafeRawPointer(hit)
            if end - candidate < needleCount { return nil }
            if memcmp(candidate, needle, needleCount) == 0 { return hit }
            at = candidate + 1
        }
        return nil
    }
}

/// A compiled `regex_t`, which may be neither copied nor moved: it lives in memory of its own, freed in deinit.
/// `@unchecked Sendable`: it is never changed after `regcomp`, and glibc's `regexec` locks it (see `LineMatcher`).
private final class CompiledRegex: @unchecked Sendable {
    private let regex: UnsafeMutablePointer<regex_t>
    /// `regoff_t` is 32 bits: longer buffers are searched in parts that end at a line end.
    private static let maxSpan = Int(Int32.max)

    init(_ pattern: String, ignoreCase: Bool) throws {
        // Compiled before `regex` is set: a throwing init that set every property would run deinit.
        let compiled = UnsafeMutablePointer<regex_t>.allocate(capacity: 1)
        let flags = REG_EXTENDED | REG_NEWLINE | (ignoreCase ? REG_ICASE : 0)
        let status = regcomp(compiled, pattern, flags)
        guard status == 0 else {
            var message = [CChar](repeating: 0, count: 256)
            regerror(status, compiled, &message, message.count)
            compiled.deallocate()
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw LineMatcher.PatternError(description: "bad regular expression: \(text)")
        }
        regex = compiled
    }

    deinit {
        regfree(regex)
        regex.deallocate()
    }

    func firstMatch(_ base: UnsafeRawPointer, count: Int) -> Range<Int>? {
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        var from = 0
        while from <= count {
            var to = count
            if to - from > Self.maxSpan {
                // Cut at the last line end inside the span (or at the span if the line is longer).
                to = from + Self.maxSpan
                if let nl = lastNewline(bytes, from, to) { to = nl }
            }
            if let hit = search(bytes, from, to) {
                // REG_NEWLINE keeps `.` and `[^...]` within a line, but a bracket such as [[:space:]] may match a
                // newline: search the line where the match starts again on its own.
                guard memchr(bytes + hit.lowerBound, 0x0A, hit.count) != nil else { return hit }
                let lineEnd = memchr(bytes + hit.lowerBound, 0x0A, count - hit.lowerBound)
                    .map { UnsafeRawPointer($0) - base } ?? count
                let lineStart = lastNewline(bytes, from, hit.lowerBound).map { $0 + 1 } ?? from
                if let inLine = search(bytes, lineStart, lineEnd, startingAt: hit.lowerBound) { return inLine }
                from = lineEnd + 1
            } else {
                if to == count { return nil }
                from = to
            }
        }
        return nil
    }

    /// `regexec` over bytes[lower..<upper] with the bytes from `lower` on as context (`^` matches at `lower`
    /// only at the start of a line), looking for matches from `startingAt`.
    private func search(_ bytes: UnsafePointer<UInt8>, _ lower: Int, _ upper: Int, startingAt: Int? = nil) -> Range<Int>? {
        let start = startingAt ?? lower
        var match = regmatch_t(rm_so: regoff_t(start - lower), rm_eo: regoff_t(upper - lower))
        let notBOL = lower > 0 && bytes[lower - 1] != 0x0A ? REG_NOTBOL : 0
        let string = UnsafeRawPointer(bytes + lower).assumingMemoryBound(to: CChar.self)
        let status = regexec(regex, string, 1, &match, REG_STARTEND | notBOL)
        guard status == 0, match.rm_so >= 0, match.rm_eo >= match.rm_so else { return nil }
        return (lower + Int(match.rm_so))..<(lower + Int(match.rm_eo))
    }

    private func lastNewline(_ bytes: UnsafePointer<UInt8>, _ lower: Int, _ upper: Int) -> Int? {
        var i = upper
        while i > lower {
            i -= 1
            if bytes[i] == 0x0A { return i }
        }
        return nil
    }
}
