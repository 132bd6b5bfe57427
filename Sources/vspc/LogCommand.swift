import ArgumentParser
import Foundation
import VSPCCore
import VSPCStore

#if canImport(Glibc)
import Glibc
#endif

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Print what a VM's console printed, from the console log files (works with the daemon stopped).",
        discussion: """
        Reads the files vspcd keeps in --console-log-dir, the rotated ones and the live one, oldest first, and \
        prints the bytes exactly as the VM printed them. The VM is found in the database (--db, read offline) by \
        name, name#label, uuid in any spelling or a unique prefix; a VM the database does not know is found by its \
        uuid (or a unique prefix of it) among the files.

        --since and --until take what `vspc history --since` takes. A line is in the window when the time its \
        first byte arrived is at or after --since and before --until; times are known to the second. A file \
        without its time index is left out of a window (and printed when there is none).

        --timestamps prefixes each line with the local time its first byte arrived, like moreutils' ts \
        ("Dec 02 14:03:07 "; "--- -- --:--:-- " when unknown).
        """)

    @Argument(help: "VM name, name#label, uuid in any spelling, or a unique prefix of either.")
    var vm: String
    @Option(help: "Serial-port label, for a VM's second serial port.") var label: String?
    @Option(help: "Only lines since: 2h, 3d, 2026-11-25, '2026-11-25 14:00', or ISO 8601.") var since: String?
    @Option(help: "Only lines before this time (same forms as --since).") var until: String?
    @Flag(help: "Prefix each line with the local time it arrived.") var timestamps = false
    @Flag(help: "Strip terminal control sequences.") var safe = false
    @Flag(name: .shortAndLong, help: "Then follow the live file (every 200 ms, across rotations) until interrupted.")
    var follow = false
    @OptionGroup var files: ConsoleLogOptions

    func validate() throws {
        if follow && until != nil { throw ValidationError("choose one of -f and --until") }
    }

    func run() throws {
        let sinceDate = try parseWindowTime(since, option: "--since", code: 1)
        let untilDate = try parseWindowTime(until, option: "--until", code: 1)
        let reader = ConsoleLogReader(directory: files.directory)
        let key = try resolve(reader)
        let printer = LogPrinter(safe: safe, timestamps: timestamps)
        let segments: [ConsoleLogReader.Segment]
        do {
            segments = try reader.read(key, since: sinceDate, until: untilDate) { chunk in
                printer.write(chunk.bytes, segment: chunk.segment, offset: chunk.offset, startsRange: chunk.startsRange)
            }
        } catch {
            printer.flush()
            throw fail(show("\(error)"))
        }
        printer.flush()
        guard follow else { return }
        let live = segments.last { $0.rotation == nil }
        LogFollower(reader: reader, key: key, printer: printer).run(from: live?.size ?? 0)
    }

    private func resolve(_ reader: ConsoleLogReader) throws -> ConsoleKey {
        let (vmPart, labelPart) = splitLabel(vm, label: label)
        let known: [ConsoleKey]
        do {
            known = try reader.consoles()
        } catch {
            throw fail("cannot read the console log folder \(quoted(files.directory)): \(show(error.localizedDescription))")
        }
        let records = files.openRecords()
        var uuid = try resolveLogVM(vm, store: records.store, files: known, code: 1)
        var consoleLabel = label ?? ""
        if uuid == nil, labelPart != nil {
            uuid = try resolveLogVM(vmPart, store: records.store, files: known, code: 1)
            consoleLabel = labelPart ?? ""
        }
        guard let uuid else {
            let problem = records.problem.map { " (\($0))" } ?? ""
            throw fail("no VM matches \(quoted(vm)) in \(show(files.dbPath)) or the files of \(show(files.directory))\(problem)")
        }
        let key = ConsoleKey(uuid: uuid, label: consoleLabel)
        guard known.contains(key) else {
            let labels = known.filter { $0.uuid == uuid }.map { $0.label.isEmpty ? "(none)" : quoted($0.label) }
            let hint = labels.isEmpty ? "" : "; its logged labels: " + labels.joined(separator: ", ")
            throw fail("no console log for \(quoted(vm))\(consoleLabel.isEmpty ? "" : " label \(quoted(consoleLabel))") in \(show(files.directory))\(hint)")
        }
        return key
    }
}

/// Writes a console's bytes: raw, sanitized (--safe), or with a time before each line (--timestamps).
final class LogPrinter {
    private var sanitizer: TerminalSanitizer?
    private let times: LocalTimes?
    private var atLineStart = true
    let out = OutputBuffer()

    init(safe: Bool, timestamps: Bool) {
        sanitizer = safe ? TerminalSanitizer() : nil
        times = timestamps ? LocalTimes(format: "MMM dd HH:mm:ss") : nil
    }

    func write(_ bytes: [UInt8], segment: ConsoleLogReader.Segment, offset: UInt64, startsRange: Bool) {
        guard let times else {
            emit(bytes[...])
            return
        }
        // Each range read starts a line; one that does not follow a line end gets one.
        if startsRange && !atLineStart {
            out.append([0x0A])
            atLineStart = true
        }
        var from = 0
        while from < bytes.count {
            if atLineStart {
                let time = segment.time(of: offset + UInt64(from))
                out.append(time.map { times.text($0) + " " } ?? "--- -- --:--:-- ")
                atLineStart = false
            }
            let end = bytes[from...].firstIndex(of: 0x0A).map { $0 + 1 } ?? bytes.count
            emit(bytes[from..<end])
            if bytes[end - 1] == 0x0A { atLineStart = true }
            from = end
        }
    }

    private func emit(_ bytes: ArraySlice<UInt8>) {
        if sanitizer != nil {
            out.append(sanitizer!.filter(bytes))
        } else {
            out.append(bytes)
        }
    }

    func flush() { out.flush() }
}

/// `vspc log -f`: polls the live file every 200 ms and prints what it gained. A file replaced under its name
/// (rotated) is read to its end and then the new one from its start; a file that shrank is read from its start.
struct LogFollower {
    let reader: ConsoleLogReader
    let key: ConsoleKey
    let printer: LogPrinter

    func run(from start: UInt64) -> Never {
        let path = reader.directory + "/" + ConsoleLogFiles.live(key)
        var file = try? LogFile(path: path)
        var position = start
        if let size = try? file?.size(), size < position { position = 0 }
        while true {
            if let current = file {
                position = drain(current, from: position)
                if let named = try? LogFile(path: path), let a = try? named.identity(), let b = try? current.identity(),
                   a != b {
                    // Rotated: what the old file gained since is read to its end; then the new one from its start.
                    _ = drain(current, from: position)
                    file = named
                    position = 0
                    continue
                }
            } else if let named = try? LogFile(path: path) {
                file = named
                position = 0
                continue
            }
            printer.flush()
            usleep(200_000)
        }
    }

    /// Prints the file from `position` to its end; returns the new position (0 after the file shrank).
    private func drain(_ file: LogFile, from position: UInt64) -> UInt64 {
        guard let size = try? file.size() else { return position }
        var at = size < position ? 0 : position
        guard at < size else { return at }
        let segment = reader.liveSegment(key)
        while at < size {
            guard let bytes = try? file.read(at: at, count: Int(min(size - at, 1 << 20))), !bytes.isEmpty else { break }
            let time = segment ?? ConsoleLogReader.Segment(key: key, path: file.path, rotation: nil, size: size, entries: [])
            printer.write(bytes, segment: time, offset: at, startsRange: false)
            at += UInt64(bytes.count)
        }
        return at
    }
}
