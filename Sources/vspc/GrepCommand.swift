import ArgumentParser
import Foundation
import VSPCCore
import VSPCStore

struct Grep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grep",
        abstract: "Search the console logs of every VM, or of the named ones (works with the daemon stopped).",
        discussion: """
        PATTERN is a POSIX extended regular expression (as grep -E reads it), or with -F a plain string; it is \
        matched against each line of the logs, rotated files included, bytes as they are (-i folds ASCII letters \
        only). Each matching line is printed as

          NAME  TIME  LINE

        NAME is the VM's name from the database (--db, read offline), NAME#LABEL for another serial port, or the \
        uuid when the database does not know it; TIME is the local time the line's first byte arrived \
        (YYYY-MM-DD HH:MM:SS, "????-??-?? ??:??:??" when unknown); LINE has its terminal controls visibly escaped \
        (\\x1b, \\u{9b}, \\xff for a byte that is not UTF-8) and a CR at its end removed. With -C N, N lines of \
        context are printed before and after each match; a ':' after TIME marks a match line and a '-' a context \
        line, and '--' separates groups that are not adjacent.

        --json prints one JSON object per matching line:
          {"vm":NAME or null,"uuid":"32 hex","label":"","time":"2026-12-02T14:03:07Z" or null,"line":TEXT}
        with -C N also "before" and "after": arrays of {"time":...,"line":...}, the context lines printed before \
        and after this match (a line that matches is an object of its own, never context). LINE is the line \
        decoded as UTF-8 (a byte that is not UTF-8 becomes U+FFFD), its CR at the end removed.

        --since and --until select lines as `vspc log` does. Exit status: 0 when a line matched, 1 when none \
        did, 2 on an error (a bad pattern, an unknown VM, an unreadable file); 64 for a usage error.
        """)

    @Argument(help: "The pattern: an extended regular expression, or with -F a string.")
    var pattern: String
    @Argument(help: "VM names, name#label, uuids in any spelling, or unique prefixes (default: every console).")
    var vms: [String] = []
    @Option(help: "Only lines since: 2h, 3d, 2026-11-25, '2026-11-25 14:00', or ISO 8601.") var since: String?
    @Option(help: "Only lines before this time (same forms as --since).") var until: String?
    @Flag(name: .customShort("i"), help: "Ignore the case of ASCII letters.") var ignoreCase = false
    @Flag(name: .customShort("F"), help: "PATTERN is a plain string.") var fixed = false
    @Option(name: .customShort("C"), help: ArgumentHelp("Print N lines of context around each match.", valueName: "N"))
    var context: Int = 0
    @Flag(help: "JSON, one object per matching line.") var json = false
    @OptionGroup var files: ConsoleLogOptions

    func run() throws {
        guard context >= 0 else { throw fail("-C must not be negative", code: 2) }
        let sinceDate = try parseWindowTime(since, option: "--since", code: 2)
        let untilDate = try parseWindowTime(until, option: "--until", code: 2)
        let matcher: LineMatcher
        do {
            matcher = try LineMatcher(pattern: pattern, ignoreCase: ignoreCase, fixed: fixed)
        } catch {
            throw fail(show("\(error)"), code: 2)
        }
        let reader = ConsoleLogReader(directory: files.directory)
        let listing: ConsoleLogReader.Listing
        do {
            listing = try reader.listing()
        } catch {
            throw fail("cannot read the console log folder \(quoted(files.directory)): \(show(error.localizedDescription))", code: 2)
        }
        let records = files.openRecords()
        let names = ConsoleNames(records.store)
        let targets = try consoles(listing.consoles, store: records.store)
            .sorted { (names.display($0), $0.uuid, $0.label) < (names.display($1), $1.uuid, $1.label) }

        let printer = GrepPrinter(names: names, json: json, context: context)
        let scanner = GrepScanner(matcher: matcher, context: context) { printer.print($0) }
        var failed = false
        for key in targets {
            for segment in reader.segments(key, in: listing) {
                do {
                    let ranges = try reader.ranges(of: segment, since: sinceDate, until: untilDate)
                    guard !ranges.isEmpty else { continue }
                    let file = try LogFile(path: segment.path)
                    for range in ranges { try scanner.scan(key, segment, file, range) }
                } catch {
                    printer.flush()
                    _ = fail(show("\(error)"), code: 2)
                    failed = true
                }
                printer.finishGroup()
            }
        }
        printer.flush()
        if failed { throw ExitCode(2) }
        if scanner.matches == 0 { throw ExitCode(1) }
    }

    /// The consoles to search: all, or every console (every label) of the named VMs.
    private func consoles(_ known: [ConsoleKey], store: (any RecordReader)?) throws -> [ConsoleKey] {
        guard !vms.isEmpty else { return known }
        var out: [ConsoleKey] = []
        for reference in vms {
            if let uuid = try resolveLogVM(reference, store: store, files: known, code: 2) {
                out += known.filter { $0.uuid == uuid }
                continue
            }
            let (vm, label) = splitLabel(reference, label: nil)
            if let label, let uuid = try resolveLogVM(vm, store: store, files: known, code: 2) {
                out += known.filter { $0.uuid == uuid && $0.label == label }
                continue
            }
            throw fail("no VM matches \(quoted(reference)) in \(show(files.dbPath)) or the files of \(show(files.directory))", code: 2)
        }
        var seen = Set<ConsoleKey>()
        return out.filter { seen.insert($0).inserted }
    }
}

/// Formats what `GrepScanner` finds.
final class GrepPrinter {
    let names: ConsoleNames
    let json: Bool
    let context: Int
    let out = OutputBuffer()
    private let times = LocalTimes(format: "yyyy-MM-dd HH:mm:ss")
    /// JSON: the match whose "after" lines may still come, and the "before" lines of the next one.
    private var pending: (head: String, after: [String])?
    private var before: [String] = []

    init(names: ConsoleNames, json: Bool, context: Int) {
        self.names = names
        self.json = json
        self.context = context
    }

    func print(_ line: GrepLine) {
        var bytes = line.bytes[...]
        if bytes.last == 0x0D { bytes = bytes.dropLast() }
        let time = line.segment.time(of: line.offset)
        if json {
            let text = JSONText.quoted(String(decoding: bytes, as: UTF8.self))
            let stamp = time.map { JSONText.quoted(AdminProtocol.timestamp($0)) } ?? "null"
            if line.isMatch {
                flushPending()
                let name = names.name(line.key).map(JSONText.quoted) ?? "null"
                let head = "{\"vm\":\(name),\"uuid\":\(JSONText.quoted(line.key.uuid)),\"label\":\(JSONText.quoted(line.key.label)),"
                    + "\"time\":\(stamp),\"line\":\(text)"
                pending = (head + (context > 0 ? ",\"before\":[" + before.joined(separator: ",") + "]" : ""), [])
                before = []
            } else if line.startsGroup {
                flushPending()
                before.append("{\"time\":\(stamp),\"line\":\(text)}")
            } else if pending != nil {
                pending?.after.append("{\"time\":\(stamp),\"line\":\(text)}")
            } else {
                before.append("{\"time\":\(stamp),\"line\":\(text)}")
            }
            return
        }
        if context > 0 && line.startsGroup { out.append("--\n") }
        let mark = context > 0 ? (line.isMatch ? ":" : "-") : " "
        let stamp = time.map { times.text($0) } ?? "????-??-?? ??:??:??"
        out.append("\(names.display(line.key))  \(stamp)\(mark) \(DisplayText.escape(utf8: bytes))\n")
    }

    /// JSON: a new group starts (another file): the pending match is complete.
    func finishGroup() {
        guard json else { return }
        flushPending()
        before = []
    }

    private func flushPending() {
        guard let pending else { return }
        out.append(pending.head + (context > 0 ? ",\"after\":[" + pending.after.joined(separator: ",") + "]" : "") + "}\n")
        self.pending = nil
    }

    func flush() {
        flushPending()
        out.flush()
    }
}
