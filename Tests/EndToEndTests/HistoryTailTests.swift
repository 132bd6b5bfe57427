import Foundation
import VSPCCore
import VSPCClient
import VSPCSim
import VSPCStore
import XCTest

/// End to end: the event log (`vspc history`), scrollback (`vspc tail`, `tail -f`, replay) and event
/// retention, against the real vspcd and vspc binaries.
final class HistoryTailTests: DaemonTestCase {
    func admin(_ d: Daemon) -> [String] { ["--admin", "127.0.0.1:\(d.adminPort)"] }

    /// A VM with a telnet client attached, so that output can be awaited: once the client has it, the
    /// daemon has put it in the scrollback too (the scrollback is appended before clients are written).
    func connectVM(_ d: Daemon, uuid: String, name: String) async throws -> (SimulatedVM, SimulatedClient) {
        let vm = try await SimulatedVM.connect(port: d.proxyPort, uuid: uuid, name: name)
        let port = try await d.port(of: uuid)
        let client = try await SimulatedClient.connect(port: port)
        try await d.waitForList("a client on \(name)") { $0.first { $0.uuid == uuid }?.clients == 1 }
        return (vm, client)
    }

    /// VM output that the attached `client` has received in full.
    func output(_ vm: SimulatedVM, _ bytes: [UInt8], seenBy client: SimulatedClient) async throws {
        let before = client.data.count
        vm.output(bytes)
        try await client.waitForData(count: before + bytes.count, timeout: 30)
        XCTAssertEqual(Array(client.data.suffix(bytes.count)), bytes)
    }

    // MARK: 1. event order

    func testEventsOfAScriptedSessionAreInOrder() async throws {
        let d = try await startDaemon()
        let uuid = testUUID(101)

        var vm = try await SimulatedVM.connect(port: d.proxyPort, uuid: uuid, name: "hist-a")
        let port = try await d.port(of: uuid)
        let client = try await SimulatedClient.connect(port: port)
        try await d.waitForList("client attached") { $0.first { $0.uuid == uuid }?.clients == 1 }
        client.close()
        try await d.waitForList("client detached") { $0.first { $0.uuid == uuid }?.clients == 0 }

        vm.rename("hist-b")
        try await d.waitForList("renamed") { $0.first { $0.uuid == uuid }?.name == "hist-b" }

        // Reboot.
        vm.close()
        try await d.waitForList("VM down") { $0.first { $0.uuid == uuid }?.connected == false }
        vm = try await SimulatedVM.connect(port: d.proxyPort, uuid: uuid, name: "hist-b")
        try await d.waitForList("VM up again") { $0.first { $0.uuid == uuid }?.connected == true }

        // vMotion.
        vm = try await vm.migrate(port: d.proxyPort)
        try await d.waitForList("vMotion done") {
            guard let c = $0.first(where: { $0.uuid == uuid }) else { return false }
            return c.connected && !c.migrating
        }
        vm.close()
        try await d.waitForList("VM down at the end") { $0.first { $0.uuid == uuid }?.connected == false }

        // The writer is asynchronous: wait for the last event.
        let store = try Store(path: d.dbPath, readOnly: true)
        var stored: [String] = []
        let deadline = Date().addingTimeInterval(20)
        while true {
            stored = try store.events(uuid: uuid).map(\.kind.rawValue)
            if stored.contains("vmotion-complete"), stored.last == "vm-disconnect",
               stored.filter({ $0 == "vm-disconnect" }).count >= 2 { break }
            if Date() > deadline { XCTFail("events never completed: \(stored)"); return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }

        let expected = ["vm-connect", "port-assigned", "client-attach", "client-detach", "name-change",
                        "vm-disconnect", "vm-connect", "port-reused", "vmotion-begin", "vmotion-goahead",
                        "vmotion-peer", "vmotion-complete", "vm-disconnect"]
        XCTAssertTrue(isSubsequence(expected, of: stored), "expected \(expected) in this order within \(stored)")

        // The history of a running daemon.
        let running = try vspc(["history", "hist-b", "--db", d.dbPath])
        XCTAssertEqual(running.status, 0, running.err)
        XCTAssertEqual(running.lines.first, "# hist-b \(UUIDSpelling.classic(uuid))")
        let kinds = historyKinds(running.text)
        XCTAssertEqual(kinds, stored)
        XCTAssertTrue(isSubsequence(expected, of: kinds), "\(kinds)")
        // Chronological: the printed times never go backwards.
        let times = running.lines.dropFirst().map { String($0.prefix(19)) }
        XCTAssertEqual(times, times.sorted(), running.text)
        XCTAssertTrue(running.text.contains("name=hist-a"), "events from before the rename carry the old name:\n\(running.text)")

        // The old name finds the same VM.
        let byOldName = try vspc(["history", "hist-a", "--db", d.dbPath])
        XCTAssertEqual(byOldName.status, 0, byOldName.err)
        XCTAssertEqual(byOldName.lines.first, "# hist-b \(UUIDSpelling.classic(uuid))")

        // --json
        let json = try vspc(["history", "hist-b", "--json", "--db", d.dbPath])
        XCTAssertEqual(json.status, 0, json.err)
        let events = try decodeEvents(json.out)
        XCTAssertEqual(events.map(\.kind.rawValue), kinds)
        XCTAssertTrue(events.allSatisfy { $0.uuid == uuid }, "\(events)")
        XCTAssertEqual(events.map(\.id), events.compactMap(\.id).sorted())

        // --limit 3: the newest three, oldest first.
        let limited = try vspc(["history", "hist-b", "--limit", "3", "--db", d.dbPath])
        XCTAssertEqual(limited.status, 0, limited.err)
        XCTAssertEqual(historyKinds(limited.text), Array(kinds.suffix(3)))
        let limitedJSON = try vspc(["history", "hist-b", "--limit", "3", "--json", "--db", d.dbPath])
        XCTAssertEqual(try decodeEvents(limitedJSON.out).map(\.id), Array(events.map(\.id).suffix(3)))

        // --since
        let recent = try vspc(["history", "hist-b", "--since", "1h", "--db", d.dbPath])
        XCTAssertEqual(recent.status, 0, recent.err)
        XCTAssertEqual(historyKinds(recent.text), kinds)
        let future = try vspc(["history", "hist-b", "--since", "2099-01-01", "--db", d.dbPath])
        XCTAssertEqual(future.status, 0, future.err)
        XCTAssertEqual(historyKinds(future.text), [])
        let futureJSON = try vspc(["history", "hist-b", "--since", "2099-01-01", "--json", "--db", d.dbPath])
        XCTAssertEqual(futureJSON.status, 0, futureJSON.err)
        XCTAssertEqual(try decodeEvents(futureJSON.out).count, 0)

        // And with the daemon stopped: the same history.
        try await d.stop()
        let stopped = try vspc(["history", "hist-b", "--db", d.dbPath])
        XCTAssertEqual(stopped.status, 0, stopped.err)
        XCTAssertEqual(historyKinds(stopped.text), kinds)
        let stoppedJSON = try vspc(["history", uuid, "--json", "--db", d.dbPath])
        XCTAssertEqual(try decodeEvents(stoppedJSON.out).map(\.id), events.map(\.id))
    }

    // MARK: 2. lookup

    func testHistoryLookupBySpellingsPrefixAndErrors() async throws {
        let d = try await startDaemon()
        let target = testUUID(201)
        let web1 = testUUID(202)
        let web2 = testUUID(203)
        var vms: [SimulatedVM] = []
        defer { vms.forEach { $0.close() } }
        for (uuid, name) in [(target, "lookup-target"), (web1, "web-1"), (web2, "web-2")] {
            vms.append(try await SimulatedVM.connect(port: d.proxyPort, uuid: uuid, name: name))
            _ = try await d.port(of: uuid)
        }
        let header = "# lookup-target \(UUIDSpelling.classic(target))"
        let h = Array(target)
        let rfc = "\(String(h[0..<8]))-\(String(h[8..<12]))-\(String(h[12..<16]))-\(String(h[16..<20]))-\(String(h[20..<32]))"
        let queries = [
            "lookup-target",                      // name
            target,                               // 32 hex
            target.uppercased(),                  // 32 hex, upper case
            UUIDSpelling.classic(target),         // vSPC.py 16-16
            SimulatedVM.wireUUID(target),         // VMware wire spelling
            rfc,                                  // RFC 4122
            "{\(rfc)}",                           // RFC 4122 in braces
            String(target.prefix(12)),            // unique uuid prefix
            "lookup",                             // unique name prefix
        ]
        for q in queries {
            let r = try vspc(["history", q, "--db", d.dbPath])
            XCTAssertEqual(r.status, 0, "query \(q.debugDescription): \(r.err)")
            XCTAssertEqual(r.lines.first, header, "query \(q.debugDescription)")
            XCTAssertTrue(historyKinds(r.text).contains("vm-connect"), "query \(q.debugDescription): \(r.text)")
        }

        // Ambiguous prefix.
        let ambiguous = try vspc(["history", "web", "--db", d.dbPath])
        XCTAssertNotEqual(ambiguous.status, 0)
        XCTAssertTrue(ambiguous.err.contains("ambiguous"), ambiguous.err)
        XCTAssertTrue(ambiguous.err.contains("web-1"), ambiguous.err)
        XCTAssertTrue(ambiguous.err.contains("web-2"), ambiguous.err)
        XCTAssertTrue(ambiguous.err.contains(UUIDSpelling.classic(web1)), ambiguous.err)
        XCTAssertTrue(ambiguous.err.contains(UUIDSpelling.classic(web2)), ambiguous.err)
        XCTAssertEqual(ambiguous.out.count, 0)
        // Each is found by its full name.
        XCTAssertEqual(try vspc(["history", "web-2", "--db", d.dbPath]).lines.first, "# web-2 \(UUIDSpelling.classic(web2))")

        // Unknown VM.
        let unknown = try vspc(["history", "no-such-vm", "--db", d.dbPath])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.err.contains("no VM matches"), unknown.err)
        XCTAssertTrue(unknown.err.contains("no-such-vm"), unknown.err)
        let unknownUUID = try vspc(["history", testUUID(299), "--db", d.dbPath])
        XCTAssertNotEqual(unknownUUID.status, 0)
        XCTAssertTrue(unknownUUID.err.contains("no VM matches"), unknownUUID.err)

        // Missing database: an error, and the file is not created.
        let missing = d.directory.appendingPathComponent("absent.db").path
        let noDB = try vspc(["history", "lookup-target", "--db", missing])
        XCTAssertNotEqual(noDB.status, 0)
        XCTAssertTrue(noDB.err.contains("not found"), noDB.err)
        XCTAssertTrue(noDB.err.contains(missing), noDB.err)
        for suffix in ["", "-wal", "-shm"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: missing + suffix), "\(missing + suffix) was created")
        }

        // Bad options.
        let badSince = try vspc(["history", "lookup-target", "--since", "last tuesday", "--db", d.dbPath])
        XCTAssertNotEqual(badSince.status, 0)
        XCTAssertTrue(badSince.err.contains("--since"), badSince.err)
        XCTAssertTrue(badSince.err.contains("last tuesday"), badSince.err)
        let zeroLimit = try vspc(["history", "lookup-target", "--limit", "0", "--db", d.dbPath])
        XCTAssertNotEqual(zeroLimit.status, 0)
        XCTAssertTrue(zeroLimit.err.contains("--limit"), zeroLimit.err)
        XCTAssertEqual(zeroLimit.out.count, 0)
    }

    // MARK: 3. scrollback, byte-exact

    func testTailPrintsScrollbackByteExact() async throws {
        let d = try await startDaemon()
        let uuid = testUUID(301)
        let (vm, client) = try await connectVM(d, uuid: uuid, name: "tail-exact")
        defer { vm.close(); client.close() }
        let payload: [UInt8] = Array("BIOS 1.0\r\n".utf8) + [0x00, 0x11, 0xFF, 0x13, 0xFF, 0xFF, 0x00]
            + Array("\u{1B}[31mred\u{1B}[0m text\r\n".utf8) + patternBytes(600, seed: 5)
            + Array("\r\nline A \u{1B}[1;32mgreen\u{1B}[0m\r\nline B\r\n".utf8)
        try await output(vm, payload, seenBy: client)

        let all = try vspc(["tail", uuid] + admin(d))
        XCTAssertEqual(all.status, 0, all.err)
        XCTAssertEqual(all.out, Data(payload))

        let classic = try vspc(["tail", UUIDSpelling.classic(uuid)] + admin(d))
        XCTAssertEqual(classic.out, Data(payload))
        let byName = try vspc(["tail", "tail-exact"] + admin(d))
        XCTAssertEqual(byName.out, Data(payload))

        for n in [1, 37, 600] {
            let r = try vspc(["tail", uuid, "-c", "\(n)"] + admin(d))
            XCTAssertEqual(r.status, 0, r.err)
            XCTAssertEqual(r.out, Data(payload.suffix(n)), "-c \(n)")
        }
        let zero = try vspc(["tail", uuid, "-c", "0"] + admin(d))
        XCTAssertEqual(zero.status, 0, zero.err)
        XCTAssertEqual(zero.out, Data())
        let more = try vspc(["tail", uuid, "-c", "100000"] + admin(d))
        XCTAssertEqual(more.out, Data(payload))

        let twoLines = try vspc(["tail", uuid, "-n", "2"] + admin(d))
        XCTAssertEqual(twoLines.status, 0, twoLines.err)
        XCTAssertEqual(twoLines.out, Data("line A \u{1B}[1;32mgreen\u{1B}[0m\r\nline B\r\n".utf8))
        let oneLine = try vspc(["tail", uuid, "-n", "1"] + admin(d))
        XCTAssertEqual(oneLine.out, Data("line B\r\n".utf8))

        let safeLines = try vspc(["tail", uuid, "-n", "2", "--safe"] + admin(d))
        XCTAssertEqual(safeLines.status, 0, safeLines.err)
        XCTAssertEqual(safeLines.out, Data("line A green\r\nline B\r\n".utf8))

        // --safe over a whole console: control sequences and C0 bytes go, text, tabs and newlines stay.
        let uuid2 = testUUID(302)
        let (vm2, client2) = try await connectVM(d, uuid: uuid2, name: "tail-safe")
        defer { vm2.close(); client2.close() }
        let raw = Array("\u{1B}[31mred\u{1B}[0m plain\r\n".utf8)
            + Array("\u{1B}]0;window title\u{07}after osc\r\n".utf8)
            + [0x00, 0x07, 0x08, 0x7F, 0x11]
            + Array("tab\there\n\u{1B}(Bcharset \u{1B}[2J\u{1B}[H\u{1B}[?25lünï ✓\r\n".utf8)
        try await output(vm2, raw, seenBy: client2)
        let safe = try vspc(["tail", uuid2, "--safe"] + admin(d))
        XCTAssertEqual(safe.status, 0, safe.err)
        XCTAssertEqual(safe.out, Data("red plain\r\nafter osc\r\ntab\there\ncharset ünï ✓\r\n".utf8),
                       String(decoding: safe.out, as: UTF8.self).debugDescription)
        let unsafe = try vspc(["tail", uuid2] + admin(d))
        XCTAssertEqual(unsafe.out, Data(raw))
    }

    // MARK: 4. ring bound

    func testScrollbackKeepsOnlyTheLastBytes() async throws {
        let d = try await startDaemon(["--scrollback", "1000"])
        let uuid = testUUID(401)
        let (vm, client) = try await connectVM(d, uuid: uuid, name: "ring")
        defer { vm.close(); client.close() }
        let all = patternBytes(5000, seed: 41)
        var offset = 0
        for size in [1, 999, 1, 1500, 37, 963, 1499] {
            try await output(vm, Array(all[offset..<offset + size]), seenBy: client)
            offset += size
        }
        XCTAssertEqual(offset, 5000)
        XCTAssertEqual(client.data, all)

        let r = try vspc(["tail", uuid] + admin(d))
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(r.out.count, 1000)
        XCTAssertEqual(r.out, Data(all.suffix(1000)))
        let c = try vspc(["tail", uuid, "-c", "2000"] + admin(d))
        XCTAssertEqual(c.out, Data(all.suffix(1000)))
        let c10 = try vspc(["tail", uuid, "-c", "10"] + admin(d))
        XCTAssertEqual(c10.out, Data(all.suffix(10)))

        // What is saved is bounded as well.
        try await d.stop()
        let saved = try Store(path: d.dbPath, readOnly: true).scrollback(uuid: uuid, label: "")
        XCTAssertEqual(saved, Array(all.suffix(1000)))
    }

    // MARK: 5. persistence

    func testScrollbackSurvivesRestartKillAndDaemonDown() async throws {
        let d = try await startDaemon()
        let uuid = testUUID(501)
        let first = Array("first boot\r\n".utf8) + patternBytes(3000, seed: 51) + [0x00, 0x11, 0xFF]
        do {
            let (vm, client) = try await connectVM(d, uuid: uuid, name: "persist")
            try await output(vm, first, seenBy: client)
            // SIGTERM right away: the scrollback is saved at shutdown.
            try await d.stop()
            vm.close()
            client.close()
        }
        try await d.start()
        let listed = try await d.list()
        XCTAssertEqual(listed.first { $0.uuid == uuid }?.connected, false)
        let afterRestart = try vspc(["tail", uuid] + admin(d))
        XCTAssertEqual(afterRestart.status, 0, afterRestart.err)
        XCTAssertEqual(afterRestart.out, Data(first))

        // More output after the restart continues the same scrollback.
        let second = Array("\r\nsecond boot\r\n".utf8) + patternBytes(2000, seed: 52) + Array("\r\nlogin: ".utf8)
        do {
            let (vm, client) = try await connectVM(d, uuid: uuid, name: "persist")
            try await output(vm, second, seenBy: client)
            let live = try vspc(["tail", uuid] + admin(d))
            XCTAssertEqual(live.out, Data(first + second))
            // Saved by the daemon's periodic save (every 2 s), then kill -9: nothing is saved at exit.
            let store = try Store(path: d.dbPath, readOnly: true)
            try await waitUntil("the scrollback saved", timeout: 30) {
                try store.scrollback(uuid: uuid, label: "") == first + second
            }
            try await d.kill9()
            vm.close()
            client.close()
        }

        // Daemon down: vspc reads the saved scrollback from the database.
        let down = try vspc(["tail", uuid, "--admin", "127.0.0.1:\(d.adminPort)", "--db", d.dbPath])
        XCTAssertEqual(down.status, 0, down.err)
        XCTAssertEqual(down.out, Data(first + second))
        let downBytes = try vspc(["tail", UUIDSpelling.classic(uuid), "-c", "9", "--admin", "127.0.0.1:\(d.adminPort)", "--db", d.dbPath])
        XCTAssertEqual(downBytes.status, 0, downBytes.err)
        XCTAssertEqual(downBytes.out, Data((first + second).suffix(9)))
        let downLine = try vspc(["tail", "persist", "-n", "1", "--admin", "127.0.0.1:\(d.adminPort)", "--db", d.dbPath])
        XCTAssertEqual(downLine.status, 0, downLine.err)
        XCTAssertEqual(downLine.out, Data("login: ".utf8))
        // The default --db is vspcd.db in the working directory.
        let cwdDefault = try vspc(["tail", uuid, "--admin", "127.0.0.1:\(d.adminPort)"], cwd: d.directory)
        XCTAssertEqual(cwdDefault.status, 0, cwdDefault.err)
        XCTAssertEqual(cwdDefault.out, Data(first + second))

        // And the restarted daemon has it too.
        try await d.start()
        let afterKill = try vspc(["tail", uuid] + admin(d))
        XCTAssertEqual(afterKill.status, 0, afterKill.err)
        XCTAssertEqual(afterKill.out, Data(first + second))
    }

}

// MARK: - helpers

/// Runs `vspc` with raw stdout bytes (not decoded as text); killed after `timeout` seconds.
func vspc(_ arguments: [String], cwd: URL? = nil, timeout: Double = 60) throws -> ToolResult {
    try Daemon.runTool("vspc", arguments, cwd: cwd, timeout: timeout)
}

/// `vspc tail -f` running in the background, its stdout collected.
final class Follower: @unchecked Sendable {
    let process = Process()
    private let outBox = DataBox()
    private let errBox = DataBox()

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: Daemon.binary("vspc"))
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        for (pipe, box) in [(out, outBox), (err, errBox)] {
            let handle = pipe.fileHandleForReading
            Thread.detachNewThread {
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    box.append(chunk)
                }
            }
        }
    }

    var data: Data { outBox.value }
    var errorText: String { String(decoding: errBox.value, as: UTF8.self) }
    var isRunning: Bool { process.isRunning }

    func waitFor(count: Int, timeout: Double = 30) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while data.count < count {
            if Date() > deadline {
                throw SimError("tail -f: \(data.count) of \(count) bytes after \(timeout) s; running \(process.isRunning); stderr: \(errorText)")
            }
            try await Task.sleep(nanoseconds: 5_000_000)
        }
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}

/// The event kinds of `vspc history` text output ("yyyy-MM-dd HH:mm:ss  kind  ...", after a "# name uuid" header).
func historyKinds(_ text: String) -> [String] {
    text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
        let fields = line.components(separatedBy: "  ")
        return fields.count > 1 ? fields[1] : String(line)
    }
}

func decodeEvents(_ data: Data) throws -> [ConsoleEvent] {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return try decoder.decode([ConsoleEvent].self, from: data)
}

func isSubsequence(_ needle: [String], of haystack: [String]) -> Bool {
    var i = needle.startIndex
    for item in haystack where i < needle.endIndex && item == needle[i] { i += 1 }
    return i == needle.endIndex
}
