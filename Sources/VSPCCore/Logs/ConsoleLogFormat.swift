import Foundation

/// The on-disk layout of console logs (`--console-log-dir`), shared by the daemon that writes them and by
/// `vspc log`/`vspc grep`, which read them with the daemon stopped.
///
/// A console's live file is `DIR/<base>`, where `<base>` is its vc-uuid as 32 lower-case hex digits (the name
/// OpenStack Nova reads) and, for a second serial port, `.` and its label encoded by `encodeLabel`. Its time index
/// is `DIR/<base>.idx`. Rotated files are `DIR/<base>.<n>` and `DIR/<base>.<n>.idx`, `1` being the newest.
/// The data files hold the console's bytes exactly as the VM printed them after telnet decoding.
public enum ConsoleLogFiles {
    /// The file name of a console's live log.
    public static func base(_ key: ConsoleKey) -> String {
        key.label.isEmpty ? key.uuid : "\(key.uuid).\(encodeLabel(key.label))"
    }

    public static func live(_ key: ConsoleKey) -> String { base(key) }
    public static func index(_ key: ConsoleKey) -> String { base(key) + ".idx" }
    /// The `n`th rotated file (1 is the newest).
    public static func rotated(_ key: ConsoleKey, _ n: Int) -> String { "\(base(key)).\(n)" }
    public static func rotatedIndex(_ key: ConsoleKey, _ n: Int) -> String { "\(base(key)).\(n).idx" }

    /// A label as a file-name part: letters, digits, `-` and `_` stay; every other byte is `%XX`. A label that
    /// would read as a rotation number or as `idx` has its first character encoded too, so that a name parses back
    /// to one console and one file. No encoded label contains `.` or `/`.
    public static func encodeLabel(_ label: String) -> String {
        var out = ""
        for byte in label.utf8 {
            if isPlain(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += percent(byte)
            }
        }
        if out.allSatisfy(\.isASCIIDigitCharacter) || out == "idx", let first = out.utf8.first {
            out = percent(first) + out.dropFirst()
        }
        return out
    }

    /// The label an encoded part stands for, or nil if it is not one `encodeLabel` writes.
    public static func decodeLabel(_ part: Substring) -> String? {
        guard !part.isEmpty, !part.allSatisfy(\.isASCIIDigitCharacter), part != "idx" else { return nil }
        var bytes: [UInt8] = []
        var utf8 = part.utf8.makeIterator()
        while let byte = utf8.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = utf8.next().flatMap(hexValue), let low = utf8.next().flatMap(hexValue) else { return nil }
                bytes.append(high << 4 | low)
            } else if isPlain(byte) {
                bytes.append(byte)
            } else {
                return nil
            }
        }
        guard let label = String(bytes: bytes, encoding: .utf8), SerialPortLabel.isValid(label) else { return nil }
        return label
    }

    /// What a file in the directory is.
    public struct Parsed: Equatable, Sendable {
        public var key: ConsoleKey
        /// nil for the live file, else its rotation number.
        public var rotation: Int?
        public var isIndex: Bool
    }

    /// Reads a file name back (nil for a file that is not a console log's).
    public static func parse(_ name: String) -> Parsed? {
        var parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard let first = parts.first, first.utf8.count == 32,
            first.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
        else { return nil }
        parts.removeFirst()
        var isIndex = false
        if parts.last == "idx" {
            isIndex = true
            parts.removeLast()
        }
        var rotation: Int?
        if let last = parts.last, !last.isEmpty, last.allSatisfy(\.isASCIIDigitCharacter) {
            guard last.count <= 6, let n = Int(last), n > 0 else { return nil }
            rotation = n
            parts.removeLast()
        }
        var label = ""
        if let part = parts.first {
            guard parts.count == 1, let decoded = decodeLabel(part) else { return nil }
            label = decoded
        }
        return Parsed(key: ConsoleKey(uuid: String(first), label: label), rotation: rotation, isIndex: isIndex)
    }

    private static func isPlain(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }

    private static func percent(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return "%" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 15)])
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: return byte - 0x30
        case 0x41...0x46: return byte - 0x41 + 10
        case 0x61...0x66: return byte - 0x61 + 10
        default: return nil
        }
    }
}

/// A console log's time index: which byte offsets of its data file arrived when, so that the data file stays
/// byte-exact. The file starts with the 8-byte magic `vspcidx1` and 8 reserved zero bytes; then 16-byte entries,
/// little-endian: the offset in the data file (UInt64), then the time in milliseconds since 1970 (Int64). Offsets
/// rise. An entry says the bytes from its offset up to the next entry's arrived from its time on; the writer adds
/// one for the first byte of a file and whenever output arrives a second or more after the last entry's time, so
/// every byte's time is known to the second.
public enum ConsoleLogIndex {
    public static let magic: [UInt8] = Array("vspcidx1".utf8)
    public static let headerSize = 16
    public static let entrySize = 16
    /// The index gains an entry when output arrives this long after the last entry's time.
    public static let resolutionMilliseconds: Int64 = 1000

    public struct Entry: Equatable, Sendable {
        public var offset: UInt64
        public var milliseconds: Int64
        public init(offset: UInt64, milliseconds: Int64) {
            self.offset = offset
            self.milliseconds = milliseconds
        }
        public init(offset: UInt64, date: Date) {
            self.init(offset: offset, milliseconds: Int64((date.timeIntervalSince1970 * 1000).rounded(.down)))
        }
        public var date: Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }
    }

    public static var header: [UInt8] { magic + [UInt8](repeating: 0, count: 8) }

    public static func encode(_ entry: Entry) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(entrySize)
        withUnsafeBytes(of: entry.offset.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: entry.milliseconds.littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    /// The entries of an index file's bytes; nil when it does not start with the header. A torn last entry (a
    /// crash mid-write) and entries whose offsets do not rise are left out.
    public static func decode(_ bytes: [UInt8]) -> [Entry]? {
        guard bytes.count >= headerSize, Array(bytes[0..<magic.count]) == magic else { return nil }
        var entries: [Entry] = []
        entries.reserveCapacity((bytes.count - headerSize) / entrySize)
        var at = headerSize
        while at + entrySize <= bytes.count {
            var offset: UInt64 = 0, milliseconds: Int64 = 0
            for i in 0..<8 { offset |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
            var raw: UInt64 = 0
            for i in 0..<8 { raw |= UInt64(bytes[at + 8 + i]) << (8 * UInt64(i)) }
            milliseconds = Int64(bitPattern: raw)
            if let last = entries.last, offset < last.offset {
                at += entrySize
                continue
            }
            entries.append(Entry(offset: offset, milliseconds: milliseconds))
            at += entrySize
        }
        return entries
    }

    /// Whether output arriving at `milliseconds` needs a new entry after `last`.
    public static func needsEntry(after last: Entry?, at milliseconds: Int64) -> Bool {
        guard let last else { return true }
        return milliseconds - last.milliseconds >= resolutionMilliseconds || milliseconds < last.milliseconds
    }

    /// The time of the byte at `offset`: the last entry at or before it (nil before the first).
    public static func time(of offset: UInt64, in entries: [Entry]) -> Entry? {
        var low = 0, high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].offset <= offset { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? nil : entries[low - 1]
    }

    /// The first offset whose time is at or after `date` (nil when every entry is earlier).
    public static func firstOffset(atOrAfter date: Date, in entries: [Entry]) -> UInt64? {
        let ms = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        return entries.first { $0.milliseconds >= ms }?.offset
    }
}

extension Character {
    fileprivate var isASCIIDigitCharacter: Bool { isASCII && isNumber }
}
