import Foundation
import VSPCClient
import VSPCCore
import VSPCSim
import VSPCStore
import XCTest

/// `vspc forget` and `vspc status`, against the real daemon.
final class ForgetStatusTests: DaemonTestCase {
    var daemon: Daemon!

    override func setUp() async throws {
        try await super.setUp()
        daemon = try await startDaemon()
    }

    private func vspc(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        try Daemon.run("vspc", arguments + ["--admin", "127.0.0.1:\(daemon.adminPort)"])
    }

    private func events(_ uuid: String) throws -> [ConsoleEvent] {
        try Store(path: daemon.dbPath, readOnly: true).events(uuid: uuid)
    }

    func testForgetADisconnectedVMFreesItsPortAndIsRecorded() async throws {
        let uuid = testUUID(1)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "gone-for-good")
        let port = try await daemon.port(of: uuid)
        vm.close()
        try await daemon.waitForList("VM down") { $0.first?.connected == false }

        let result = try vspc(["forget", "gone-for-good"])
        XCTAssertEqual(result.status, 0, result.err)
        XCTAssertEqual(result.out, "forgot gone-for-good (\(UUIDSpelling.classic(uuid))); port \(port) is free again\n")
        try await daemon.waitForList("assignment gone") { $0.isEmpty }
        let list = try vspc(["list"])
        XCTAssertEqual(list.out, "")
        var recorded: [ConsoleEvent] = []
        for _ in 0..<500 {
            recorded = try events(uuid)
            if recorded.contains(where: { $0.kind == "port-forgotten" }) { break }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        XCTAssertTrue(recorded.contains { $0.kind == "port-forgotten" && $0.detail == "port \(port), by vspc forget" },
                      "\(recorded.map { "\($0.kind)[\($0.detail ?? "")]" })")
        let history = try Daemon.run("vspc", ["history", uuid, "--db", daemon.dbPath])
        XCTAssertTrue(history.out.contains("port-forgotten"), history.out)

        // Unknown now.
        let again = try vspc(["forget", "gone-for-good"])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.err.contains("no VM matches"), again.err)
    }

    func testForgetAConnectedVMNeedsForceThenClosesIt() async throws {
        let uuid = testUUID(2)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "busy")
        defer { vm.close() }
        let port = try await daemon.port(of: uuid)
        let client = try await SimulatedClient.connect(port: port)
        defer { client.close() }
        try await daemon.waitForList("client") { $0.first?.clients == 1 }

        let refused = try vspc(["forget", "busy"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.err, "vspc: busy is connected; forgetting it would close its console (use --force)\n")
        let stillListed = try await daemon.list()
        XCTAssertEqual(stillListed.count, 1)
        XCTAssertFalse(vm.closed)

        let forced = try vspc(["forget", "busy", "--force"])
        XCTAssertEqual(forced.status, 0, forced.err)
        try await vm.waitForClose()
        try await client.waitForClose()
        try await daemon.waitForList("assignment gone") { $0.isEmpty }
        var recorded: [ConsoleEvent] = []
        for _ in 0..<500 {
            recorded = try events(uuid)
            if recorded.contains(where: { $0.kind == "port-forgotten" }) { break }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        XCTAssertTrue(recorded.contains { $0.kind == "port-forgotten" && ($0.detail ?? "").hasSuffix("--force") },
                      "\(recorded.map { "\($0.kind)[\($0.detail ?? "")]" })")
    }

    func testStatusForPeopleAndForScripts() async throws {
        let uuid = testUUID(3)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "counted")
        defer { vm.close() }
        let port = try await daemon.port(of: uuid)
        let client = try await SimulatedClient.connect(port: port)
        defer { client.close() }
        try await daemon.waitForList("client") { $0.first?.clients == 1 }

        let text = try vspc(["status"])
        XCTAssertEqual(text.status, 0, text.err)
        let lines = text.out.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.map { String($0.prefix(13)) },
                       ["daemon       ", "consoles     ", "people       ", "ports        ", "descriptors  ", "events       "])
        XCTAssertEqual(lines[1], "consoles     1 (1 connected, 0 in vMotion)")
        XCTAssertEqual(lines[2], "people       1 on telnet, 0 on ssh, 0 following with tail -f")
        XCTAssertEqual(lines[3], "ports        1 used / \(daemon.portRange.count - 1) free (range \(daemon.portRange.lowerBound)-\(daemon.portRange.upperBound))")
        XCTAssertTrue(lines[0].hasPrefix("daemon       vspcd "), lines[0])
        XCTAssertTrue(lines[0].contains(", up "), lines[0])

        let json = try vspc(["status", "--json"])
        let status = try JSONDecoder().decode(DaemonStatus.self, from: Data(json.out.utf8))
        XCTAssertEqual(status.consoles, 1)
        XCTAssertEqual(status.connected, 1)
        XCTAssertEqual(status.telnetClients, 1)
        XCTAssertEqual(status.portsUsed, 1)
        XCTAssertEqual(status.portsFree, daemon.portRange.count - 1)
        XCTAssertGreaterThan(status.descriptors, 0)
        XCTAssertGreaterThan(status.descriptorLimit, status.descriptors)
    }
}
