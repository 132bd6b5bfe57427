import ArgumentParser
import Foundation
import VSPCCore
import VSPCStore

#if canImport(Glibc)
import Glibc
#endif

/// Where `vspc log` and `vspc grep` find the console logs and the VM names: both read files only, so they work
/// with the daemon stopped.
struct ConsoleLogOptions: ParsableArguments {
    @Option(help: "The daemon's database, read offline for VM names. (default: vspcd.db)", completion: .file())
    var db: String?
    @Option(name: .customLong("console-log-dir"), help: "The console log folder. (default: consoles/ beside the database)",
            completion: .directory)
    var consoleLogDir: String?

    var dbPath: String { db ?? "vspcd.db" }

    var directory: String {
        if let consoleLogDir { return consoleLogDir }
        let folder = (dbPath as NSString).deletingLastPathComponent
        return folder.isEmpty ? "consoles" : folder + "/consoles"
    }

    /// The database when it can be read; nil (and the reason) when not: the files are read without names then.
    func openRecords() -> (store: (any RecordReader)?, problem: String?) {
        do {
            return (try RecordBackends.openForReading(dbPath), nil)
        } catch {
            return (nil, show("\(error)"))
        }
    }
}

/// A `--since`/`--until` value read as `vspc history --since` reads it; nil stays nil.
func parseWindowTime(_ text: String?, option: String, code: Int32) throws -> Date? {
    guard let text else { return nil }
    guard let date = parseSince(text) else {
        throw fail("\(option): cannot read \(quoted(text)); use 2h, 3d, 2026-11-25, '2026-11-25 14:00' or ISO 8601", code: code)
    }
    return date
}

/// `VM`, `VM#label` (the label after the last `#`, as for `ssh VM#label@host`) or `VM` with `--label`.
func splitLabel(_ reference: String, label: String?) -> (vm: String, label: String?) {
    if label == nil, let hash = reference.lastIndex(of: "#"), hash != reference.startIndex {
        let after = reference[reference.index(after: hash)...]
        if !after.isEmpty { return (String(reference[..<hash]), String(after)) }
    }
    return (reference, label)
}

/// The uuid a reference names: in the database (`VMLookup.choose`, as `vspc history --db`), else among the
/// uuids of the log files (a uuid in any spelling or a unique prefix of one). nil when nothing matches.
func resolveLogVM(_ vm: String, store: (any RecordReader)?, files: [ConsoleKey], code: Int32) throws -> String? {
    if let store, let found = try chooseOffline(vm, in: store, scope: .vm, code: code) {
        return found.uuid
    }
    let candidates = Set(files.map(\.uuid)).map { VMLookup.Candidate(uuid: $0, name: "") }
    switch VMLookup.resolve(vm, among: candidates) {
    case .found(let uuid): return uuid
    case .notFound: return nil
    case .ambiguous(let uuids):
        throw fail("\(quoted(vm)) is ambiguous; it names several consoles: " + uuids.map(UUIDSpelling.classic).joined(separator: ", "),
                   code: code)
    }
}

/// The consoles' names for display, from the database's assignments and events: per uuid and label the name
/// of an assignment, else the most recently seen one; a label the database does not know takes the VM's name.
struct ConsoleNames {
    private var byConsole: [ConsoleKey: ConsoleCandidate] = [:]
    private var byUUID: [String: ConsoleCandidate] = [:]

    init(_ store: (any RecordReader)?) {
        for candidate in (try? store?.knownConsoles()) ?? [] where !candidate.name.isEmpty {
            let key = ConsoleKey(uuid: candidate.uuid, label: candidate.label)
            if Self.better(candidate, than: byConsole[key]) { byConsole[key] = candidate }
            if Self.better(candidate, than: byUUID[candidate.uuid]) || (candidate.label.isEmpty && byUUID[candidate.uuid]?.label != "") {
                byUUID[candidate.uuid] = candidate
            }
        }
    }

    private static func better(_ candidate: ConsoleCandidate, than current: ConsoleCandidate?) -> Bool {
        guard let current else { return true }
        if (candidate.port != nil) != (current.port != nil) { return candidate.port != nil }
        return (candidate.lastSeen ?? .distantPast) > (current.lastSeen ?? .distantPast)
    }

    /// The VM's name, nil when the database does not know it.
    func name(_ key: ConsoleKey) -> String? {
        (byConsole[key] ?? byUUID[key.uuid])?.name
    }

    /// `name`, `name#label`, or the uuid (32 hex digits) in place of an unknown name; escaped for display.
    func display(_ key: ConsoleKey) -> String {
        let vm = name(key) ?? key.uuid
        return show(key.label.isEmpty ? vm : "\(vm)#\(key.label)")
    }
}

/// Local times for output, formatted once per second.
final class LocalTimes {
    private let formatter = DateFormatter()
    private var lastSecond: Int64 = .min
    private var lastText = ""

    /// `format` is a `DateFormatter` format, in the machine's time zone.
    init(format: String) {
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = .current
        formatter.dateFormat = format
    }

    func text(_ date: Date) -> String {
        let second = Int64(date.timeIntervalSince1970.rounded(.down))
        if second != lastSecond {
            lastSecond = second
            lastText = formatter.string(from: Date(timeIntervalSince1970: Double(second)))
        }
        return lastText
    }
}

/// Standard output, buffered; written with write(2) so that bytes pass exactly.
final class OutputBuffer {
    private var buffer: [UInt8] = []
    private let limit = 256 * 1024

    init() { buffer.reserveCapacity(limit + 4096) }

    func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        buffer.append(contentsOf: bytes)
        if buffer.count >= limit { flush() }
    }

    func append(_ text: String) { append(text.utf8) }

    func append(_ pointer: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: pointer)
        if buffer.count >= limit { flush() }
    }

    func flush() {
        var at = 0
        buffer.withUnsafeBytes { bytes in
            while at < bytes.count {
                let n = write(1, bytes.baseAddress! + at, bytes.count - at)
                if n < 0 {
                    if errno == EINTR { continue }
                    return // a closed pipe: nothing more can be written
                }
                at += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
