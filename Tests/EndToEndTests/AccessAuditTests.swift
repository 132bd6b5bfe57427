import Foundation
import VSPCCore
import VSPCSim
import VSPCStore
import XCTest

/// Issue 14, items 2 and 9, end to end: what a key holder and a person typing can make the daemon write.
extension ProxyGuardTests {
    /// Item 2: a person typing into a VM that does not read makes at most the VM connection's budget of lines
    /// (20 a minute), not one per read.
    func testTypingIntoAVMThatDoesNotReadLogsWithinTheBudget() async throws {
        let daemon = try await startDaemon(["--vm-stuck-timeout", "600"])
        let uuid = testUUID(2)
        let holder = try await vm(daemon, uuid, "not-reading-2")
        let person = try await SimulatedClient.connect(port: try await daemon.port(of: uuid))
        connections.append(person)
        try await daemon.waitForList("the person attached") { $0.first?.clients == 1 }
        _ = try await typeUntilBackedUp(daemon, holder, "not-reading-2", person)
        let chunk = [UInt8](repeating: UInt8(ascii: "t"), count: 64 * 1024)
        // 8 MiB more, in 64 KiB writes: well over a hundred reads, each of which used to log a line.
        for _ in 0..<8 {
            for _ in 0..<16 { person.send(chunk) }
            try await person.barrier(timeout: 60)
        }
        let lines = occurrences(of: "is not reading", in: daemon.log)
        XCTAssertGreaterThan(lines, 0)
        XCTAssertLessThanOrEqual(lines, 20, "at most the connection's budget a minute")
    }
}

extension SSHDoorTests {
    /// Item 9, with the real OpenSSH client: a user name built to look like another key's record stays one quoted
    /// field; a refusal for a VM the key may not reach is kept under that VM (`vspc history --refused`), and a
    /// key's refusals are bounded.
    func testRefusalsAreTypedFiledUnderTheVMAndBoundedPerKey() async throws {
        let mallory = try makeKey("ed25519", "mallory@laptop")
        let door = try await startDoor([try entry(mallory, options: "vms=\"db-*\"")])
        let vm = try await connectVM(door, testUUID(9), "web-9")
        let forged = "web-9 key=alice@ops SHA256:forged"
        let first = try sshRun(door, mallory, forged)
        XCTAssertEqual(first.status, 1)
        for _ in 0..<14 { XCTAssertEqual(try sshRun(door, mallory, "web-9").status, 1) }
        XCTAssertTrue(try sshRun(door, mallory, "web-9").text.hasPrefix("vspcd: no console web-9 for this key"),
                      "the person is told nothing more")

        // Ten a minute per key are recorded; the rest are counted.
        let store = try Store(path: door.daemon.dbPath, readOnly: true)
        let deadline = Date().addingTimeInterval(30)
        var refusals: [ConsoleEvent] = []
        while Date() < deadline {
            refusals = try store.events(uuid: nil).filter { $0.kind == .clientRefused }
            if refusals.count >= 10 { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        XCTAssertEqual(refusals.count, 10, "\(refusals.map(\.detail))")
        XCTAssertEqual(refusals.first?.user, forged)
        XCTAssertEqual(refusals.first?.keyComment, "mallory@laptop")
        XCTAssertEqual(refusals.first?.fingerprint, try mallory.fingerprint)
        XCTAssertEqual(refusals.first?.detail, "door=ssh user=\"\(forged)\" key=mallory@laptop \(try mallory.fingerprint)")
        XCTAssertNil(refusals.first?.uuid)
        XCTAssertEqual(refusals.dropFirst().first?.uuid, vm.uuid, "kept under the VM the name matched")

        // The VM's history leaves refusals out; --refused shows them, with their fields in --json.
        let plain = try Daemon.runTool("vspc", ["history", "web-9", "--db", door.daemon.dbPath])
        XCTAssertFalse(plain.text.contains("client-refused"), plain.text)
        let view = try Daemon.runTool("vspc", ["history", "web-9", "--db", door.daemon.dbPath, "--refused", "--json"])
        XCTAssertEqual(view.status, 0, view.err)
        let events = try decodeEvents(view.out)
        XCTAssertEqual(events.count, 9)
        XCTAssertTrue(events.allSatisfy { $0.kind == .clientRefused && $0.user == "web-9" && $0.door == "ssh" })
    }
}
