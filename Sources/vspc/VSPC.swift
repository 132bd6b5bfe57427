import ArgumentParser
import Foundation
import VSPCClient
import VSPCCore
import VSPCStore

@main
struct VSPC: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vspc",
        abstract: "Query a running vspcd: list VM serial ports, show their history, tail their consoles.",
        version: VSPCVersion.current,
        subcommands: [List.self, History.self, Tail.self, Log.self, Grep.self, Status.self, Forget.self, URLCommand.self,
                      Token.self, MigrateDB.self],
        defaultSubcommand: List.self)
}

struct AdminOption: ParsableArguments {
    static let defaultAdmin = "127.0.0.1:6780"

    // The default is in the help text (and nil here) so that the man page, which shows only the text, has it.
    @Option(help: ArgumentHelp("vspcd's admin endpoint: [host]:port, or unix:PATH for its Unix socket. (default: \(defaultAdmin))", valueName: "[host]:port|unix:PATH"))
    var admin: String?
    @Flag(help: "Also print the raw network error when the daemon cannot be reached.")
    var debug = false

    func endpoint() throws -> AdminEndpoint {
        let admin = self.admin ?? Self.defaultAdmin
        guard let e = AdminEndpoint.parse(admin, defaultHost: "127.0.0.1") else {
            throw ValidationError("--admin must be [host]:port or unix:PATH, got \(admin.debugDescription)")
        }
        return e
    }

    /// Sends a one-shot request; an unreachable daemon or a refusal becomes a message and a non-zero exit.
    func request(_ command: String) async throws -> AdminResponse {
        try await request(AdminRequest(command: command))
    }

    /// An error as printed: its plain sentence; with --debug, the raw error first.
    func failure(_ error: Error) -> ExitCode {
        if debug, case let .unreachable(_, _, detail)? = error as? AdminClientError {
            FileHandle.standardError.write(Data("vspc: debug: \(show(detail))\n".utf8))
        }
        return fail(show("\(error)"))
    }

    func request(_ request: AdminRequest) async throws -> AdminResponse {
        let endpoint = try endpoint()
        let response: AdminResponse
        do {
            response = try await AdminClient.request(endpoint, request)
        } catch {
            throw failure(error)
        }
        guard response.ok else { throw fail(refusal(response, query: request.vm)) }
        return response
    }
}

/// Prints a value as indented JSON with sorted keys (dates in ISO 8601). Strings keep their exact value;
/// DEL, C1 and bidi controls in them are written as `\u` escapes so that the output is safe on a terminal.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    print(DisplayText.terminalSafeJSON(String(decoding: try encoder.encode(value), as: UTF8.self)))
}

/// Text from the daemon or the database (names, labels, peers, details, error messages) as printed for people:
/// terminal controls visibly escaped (see `DisplayText`).
func show(_ text: String) -> String { DisplayText.escape(text) }

/// A user's or a VM's text in quotes, for messages.
func quoted(_ text: String) -> String { "\"\(show(text))\"" }

func fail(_ message: String, code: Int32 = 1) -> ExitCode {
    FileHandle.standardError.write(Data("vspc: \(message)\n".utf8))
    return ExitCode(code)
}

/// `name`, or `name#label` for a VM's other serial ports; escaped for display.
func displayName(_ vm: ConsoleInfo) -> String {
    show(vm.label.isEmpty ? vm.name : "\(vm.name)#\(vm.label)")
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List VM serial ports that hold a port: name:uuid:port, as vSPC.py prints them.",
        discussion: "A VM's second serial port is listed as name#label. The uuid is VMware's, as 32 hex digits split 16-16.")

    @OptionGroup var admin: AdminOption
    @Flag(help: "JSON, one object per VM serial port.") var json = false
    @Flag(help: "An aligned table for people.") var table = false

    func validate() throws {
        if json && table { throw ValidationError("choose one of --json and --table") }
    }

    func run() async throws {
        guard let vms = try await admin.request("list").vms else { throw fail("the daemon sent no list") }
        if json {
            try printJSON(vms)
        } else if table {
            // Several daemons: the owning node, in a column of its own (only when some console has one).
            let owners = vms.contains { $0.owner != nil }
            var rows = [["NAME", "LABEL", "UUID", "PORT", "VM", "CLIENTS", "SINCE"] + (owners ? ["OWNER"] : [])]
            for vm in vms {
                // Several daemons: "elsewhere" when another live node owns the console; OWNER says which.
                let state = vm.migrating ? "vmotion" : vm.connected ? "up" : vm.elsewhere == true ? "elsewhere" : "down"
                let port = "\(vm.port)" + (vm.listening || vm.listenError == nil ? "" : "!") + (vm.saved == false ? "*" : "")
                rows.append([show(vm.name), show(vm.label), show(UUIDSpelling.classic(vm.uuid)), port, state,
                             "\(vm.clients)", localTime(vm.since)] + (owners ? [vm.owner.map(show) ?? "-"] : []))
            }
            printTable(rows)
            if vms.contains(where: { !$0.listening && $0.listenError != nil }) {
                print("(! = port held by another process; vspcd retries)")
            }
            if vms.contains(where: { $0.saved == false }) {
                print("(* = not yet saved: the database refuses writes; vspcd retries, and the port is kept)")
            }
        } else {
            for vm in vms {
                print("\(displayName(vm)):\(show(UUIDSpelling.classic(vm.uuid))):\(vm.port)")
            }
        }
    }
}

func localTime(_ iso: String?) -> String {
    guard let iso, let date = ISO8601DateFormatter().date(from: iso) else { return "-" }
    return formatLocal(date)
}

func formatLocal(_ date: Date) -> String { AdminProtocol.localTimestamp(date, in: .current) }

func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    var widths = first.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    for row in rows {
        let line = row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
        print(line)
    }
}

/// Parses `--since`: an ISO 8601 time, `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` (local), or an age like 90s, 15m, 2h, 3d.
func parseSince(_ text: String, now: Date = Date()) -> Date? {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800]
    if let unit = text.last, let scale = units[unit], let n = Double(text.dropLast()), n >= 0 {
        return now.addingTimeInterval(-n * scale)
    }
    if let d = ISO8601DateFormatter().date(from: text) { return d }
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.timeZone = TimeZone.current
    for format in ["yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd"] {
        f.dateFormat = format
        if let d = f.date(from: text) { return d }
    }
    return nil
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the daemon at a glance: consoles, people, ports, descriptors, uptime.")

    @OptionGroup var admin: AdminOption
    @Flag(help: "JSON, for scripts.") var json = false

    func run() async throws {
        let response = try await admin.request("status")
        guard let status = response.daemon else { throw fail("the daemon sent no status") }
        if json {
            try printJSON(status)
            return
        }
        print(formatStatus(status))
    }
}

/// `vspc status` for people: one aligned line per subject, with units.
func formatStatus(_ s: DaemonStatus) -> String {
    let started = ISO8601DateFormatter().date(from: s.startedAt).map(formatLocal) ?? s.startedAt
    let rows: [(String, String)] = [
        ("daemon", "vspcd \(s.version), up \(formatDuration(s.uptimeSeconds)) (since \(started))"),
        ("consoles", "\(s.consoles) (\(s.connected) connected, \(s.migrating) in vMotion)"),
        ("people", "\(s.telnetClients) on telnet, \(s.sshClients ?? 0) on ssh, \(s.tailFollowers) following with tail -f"),
        ("ports", "\(s.portsUsed) used / \(s.portsFree) free (range \(s.portRangeStart)-\(s.portRangeEnd))"
            + ((s.unsaved ?? 0) > 0 ? "; \(s.unsaved!) not yet saved: the database refuses writes" : "")
            + ((s.notListening ?? 0) > 0
                ? "; \(s.notListening!) not listening: another process holds the port, or the bind was refused (see vspc list)" : "")),
        ("descriptors", "\(s.descriptors) used / \(s.descriptorLimit) limit"),
        ("events", "\(s.eventsSuppressed) suppressed by per-connection limits"),
    ]
    let width = rows.map(\.0.count).max() ?? 0
    let lines = rows.map { $0.0.padding(toLength: width + 2, withPad: " ", startingAt: 0) + $0.1 }
    return (lines + formatNodes(s, width: width)).joined(separator: "\n")
}

/// 93784 s as "1d 2h 3m"; under a minute as "42s".
func formatDuration(_ seconds: Int) -> String {
    let d = seconds / 86400, h = seconds % 86400 / 3600, m = seconds % 3600 / 60
    if d > 0 { return "\(d)d \(h)h \(m)m" }
    if h > 0 { return "\(h)h \(m)m" }
    if m > 0 { return "\(m)m \(seconds % 60)s" }
    return "\(seconds)s"
}

struct Forget: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove a VM serial port's assignment; its port returns to the pool.",
        discussion: "Refused for a connected VM unless --force is given (its connection and the people attached are then closed; it gets a new port when it comes back). Recorded in the VM's history.")

    @Argument(help: "VM name, uuid in any spelling, or a unique prefix of either.")
    var vm: String

    @OptionGroup var admin: AdminOption
    @Option(help: "Serial-port label, for a VM's second serial port.") var label: String?
    @Flag(help: "Forget it even while the VM is connected.") var force = false

    func run() async throws {
        let response = try await admin.request(AdminRequest(command: "forget", vm: vm, label: label ?? "", force: force))
        guard let info = response.vm else { throw fail("the daemon sent no answer") }
        print("forgot \(displayName(info)) (\(UUIDSpelling.classic(info.uuid))); port \(info.port) is free again")
    }
}

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a VM's recorded events (connects, disconnects, vMotion, clients), newest last.",
        discussion: """
        Asks the daemon at --admin; with --db, reads that database directly and read-only instead. When the \
        daemon cannot be reached and no --db is given, reads ./vspcd.db, so it works while the daemon is down. \
        The daemon answers with at most \(AdminProtocol.maxHistoryEvents) events (the newest).
        """)

    @Argument(help: "VM name, uuid in any spelling, or a unique prefix of either.")
    var vm: String

    @OptionGroup var admin: AdminOption
    @Option(help: "The daemon's database file, read offline (default when the daemon is down: vspcd.db).", completion: .file()) var db: String?
    @Option(help: "Only events since: 2h, 3d, 2026-11-25, '2026-11-25 14:00', or ISO 8601.") var since: String?
    @Option(help: "Only the newest N events.") var limit: Int?
    @Flag(help: "JSON, one array of events.") var json = false
    @Flag(help: "Only the refused attempts to reach this VM (client-refused: who, with which key, asking for what name); they are left out otherwise.")
    var refused = false

    func validate() throws {
        if let limit, limit <= 0 { throw ValidationError("--limit must be a positive number") }
        if let since, parseSince(since) == nil {
            throw ValidationError("--since: cannot read \(since.debugDescription); use 2h, 3d, 2026-11-25, '2026-11-25 14:00' or ISO 8601")
        }
    }

    func run() async throws {
        let sinceDate = since.flatMap { parseSince($0) }
        if let db { return try offline(db, since: sinceDate) }
        let request = AdminRequest(command: "history", vm: vm, since: sinceDate.map(AdminProtocol.preciseTimestamp),
                                   limit: limit)
        let response: AdminResponse
        do {
            response = try await AdminClient.request(try admin.endpoint(), request)
        } catch let error as AdminClientError {
            guard case .unreachable = error else { throw fail(show("\(error)")) }
            // Daemon down: the default database, as before the daemon answered history.
            return try offline("vspcd.db", since: sinceDate)
        }
        guard response.ok else { throw fail(refusal(response, query: vm)) }
        guard let answer = response.history else { throw fail("the daemon sent no history") }
        if limit.map({ $0 > AdminProtocol.maxHistoryEvents }) ?? true, answer.events.count >= AdminProtocol.maxHistoryEvents {
            FileHandle.standardError.write(Data("vspc: the daemon sent the newest \(answer.events.count) events; use --db for all\n".utf8))
        }
        try printHistory(uuid: answer.uuid, name: answer.name, events: answer.events)
    }

    func offline(_ db: String, since sinceDate: Date?) throws {
        let store = try openOffline(db)
        guard let target = try chooseOffline(vm, in: store, scope: .vm) else {
            throw fail("no VM matches \(quoted(vm)) in \(show(db))")
        }
        let events = try store.events(uuid: target.uuid, label: nil, since: sinceDate, limit: limit)
        try printHistory(uuid: target.uuid, name: target.name, events: events)
    }

    /// A detail as printed: a console-match's detail is the matched line already escaped by the daemon (`\x1b`), so
    /// only controls are escaped again, and its backslashes are shown as they are.
    static func shownDetail(_ detail: String, of kind: EventKind) -> String {
        kind == .consoleMatch ? VisibleEscaping.escape(detail) : show(detail)
    }

    func printHistory(uuid: String, name: String, events all: [ConsoleEvent]) throws {
        // Refusals are a view of their own: a key holder probing names does not fill the VM's history.
        let events = all.filter { ($0.kind == .clientRefused) == refused }
        if json {
            try printJSON(events)
            return
        }
        print("# \(show(name)) \(UUIDSpelling.classic(uuid))")
        for e in events {
            var line = "\(formatLocal(e.time))  \(show(e.kind.rawValue))"
            if !e.label.isEmpty { line += "  port=\(show(e.label))" }
            if let old = e.name, old != name { line += "  name=\(show(old))" }
            if let peer = e.peer { line += "  peer=\(show(peer))" }
            if let detail = e.detail { line += "  \(Self.shownDetail(detail, of: e.kind))" }
            print(line)
        }
    }
}

/// A daemon's refusal as printed: a reference that names several consoles is listed as `VMLookup` words it
/// (the names escaped once, here); any other refusal is the daemon's text, escaped.
func refusal(_ response: AdminResponse, query: String?) -> String {
    if let candidates = response.candidates, !candidates.isEmpty, let query {
        return VMLookup.ambiguity(query, candidates)
    }
    return show(response.error ?? "the daemon refused the request")
}

struct Tail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a VM's console scrollback; with -f, follow its live output.",
        discussion: "Bytes are printed as the VM sent them unless --safe strips terminal control sequences. If the daemon is not running, the scrollback saved in --db is printed.")

    @Argument(help: "VM uuid in any spelling, name, or a unique prefix of either.")
    var vm: String

    @OptionGroup var admin: AdminOption
    @Option(help: "Serial-port label, for a VM's second serial port.") var label: String?
    @Flag(name: .shortAndLong, help: "Follow live output until interrupted.") var follow = false
    @Option(name: [.customShort("n"), .customLong("lines")], help: "Only the last N lines.") var lines: Int?
    @Option(name: [.customShort("c"), .customLong("bytes")], help: "Only the last N bytes.") var bytes: Int?
    @Flag(help: "Strip terminal control sequences.") var safe = false
    @Option(help: "Database to read the saved scrollback from when the daemon is down. (default: vspcd.db)", completion: .file()) var db: String?

    func validate() throws {
        if let lines, lines < 0 { throw ValidationError("-n must not be negative") }
        if let bytes, bytes < 0 { throw ValidationError("-c must not be negative") }
        if lines != nil && bytes != nil { throw ValidationError("choose one of -n and -c") }
    }

    func run() async throws {
        let db = self.db ?? "vspcd.db"
        let endpoint = try admin.endpoint()
        let output = Output(safe: safe)
        // Without --label, the VM's first (unlabelled) serial port.
        let request = AdminRequest(command: "tail", vm: vm, label: label ?? "", bytes: bytes, follow: follow)
        // With -n, the backlog (its length is in the response) is cut to its last lines; live bytes pass through.
        let backlog = Backlog(lines: lines)
        do {
            let response = try await AdminClient.request(endpoint, request, onHeader: { header in
                backlog.expect(header.backlog ?? 0)
            }) { chunk in
                output.write(backlog.take(chunk))
            }
            guard response.ok else { throw fail(refusal(response, query: vm)) }
            if follow { try await explainEnd(of: response.vm) }
        } catch let error as AdminClientError {
            guard case .unreachable = error else { throw admin.failure(error) }
            // Daemon down: the scrollback saved in the database.
            guard !follow, let store = try? RecordBackends.openForReading(db) else { throw admin.failure(error) }
            let target: ConsoleCandidate
            switch VMLookup.choose(vm, among: (try? store.knownConsoles()) ?? [], scope: .vm) {
            case .found(let found): target = found
            case .notFound: throw admin.failure(error)
            case .ambiguous(let candidates): throw fail(VMLookup.ambiguity(vm, candidates))
            }
            guard let saved = try store.scrollback(uuid: target.uuid, label: label ?? "") else {
                throw fail("no scrollback saved for \(quoted(vm)) in \(show(db))")
            }
            var data = saved
            if let bytes { data = Array(data.suffix(bytes)) }
            if let lines { data = lastLines(data, lines) }
            output.write(data)
        }
    }
}

/// For -n: holds the backlog bytes until all have arrived, then passes on its last N lines and everything after.
final class Backlog: @unchecked Sendable {
    let lines: Int?
    var remaining = 0
    var buffer: [UInt8] = []
    let lock = NSLock()

    init(lines: Int?) { self.lines = lines }

    func expect(_ count: Int) {
        lock.lock(); defer { lock.unlock() }
        remaining = count
    }

    func take(_ chunk: [UInt8]) -> [UInt8] {
        lock.lock(); defer { lock.unlock() }
        guard let lines, remaining > 0 else { return chunk }
        let part = chunk.prefix(remaining)
        buffer += part
        remaining -= part.count
        guard remaining == 0 else { return [] }
        defer { buffer = [] }
        return lastLines(buffer, lines) + chunk.dropFirst(part.count)
    }
}

func lastLines(_ data: [UInt8], _ n: Int) -> [UInt8] {
    var count = 0
    var index = data.endIndex
    // A trailing newline ends the last line rather than starting an empty one.
    if data.last == 0x0A { index -= 1 }
    while index > data.startIndex {
        if data[index - 1] == 0x0A {
            count += 1
            if count == n { return Array(data[index...]) }
        }
        index -= 1
    }
    return n == 0 ? [] : data
}

final class Output: @unchecked Sendable {
    var sanitizer: TerminalSanitizer?
    let lock = NSLock()

    init(safe: Bool) { sanitizer = safe ? TerminalSanitizer() : nil }

    func write(_ bytes: [UInt8]) {
        lock.lock(); defer { lock.unlock() }
        var out = bytes
        if sanitizer != nil { out = sanitizer!.filter(bytes) }
        FileHandle.standardOutput.write(Data(out))
    }
}

