import Foundation
import VSPCCore
import VSPCClient
import VSPCSim
import VSPCStore
import XCTest

/// End to end, against the real binaries: the daemon's files are private whatever the umask, one daemon per
/// database (readers still work beside it), and names with terminal controls are printed escaped.
final class HardeningTests: DaemonTestCase {
    private func mode(_ path: String) -> String {
        PrivateFiles.mode(path).map(PrivateFiles.octal) ?? "missing"
    }

    /// A VM with a person attached who has seen `text`: by then the daemon holds it in the scrollback.
    private func connectVM(_ d: Daemon, uuid: String, name: String, printing text: String) async throws -> (SimulatedVM, SimulatedClient) {
        let vm = try await SimulatedVM.connect(port: d.proxyPort, uuid: uuid, name: name)
        let client = try await SimulatedClient.connect(port: try await d.port(of: uuid))
        try await d.waitForList("a client on \(uuid)") { $0.first { $0.uuid == uuid }?.clients == 1 }
        vm.output(text)
        try await client.waitForData(count: text.utf8.count, timeout: 30)
        return (vm, client)
    }

    // MARK: private files

    func testDatabaseFilesArePrivateWhateverTheUmask() async throws {
        let d = try makeDaemon()
        // Directories the daemon creates itself, below the test's own.
        let db = d.directory.appendingPathComponent("state/vspcd/vspcd.db").path
        d.extraArguments = ["--db", db] // the last --db wins
        let saved = umask(0)
        do {
            try await d.start()
        } catch {
            umask(saved)
            throw error
        }
        umask(saved)

        let uuid = testUUID(901)
        let (vm, client) = try await connectVM(d, uuid: uuid, name: "private", printing: "password: hunter2\r\n")
        XCTAssertEqual(mode(d.directory.appendingPathComponent("state").path), "0700")
        XCTAssertEqual(mode(d.directory.appendingPathComponent("state/vspcd").path), "0700")
        for file in [db, db + "-wal", db + "-shm", db + ".lock"] {
            XCTAssertEqual(mode(file), "0600", "\(file) under umask 0000")
        }
        vm.close()
        client.close()
        try await d.stop()

        // A database left world-readable (by an older vspcd, or by hand) is made private at start, with a notice.
        XCTAssertEqual(chmod(db, 0o644), 0)
        try await d.start()
        XCTAssertEqual(mode(db), "0600")
        XCTAssertTrue(d.log.contains("made \(db) private: mode 0644 -> 0600"), d.log)
        let kept = try await d.list()
        XCTAssertEqual(kept.first?.uuid, uuid, "the assignment survived")
        try await d.stop()
    }

    // MARK: one daemon per database

    func testASecondDaemonOnTheSameDatabaseExitsNamingTheFirst() async throws {
        let first = try await startDaemon()
        let pid = try XCTUnwrap(first.process?.processIdentifier)
        let uuid = testUUID(911)
        let (vm, client) = try await connectVM(first, uuid: uuid, name: "locked-vm", printing: "console line\r\n")

        // Same database, other ports: refused at once, naming the database and the running daemon's pid.
        let intruder = try makeDaemon(directory: first.directory)
        XCTAssertEqual(intruder.dbPath, first.dbPath)
        let second = try Daemon.runTool("vspcd", intruder.arguments, timeout: 60)
        XCTAssertNotEqual(second.status, 0, "a second vspcd started on \(first.dbPath):\n\(second.err)")
        XCTAssertTrue(second.err.contains(first.dbPath), second.err)
        XCTAssertTrue(second.err.contains("pid \(pid)"), second.err)
        XCTAssertTrue(second.err.contains("in use by another vspcd"), second.err)
        XCTAssertEqual(second.err.split(separator: "\n").filter { $0.contains("CRITICAL") }.count, 1, second.err)
        XCTAssertFalse(second.err.contains("starting"), second.err)
        XCTAssertFalse(second.err.contains("listening"), second.err)

        // The first one serves on, untouched.
        let vms = try await first.list()
        XCTAssertEqual(vms.first { $0.uuid == uuid }?.connected, true)
        XCTAssertEqual(DatabaseLock.recordedPID(lockPath: first.dbPath + ".lock"), pid)

        // Readers work beside the running daemon: the history, and the scrollback it saved (vspc tail falls back
        // to the database when the admin endpoint does not answer; the daemon saves every 2 s).
        let history = try Daemon.runTool("vspc", ["history", "locked-vm", "--db", first.dbPath])
        XCTAssertEqual(history.status, 0, history.err)
        XCTAssertEqual(history.lines.first, "# locked-vm \(UUIDSpelling.classic(uuid))")
        XCTAssertTrue(history.text.contains("vm-connect"), history.text)
        let elsewhere = try freePort()
        let deadline = Date().addingTimeInterval(30)
        while true {
            let tail = try Daemon.runTool("vspc", ["tail", uuid, "--admin", "127.0.0.1:\(elsewhere)", "--db", first.dbPath])
            if tail.status == 0 && tail.out == Data("console line\r\n".utf8) { break }
            if Date() > deadline { return XCTFail("offline tail never printed the saved scrollback: \(tail.status) \(tail.err)") }
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        vm.close()
        client.close()

        // kill -9 leaves the lock file behind, but the lock goes with the process: the next daemon starts at once.
        try await first.kill9()
        XCTAssertTrue(FileManager.default.fileExists(atPath: first.dbPath + ".lock"))
        try await intruder.start()
        XCTAssertEqual(DatabaseLock.recordedPID(lockPath: first.dbPath + ".lock"), intruder.process?.processIdentifier)
        let after = try await intruder.list()
        XCTAssertEqual(after.first { $0.uuid == uuid }?.connected, false)
        try await intruder.stop()
    }

    // MARK: names are data

    /// ESC, an OSC 52 clipboard write (ESC ] 52 ; c ; base64 BEL), an 8-bit CSI (U+009B) and a right-to-left
    /// override (U+202E) in a VM's name.
    static let hostileName = "evil\u{1b}]52;c;cm0gLXJmIH4=\u{07}\u{9b}31m\u{202e}gpj.exe"
    /// The daemon's VM link drops C0 controls and DEL from names (VMLinkStateMachine.sanitizeName); everything
    /// else is kept exactly: this is the name the daemon lists.
    static let storedName = "evil]52;c;cm0gLXJmIH4=\u{9b}31m\u{202e}gpj.exe"
    /// What a person sees.
    static let shownName = #"evil]52;c;cm0gLXJmIH4=\u{9b}31m\u{202e}gpj.exe"#

    /// No byte that a terminal acts on: C0 other than newline, DEL, C1 or bidi controls (in UTF-8).
    private func assertInert(_ data: Data, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let text = String(decoding: data, as: UTF8.self)
        let bad = text.unicodeScalars.filter { $0 != "\n" && DisplayText.isUnsafe($0) }
        XCTAssertTrue(bad.isEmpty, "\(what) prints \(bad.map { String($0.value, radix: 16) }):\n\(text)", file: file, line: line)
    }

    func testNamesWithTerminalControlsArePrintedEscaped() async throws {
        let d = try await startDaemon()
        let uuid = testUUID(921)
        let admin = ["--admin", "127.0.0.1:\(d.adminPort)"]
        let vm = try await SimulatedVM.connect(port: d.proxyPort, uuid: uuid, name: Self.hostileName)
        let port = try await d.port(of: uuid)

        // --json keeps the exact name (the controls are \u escapes inside the JSON string).
        let json = try Daemon.runTool("vspc", ["list", "--json"] + admin)
        XCTAssertEqual(json.status, 0, json.err)
        assertInert(json.out, "list --json")
        let listed = try JSONDecoder().decode([ConsoleInfo].self, from: json.out)
        XCTAssertEqual(listed.first { $0.uuid == uuid }?.name, Self.storedName)

        let classic = try Daemon.runTool("vspc", ["list"] + admin)
        XCTAssertEqual(classic.status, 0, classic.err)
        assertInert(classic.out, "list")
        XCTAssertEqual(classic.lines, ["\(Self.shownName):\(UUIDSpelling.classic(uuid)):\(port)"])

        let table = try Daemon.runTool("vspc", ["list", "--table"] + admin)
        XCTAssertEqual(table.status, 0, table.err)
        assertInert(table.out, "list --table")
        XCTAssertEqual(table.lines.count, 2, table.text)
        XCTAssertTrue(table.lines[1].hasPrefix(Self.shownName + "  "), table.text)
        // Columns stay aligned: the header's UUID column starts where the row's uuid does.
        XCTAssertEqual(table.lines[0].range(of: "UUID")?.lowerBound.utf16Offset(in: table.lines[0]),
                       table.lines[1].range(of: UUIDSpelling.classic(uuid))?.lowerBound.utf16Offset(in: table.lines[1]))

        // A rename to another hostile name: history shows the new name in its header, the old one as name=, and
        // both in the name-change detail.
        let renamed = "\u{2066}tidy\u{2069}\u{85}"
        vm.rename(renamed)
        try await d.waitForList("the rename") { $0.first { $0.uuid == uuid }?.name == renamed }
        let shownRenamed = #"\u{2066}tidy\u{2069}\u{85}"#
        var history = try Daemon.runTool("vspc", ["history", uuid, "--db", d.dbPath])
        let deadline = Date().addingTimeInterval(30)
        while !history.text.contains("name-change") {
            if Date() > deadline { return XCTFail("no name-change event: \(history.text) \(history.err)") }
            try await Task.sleep(nanoseconds: 100_000_000)
            history = try Daemon.runTool("vspc", ["history", uuid, "--db", d.dbPath])
        }
        XCTAssertEqual(history.status, 0, history.err)
        assertInert(history.out, "history")
        XCTAssertEqual(history.lines.first, "# \(shownRenamed) \(UUIDSpelling.classic(uuid))")
        let connect = try XCTUnwrap(history.lines.first { $0.contains("vm-connect") })
        XCTAssertTrue(connect.contains("  name=\(Self.shownName)  peer=127.0.0.1:"), connect)
        let change = try XCTUnwrap(history.lines.first { $0.contains("name-change") })
        XCTAssertTrue(change.hasSuffix("  \(Self.shownName) -> \(shownRenamed)"), change)
        // --json keeps the exact names.
        let historyJSON = try Daemon.runTool("vspc", ["history", uuid, "--json", "--db", d.dbPath])
        assertInert(historyJSON.out, "history --json")
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let events = try decoder.decode([ConsoleEvent].self, from: historyJSON.out)
        XCTAssertTrue(events.contains { $0.kind == "vm-connect" && $0.name == Self.storedName }, "\(events)")
        XCTAssertTrue(events.contains { $0.detail == "\(Self.storedName) -> \(renamed)" }, "\(events)")

        // The daemon's own messages that quote names (an ambiguous tail) are escaped too.
        let otherUUID = testUUID(922)
        let other = try await SimulatedVM.connect(port: d.proxyPort, uuid: otherUUID, name: "\u{2066}tidy\u{9b}2J")
        _ = try await d.port(of: otherUUID)
        let ambiguous = try Daemon.runTool("vspc", ["tail", "\u{2066}tid"] + admin)
        XCTAssertNotEqual(ambiguous.status, 0)
        XCTAssertTrue(ambiguous.err.contains("ambiguous"), ambiguous.err)
        XCTAssertTrue(ambiguous.err.contains(#"\u{2066}tidy\u{9b}2J"#), ambiguous.err)
        assertInert(Data(ambiguous.err.utf8), "tail's error")
        other.close()
        vm.close()
    }

    /// Whatever wrote the database (an older daemon, another tool, a restore), `vspc history` shows its text
    /// escaped: here with C0 controls the daemon itself never stores, a newline that would forge a line included.
    func testHistoryEscapesWhateverTheDatabaseHolds() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vspcd-e2e-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = dir.appendingPathComponent("vspcd.db").path
        let uuid = testUUID(931)
        let name = "db\u{1b}[2Jname\nforged 2026-01-01 00:00:00  vm-connect\u{7}"
        do {
            let store = try Store(path: db)
            let now = Date()
            store.enqueue([
                .upsertAssignment(Assignment(uuid: uuid, label: "", name: name, port: 20000, createdAt: now, lastSeen: now)),
                .event(ConsoleEvent(kind: "vm-connect", uuid: uuid, name: name, peer: "10.0.0.1:1\u{1b}]0;t\u{7}",
                                detail: "port 20000\r\u{1b}[1A")),
                .event(ConsoleEvent(kind: "name-change", uuid: uuid, name: "new", detail: "\(name) -> new")),
            ])
            store.flush()
        }
        let shown = #"db\x1b[2Jname\x0aforged 2026-01-01 00:00:00  vm-connect\x07"#
        let history = try Daemon.runTool("vspc", ["history", uuid, "--db", db])
        XCTAssertEqual(history.status, 0, history.err)
        assertInert(history.out, "history")
        XCTAssertEqual(history.lines.count, 3, history.text)
        XCTAssertEqual(history.lines.first, "# \(shown) \(UUIDSpelling.classic(uuid))")
        XCTAssertTrue(history.lines[1].hasSuffix(#"  vm-connect  peer=10.0.0.1:1\x1b]0;t\x07  port 20000\x0d\x1b[1A"#), history.text)
        XCTAssertTrue(history.lines[2].hasSuffix("  name-change  name=new  \(shown) -> new"), history.text)
        // An ambiguous reference lists the names escaped, one per line.
        let lookalike = try Store(path: db)
        lookalike.enqueue(.event(ConsoleEvent(kind: "vm-connect", uuid: testUUID(932), name: "db\u{9b}other")))
        lookalike.flush()
        let ambiguous = try Daemon.runTool("vspc", ["history", "db", "--db", db])
        XCTAssertNotEqual(ambiguous.status, 0)
        assertInert(Data(ambiguous.err.replacingOccurrences(of: "\n", with: " ").utf8), "history's error")
        XCTAssertTrue(ambiguous.err.contains(#"  db\u{9b}other "#), ambiguous.err)
        XCTAssertTrue(ambiguous.err.contains("  \(shown) "), ambiguous.err)
    }
}
