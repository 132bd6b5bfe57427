import Foundation
import VSPCCore
import VSPCClient
import VSPCSim
import VSPCStore
import XCTest

/// tail -f, replay, tail errors and retention.
extension HistoryTailTests {
    // MARK: 6. tail -f

    func testTailFollowStreamsLiveBytes() async throws {
        let d = try await startDaemon()
        let uuid = testUUID(601)
        let (vm, client) = try await connectVM(d, uuid: uuid, name: "follow")
        defer { vm.close(); client.close() }
        let backlog = Array("boot line 1\r\nboot line 2\r\n".utf8)
        try await output(vm, backlog, seenBy: client)

        let follower = try Follower(["tail", "-f", uuid] + admin(d))
        defer { follower.stop() }
        try await follower.waitFor(count: backlog.count)
        XCTAssertEqual(follower.data, Data(backlog))

        let live = [0x00, 0xFF, 0x11, 0xFF, 0xFF] + Array("live\r\n".utf8) + patternBytes(20000, seed: 61)
        try await output(vm, Array(live.prefix(5)), seenBy: client)
        try await output(vm, Array(live.dropFirst(5)), seenBy: client)
        try await follower.waitFor(count: backlog.count + live.count)
        XCTAssertEqual(follower.data, Data(backlog + live))
        XCTAssertTrue(follower.isRunning, "tail -f must keep following: \(follower.errorText)")
        follower.stop()

        // -n 1 -f: the backlog is cut to its last line; live bytes follow in full.
        try await output(vm, Array("\r\nlast line\r\n".utf8), seenBy: client)
        let lined = try Follower(["tail", "-n", "1", "-f", UUIDSpelling.classic(uuid)] + admin(d))
        defer { lined.stop() }
        let lastLine = Array("last line\r\n".utf8)
        // With -n, vspc holds the backlog until all of it has arrived and then prints its last lines in one
        // write: the first bytes printed are the whole backlog's output.
        try await lined.waitFor(count: lastLine.count)
        XCTAssertEqual(lined.data, Data(lastLine))
        let more = Array("more\r\n".utf8) + [0xFF, 0x00, 0x0A] + Array("and more\r\n".utf8)
        try await output(vm, more, seenBy: client)
        try await lined.waitFor(count: lastLine.count + more.count)
        XCTAssertEqual(lined.data, Data(lastLine + more))
    }

    // MARK: 7. replay

    func testReplayGivesANewClientTheLastBytes() async throws {
        let d = try await startDaemon(["--replay", "10"])
        let uuid = testUUID(701)
        let (vm, first) = try await connectVM(d, uuid: uuid, name: "replay")
        defer { vm.close(); first.close() }
        try await output(vm, Array("0123456789ABCDEFGHIJ".utf8), seenBy: first)
        let port = try await d.port(of: uuid)
        let late = try await SimulatedClient.connect(port: port)
        defer { late.close() }
        try await late.waitForData(count: 10)
        try await d.waitForList("two clients") { $0.first { $0.uuid == uuid }?.clients == 2 }
        try await late.barrier() // the replay came before the daemon's answer to it
        XCTAssertEqual(late.data, Array("ABCDEFGHIJ".utf8))
        vm.output("new")
        try await late.waitForData(count: 13)
        XCTAssertEqual(late.data, Array("ABCDEFGHIJnew".utf8))
    }

    func testNoReplayByDefault() async throws {
        let d = try await startDaemon()
        let uuid = testUUID(702)
        let (vm, first) = try await connectVM(d, uuid: uuid, name: "no-replay")
        defer { vm.close(); first.close() }
        try await output(vm, Array("0123456789ABCDEFGHIJ".utf8), seenBy: first)
        let port = try await d.port(of: uuid)
        let late = try await SimulatedClient.connect(port: port)
        defer { late.close() }
        try await d.waitForList("two clients") { $0.first { $0.uuid == uuid }?.clients == 2 }
        try await late.barrier() // a replay would have come before the daemon's answer to it
        XCTAssertEqual(late.data, [])
        vm.output("new")
        try await late.waitForData(count: 3)
        XCTAssertEqual(late.data, Array("new".utf8))
        // The scrollback itself still has everything.
        let tail = try vspc(["tail", uuid] + admin(d))
        XCTAssertEqual(tail.out, Data("0123456789ABCDEFGHIJnew".utf8))
    }

    // MARK: 8. tail errors

    func testTailOfAVMWithTwoSerialPortsAndALargeBacklog() async throws {
        let d = try await startDaemon(["--scrollback", "\(4 << 20)"])
        let uuid = testUUID(131)
        let (first, client1) = try await connectVM(d, uuid: uuid, name: "two-ports")
        defer { first.close(); client1.close() }
        let second = try await SimulatedVM.connect(port: d.proxyPort, uuid: uuid, name: "two-ports", serviceURI: "vSPC.py?port=com2")
        defer { second.close() }
        let port2 = try await d.port(of: uuid, label: "com2")
        let client2 = try await SimulatedClient.connect(port: port2)
        defer { client2.close() }
        try await d.waitForList("a client on com2") { $0.first { $0.label == "com2" }?.clients == 1 }
        // 3 MiB on the first port: more than any socket buffer, so a tail that closed early would cut it.
        let big = patternBytes(3 << 20, seed: 31)
        for chunk in stride(from: 0, to: big.count, by: 65536) { first.output(Array(big[chunk..<min(big.count, chunk + 65536)])) }
        try await client1.waitForData(count: big.count, timeout: 60)
        try await output(second, Array("com2 only\r\n".utf8), seenBy: client2)

        let plain = try vspc(["tail", "two-ports"] + admin(d))
        XCTAssertEqual(plain.status, 0, plain.err)
        XCTAssertEqual(plain.out.count, big.count)
        XCTAssertEqual(Array(plain.out), big, "without --label: the first serial port, whole")
        let labelled = try vspc(["tail", uuid, "--label", "com2"] + admin(d))
        XCTAssertEqual(labelled.status, 0, labelled.err)
        XCTAssertEqual(Array(labelled.out), Array("com2 only\r\n".utf8))
        let lines = try vspc(["tail", "two-ports", "-n", "1", "--label", "com2"] + admin(d))
        XCTAssertEqual(Array(lines.out), Array("com2 only\r\n".utf8))
    }

    func testTailErrors() async throws {
        let d = try await startDaemon()
        let uuid = testUUID(801)
        let vm = try await SimulatedVM.connect(port: d.proxyPort, uuid: uuid, name: "known")
        defer { vm.close() }
        _ = try await d.port(of: uuid)

        let unknown = try vspc(["tail", "no-such-vm"] + admin(d))
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.err.contains("no VM matches"), unknown.err)
        XCTAssertTrue(unknown.err.contains("no-such-vm"), unknown.err)
        XCTAssertEqual(unknown.out.count, 0)
        let unknownUUID = try vspc(["tail", testUUID(899)] + admin(d))
        XCTAssertNotEqual(unknownUUID.status, 0)
        XCTAssertTrue(unknownUUID.err.contains("no VM matches"), unknownUUID.err)

        // Daemon down and no database: a clear error; no database file appears.
        let deadPort = try freePort()
        let empty = d.directory.appendingPathComponent("empty-cwd")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let down = try vspc(["tail", uuid, "--admin", "127.0.0.1:\(deadPort)"], cwd: empty)
        XCTAssertNotEqual(down.status, 0)
        XCTAssertTrue(down.err.contains("cannot reach vspcd"), down.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: empty.appendingPathComponent("vspcd.db").path))
        let missing = d.directory.appendingPathComponent("absent.db").path
        let downMissing = try vspc(["tail", uuid, "--admin", "127.0.0.1:\(deadPort)", "--db", missing])
        XCTAssertNotEqual(downMissing.status, 0)
        XCTAssertTrue(downMissing.err.contains("cannot reach vspcd"), downMissing.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing))
        let follow = try vspc(["tail", "-f", uuid, "--admin", "127.0.0.1:\(deadPort)", "--db", d.dbPath])
        XCTAssertNotEqual(follow.status, 0)
        XCTAssertTrue(follow.err.contains("cannot reach vspcd"), follow.err)

        let both = try vspc(["tail", uuid, "-n", "1", "-c", "1"] + admin(d))
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.err.contains("-n") && both.err.contains("-c"), both.err)
    }

    // MARK: 9. retention

    func testEventRetentionByCount() async throws {
        let d = try await startDaemon()
        let uuid = testUUID(901)
        let (vm, client) = try await connectVM(d, uuid: uuid, name: "retained")
        client.close()
        let port = try await d.port(of: uuid)
        for _ in 0..<3 {
            let c = try await SimulatedClient.connect(port: port)
            try await d.waitForList("client") { $0.first { $0.uuid == uuid }?.clients == 1 }
            c.close()
            try await d.waitForList("no client") { $0.first { $0.uuid == uuid }?.clients == 0 }
        }
        vm.close()
        try await d.waitForList("VM down") { $0.first { $0.uuid == uuid }?.connected == false }
        try await d.stop()
        let before = try Store(path: d.dbPath, readOnly: true).events(uuid: nil)
        XCTAssertGreaterThan(before.count, 10, "\(before.map(\.kind.rawValue))")

        // Restarted with a count limit: pruned 5 s after start.
        d.extraArguments = ["--event-max-count", "5"]
        try await d.start()
        let store = try Store(path: d.dbPath, readOnly: true)
        var after: [ConsoleEvent] = []
        let deadline = Date().addingTimeInterval(20)
        while true {
            after = try store.events(uuid: nil)
            if after.count <= 5 { break }
            if Date() > deadline { XCTFail("never pruned to 5 events: \(after.count) left"); return }
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        XCTAssertEqual(after.count, 5, "\(after.map(\.kind.rawValue))")
        // The newest are kept: whatever is kept from before the restart is the newest of it.
        let beforeIDs = before.map(\.id)
        let keptOld = after.map(\.id).filter { beforeIDs.contains($0) }
        XCTAssertEqual(keptOld, Array(beforeIDs.suffix(keptOld.count)))
        XCTAssertEqual(after.last?.kind, "daemon-start", "\(after.map(\.kind.rawValue))")
        // vspc history reads what is left.
        let r = try vspc(["history", uuid, "--db", d.dbPath])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(historyKinds(r.text), after.filter { $0.uuid == uuid }.map(\.kind.rawValue))
    }
}
