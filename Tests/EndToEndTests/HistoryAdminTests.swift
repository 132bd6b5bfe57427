import Foundation
import VSPCCore
import VSPCSim
import XCTest

/// End to end: `vspc history` asks the daemon at --admin (reading the database only with --db, or when the
/// daemon is down), with the same output either way.
final class HistoryAdminTests: XCTestCase {
    var daemons: [Daemon] = []

    override func tearDown() async throws {
        daemons.forEach { $0.cleanup() }
        daemons = []
    }

    func startDaemon() async throws -> Daemon {
        let d = try Daemon()
        daemons.append(d)
        try await d.start()
        return d
    }

    func admin(_ d: Daemon) -> [String] { ["--admin", "127.0.0.1:\(d.adminPort)"] }

    /// A folder without a database: a history that works there came from the daemon.
    func emptyFolder(_ d: Daemon) throws -> URL {
        let empty = d.directory.appendingPathComponent("no-db-here")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        return empty
    }

    /// The offline history once `kind` has been written.
    func offlineHistory(_ d: Daemon, _ vm: String, containing kind: String) async throws -> ToolResult {
        let deadline = Date().addingTimeInterval(30)
        while true {
            let r = try vspc(["history", vm, "--db", d.dbPath])
            if r.status == 0, historyKinds(r.text).contains(kind) { return r }
            if Date() > deadline { throw SimError("no \(kind) in \(vm)'s history: \(r.text) \(r.err)") }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
    }

    func testHistoryAsksTheDaemonWithTheSameOutput() async throws {
        let d = try await startDaemon()
        let uuid = testUUID(1101)
        let vm = try await SimulatedVM.connect(port: d.proxyPort, uuid: uuid, name: "asked-a")
        _ = try await d.port(of: uuid)
        vm.rename("asked-b")
        try await d.waitForList("renamed") { $0.first { $0.uuid == uuid }?.name == "asked-b" }
        vm.close()
        try await d.waitForList("VM down") { $0.first { $0.uuid == uuid }?.connected == false }
        _ = try await offlineHistory(d, "asked-b", containing: "vm-disconnect")
        let empty = try emptyFolder(d)

        for options in [[], ["--json"], ["--limit", "2"], ["--since", "1h"], ["--since", "2099-01-01"], ["--limit", "1", "--json"]] {
            let offline = try vspc(["history", "asked-b", "--db", d.dbPath] + options)
            let online = try vspc(["history", "asked-b"] + options + admin(d), cwd: empty)
            XCTAssertEqual(online.status, 0, "\(options): \(online.err)")
            XCTAssertEqual(online.out, offline.out, "\(options):\n\(online.text)\n---\n\(offline.text)")
            XCTAssertEqual(online.err, "", "\(options)")
        }
        let online = try vspc(["history", "asked-b"] + admin(d), cwd: empty)
        XCTAssertEqual(online.lines.first, "# asked-b \(UUIDSpelling.classic(uuid))")
        XCTAssertTrue(online.text.contains("name=asked-a"), online.text)
        // The old name, and the uuid, find it through the daemon too.
        XCTAssertEqual(try vspc(["history", "asked-a"] + admin(d), cwd: empty).out, online.out)
        XCTAssertEqual(try vspc(["history", UUIDSpelling.classic(uuid)] + admin(d), cwd: empty).out, online.out)

        let unknown = try vspc(["history", "no-such-vm"] + admin(d), cwd: empty)
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.err.contains("no VM matches"), unknown.err)
        XCTAssertTrue(unknown.err.contains("no-such-vm"), unknown.err)

        // The daemon down and no --db: ./vspcd.db, as before.
        try await d.stop()
        let dead = try freePort()
        let fallback = try vspc(["history", "asked-b", "--admin", "127.0.0.1:\(dead)"], cwd: d.directory)
        XCTAssertEqual(fallback.status, 0, fallback.err)
        XCTAssertEqual(fallback.out, online.out)
        let nowhere = try vspc(["history", "asked-b", "--admin", "127.0.0.1:\(dead)"], cwd: empty)
        XCTAssertNotEqual(nowhere.status, 0)
        XCTAssertTrue(nowhere.err.contains("not found"), nowhere.err)
    }

    /// A VM rebuilt under the same name (a new uuid; the old one keeps its port until it expires): while the
    /// new one is connected, `tail` and `history` mean it; with both down, they list both, online and offline.
    func testARebuiltVMIsTheConnectedOneElseBothAreListed() async throws {
        let d = try await startDaemon()
        let empty = try emptyFolder(d)
        let oldUUID = testUUID(1201), newUUID = testUUID(1202)
        let oldVM = try await SimulatedVM.connect(port: d.proxyPort, uuid: oldUUID, name: "rebuilt")
        let oldPort = try await d.port(of: oldUUID)
        oldVM.close()
        try await d.waitForList("the old VM down") { $0.first { $0.uuid == oldUUID }?.connected == false }
        let newVM = try await SimulatedVM.connect(port: d.proxyPort, uuid: newUUID, name: "rebuilt")
        let newPort = try await d.port(of: newUUID)
        XCTAssertNotEqual(oldPort, newPort)
        let client = try await SimulatedClient.connect(port: newPort)
        try await d.waitForList("a client on the new VM") { $0.first { $0.uuid == newUUID }?.clients == 1 }
        let text = Array("new console\r\n".utf8)
        newVM.output(text)
        try await client.waitForData(count: text.count, timeout: 30)

        let tail = try vspc(["tail", "rebuilt"] + admin(d))
        XCTAssertEqual(tail.status, 0, tail.err)
        XCTAssertEqual(Array(tail.out), text)
        let history = try vspc(["history", "rebuilt"] + admin(d), cwd: empty)
        XCTAssertEqual(history.status, 0, history.err)
        XCTAssertEqual(history.lines.first, "# rebuilt \(UUIDSpelling.classic(newUUID))")

        client.close()
        newVM.close()
        try await d.waitForList("the new VM down") { $0.first { $0.uuid == newUUID }?.connected == false }
        func assertListsBoth(_ r: ToolResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertNotEqual(r.status, 0, what, file: file, line: line)
            XCTAssertEqual(r.out.count, 0, what, file: file, line: line)
            let lines = r.err.components(separatedBy: "\n")
            XCTAssertEqual(lines.first, #"vspc: "rebuilt" is ambiguous; it names several consoles:"#, "\(what): \(r.err)",
                           file: file, line: line)
            for (uuid, port) in [(oldUUID, oldPort), (newUUID, newPort)] {
                let prefix = "  rebuilt  \(UUIDSpelling.classic(uuid))  port \(port)  last seen "
                XCTAssertTrue(lines.contains { $0.hasPrefix(prefix) }, "\(what): no \(prefix) in\n\(r.err)", file: file, line: line)
            }
        }
        assertListsBoth(try vspc(["tail", "rebuilt"] + admin(d)), "tail")
        assertListsBoth(try vspc(["history", "rebuilt"] + admin(d), cwd: empty), "history")
        assertListsBoth(try vspc(["history", "rebuilt", "--db", d.dbPath]), "history --db")
        // Issue 15 item 6: forget refuses in the same format (and forgets nothing).
        assertListsBoth(try vspc(["forget", "rebuilt"] + admin(d)), "forget")
        let stillBoth = try await d.list().filter { $0.name == "rebuilt" }
        XCTAssertEqual(stillBoth.count, 2)
        // Each is still found by its uuid.
        let byUUID = try vspc(["history", UUIDSpelling.classic(oldUUID)] + admin(d), cwd: empty)
        XCTAssertEqual(byUUID.lines.first, "# rebuilt \(UUIDSpelling.classic(oldUUID))", byUUID.err)

        try await d.stop()
        let dead = try freePort()
        assertListsBoth(try vspc(["tail", "rebuilt", "--admin", "127.0.0.1:\(dead)", "--db", d.dbPath]), "offline tail")
        assertListsBoth(try vspc(["history", "rebuilt", "--admin", "127.0.0.1:\(dead)"], cwd: d.directory), "offline history")
    }
}
