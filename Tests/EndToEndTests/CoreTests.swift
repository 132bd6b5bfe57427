import Foundation
import VSPCCore
import VSPCClient
import VSPCSim
import VSPCStore
import XCTest

/// End to end: the real vspcd binary, simulated ESXi VMs, and telnet clients.
final class CoreTests: DaemonTestCase {
    var daemon: Daemon!

    override func setUp() async throws {
        try await super.setUp()
        daemon = try await startDaemon()
    }

    func testVMIsIdentifiedListedAndRecorded() async throws {
        let uuid = testUUID(1)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "web-01")
        defer { vm.close() }
        XCTAssertEqual(vm.knownSuboptions, VMwareCommand.supported)
        let port = try await daemon.port(of: uuid)
        XCTAssertTrue(daemon.portRange.contains(port))

        let result = try Daemon.run("vspc", ["list", "--admin", "127.0.0.1:\(daemon.adminPort)"])
        XCTAssertEqual(result.status, 0, result.err)
        XCTAssertEqual(result.out, "web-01:\(UUIDSpelling.classic(uuid)):\(port)\n")

        let json = try Daemon.run("vspc", ["list", "--json", "--admin", "127.0.0.1:\(daemon.adminPort)"])
        let infos = try JSONDecoder().decode([ConsoleInfo].self, from: Data(json.out.utf8))
        XCTAssertEqual(infos.count, 1)
        XCTAssertEqual(infos[0].uuid, uuid)
        XCTAssertTrue(infos[0].connected)
        XCTAssertTrue(infos[0].listening)

        let status = try Daemon.run("vspc", ["status", "--admin", "127.0.0.1:\(daemon.adminPort)"])
        XCTAssertEqual(status.status, 0, status.err)
        XCTAssertTrue(status.out.contains("consoles     1 (1 connected, 0 in vMotion)\n"), status.out)
        XCTAssertTrue(status.out.contains("ports        1 used / \(daemon.portRange.count - 1) free"), status.out)
        XCTAssertTrue(status.out.contains("descriptors  "), status.out)

        let table = try Daemon.run("vspc", ["list", "--table", "--admin", "127.0.0.1:\(daemon.adminPort)"])
        XCTAssertTrue(table.out.hasPrefix("NAME"), table.out)
        XCTAssertTrue(table.out.contains("web-01"), table.out)
        XCTAssertTrue(table.out.contains(" up "), table.out)

        // The assignment is in the database before it is listed.
        let store = try Store(path: daemon.dbPath, readOnly: true)
        XCTAssertEqual(try store.loadAssignments().map(\.port), [port])
        let kinds = try store.events(uuid: uuid).map(\.kind.rawValue)
        XCTAssertTrue(kinds.contains("vm-connect"), "\(kinds)")
        XCTAssertTrue(kinds.contains("port-assigned"), "\(kinds)")
    }

    func testMegabyteBothWaysByteExactWithTwoClients() async throws {
        let uuid = testUUID(2)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "db-01")
        defer { vm.close() }
        let port = try await daemon.port(of: uuid)
        let a = try await SimulatedClient.connect(port: port)
        let b = try await SimulatedClient.connect(port: port)
        defer { a.close(); b.close() }
        try await daemon.waitForList("two clients") { $0.first?.clients == 2 }

        let out = patternBytes(1 << 20, seed: 7)
        for chunk in stride(from: 0, to: out.count, by: 8192) {
            vm.output(Array(out[chunk..<min(out.count, chunk + 8192)]))
        }
        try await a.waitForData(count: out.count, timeout: 60)
        try await b.waitForData(count: out.count, timeout: 60)
        XCTAssertEqual(a.data, out)
        XCTAssertEqual(b.data, out)

        // Input from both clients reaches the VM, in order per client, byte-exact.
        let fromA = patternBytes(1 << 19, seed: 8)
        let fromB = patternBytes(1 << 19, seed: 9)
        for chunk in stride(from: 0, to: fromA.count, by: 4096) {
            a.send(Array(fromA[chunk..<min(fromA.count, chunk + 4096)]))
        }
        try await vm.waitForData(count: fromA.count, timeout: 60)
        XCTAssertEqual(vm.takeData(), fromA)
        for chunk in stride(from: 0, to: fromB.count, by: 4096) {
            b.send(Array(fromB[chunk..<min(fromB.count, chunk + 4096)]))
        }
        try await vm.waitForData(count: fromB.count, timeout: 60)
        XCTAssertEqual(vm.takeData(), fromB)
    }

    func testVMRebootKeepsPortAndClients() async throws {
        let uuid = testUUID(3)
        var vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "app-01")
        let port = try await daemon.port(of: uuid)
        let client = try await SimulatedClient.connect(port: port)
        defer { client.close() }
        try await daemon.waitForList("client attached") { $0.first?.clients == 1 }
        vm.output("before\r\n")
        try await client.waitForData(count: 8)
        vm.close()
        try await daemon.waitForList("VM down") { $0.first?.connected == false }
        XCTAssertFalse(client.closed, "the client must stay connected while the VM reboots")

        vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "app-01")
        defer { vm.close() }
        try await daemon.waitForList("VM up again") { $0.first?.connected == true }
        let portAfter = try await daemon.port(of: uuid)
        XCTAssertEqual(portAfter, port)
        vm.output("after\r\n")
        try await client.waitForData(count: 15)
        XCTAssertEqual(client.data, Array("before\r\nafter\r\n".utf8))
        client.send(Array("x".utf8))
        try await vm.waitForData(count: 1)
    }

    func testStaleConnectionIsReplacedByReconnect() async throws {
        // A short probe timeout: the silent connection is replaced once it has not answered for 1 s.
        let daemon = try await startDaemon(["--takeover-probe-timeout", "1"])
        let uuid = testUUID(4)
        let first = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "stale")
        let port = try await daemon.port(of: uuid)
        // Its host died: the connection is still open but answers nothing (not even the daemon's probe).
        first.freeze()
        let second = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "stale")
        defer { second.close() }
        try await first.waitForClose()
        let client = try await SimulatedClient.connect(port: port)
        defer { client.close() }
        try await daemon.waitForList("client") { $0.first?.clients == 1 }
        client.send([0x41])
        try await second.waitForData(count: 1)
    }

    func testDaemonRestartKeepsPortsAndReopensListeners() async throws {
        let uuids = (0..<5).map { testUUID(10 + $0) }
        var ports: [String: Int] = [:]
        for (i, uuid) in uuids.enumerated() {
            let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "vm-\(i)")
            ports[uuid] = try await daemon.port(of: uuid)
            vm.close()
        }
        try await daemon.stop()
        try await daemon.start()
        // Known VMs are listed (and their ports listen) before they reconnect.
        let listed = try await daemon.list()
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: listed.map { ($0.uuid, $0.port) }), ports)
        XCTAssertTrue(listed.allSatisfy { $0.listening && !$0.connected })
        let waiting = try await SimulatedClient.connect(port: ports[uuids[0]]!)
        defer { waiting.close() }
        try await daemon.waitForList("a person waiting") { $0.first { $0.uuid == uuids[0] }?.clients == 1 }
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuids[0], name: "vm-0")
        defer { vm.close() }
        let portAfter = try await daemon.port(of: uuids[0])
        XCTAssertEqual(portAfter, ports[uuids[0]])
        vm.output("hello")
        try await waiting.waitForData(count: 5)
        XCTAssertEqual(waiting.data, Array("hello".utf8))
    }

    func testKill9RightAfterListingKeepsAllPorts() async throws {
        var vms: [SimulatedVM] = []
        let salt = UInt32.random(in: 0...UInt32.max)
        for i in 0..<100 {
            vms.append(try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(i, salt), name: "k-\(i)"))
        }
        // Listed and saved (a port listed before the disk has it is marked unsaved).
        let listed = try await daemon.waitForList("100 VMs saved") { $0.count == 100 && $0.allSatisfy { $0.saved != false } }
        try await daemon.kill9()
        vms.forEach { $0.close() }
        try await daemon.start()
        let after = try await daemon.list()
        XCTAssertEqual(Set(after.map { "\($0.uuid):\($0.port)" }), Set(listed.map { "\($0.uuid):\($0.port)" }))
    }

    func testFiveHundredVMsGetDistinctPorts() async throws {
        let bigDaemon = try await startDaemon(portRangeSize: 600)
        let salt = UInt32.random(in: 0...UInt32.max)
        let vms = try await withThrowingTaskGroup(of: SimulatedVM.self) { group in
            for i in 0..<500 {
                group.addTask {
                    try await SimulatedVM.connect(port: bigDaemon.proxyPort, uuid: testUUID(i, salt), name: "fleet-\(i)")
                }
            }
            var all: [SimulatedVM] = []
            for try await vm in group { all.append(vm) }
            return all
        }
        defer { vms.forEach { $0.close() } }
        let listed = try await bigDaemon.waitForList("500 VMs", timeout: 60) { $0.count == 500 }
        XCTAssertEqual(Set(listed.map(\.port)).count, 500)
        XCTAssertTrue(listed.allSatisfy { bigDaemon.portRange.contains($0.port) && $0.connected })
    }

    func testPlainTelnetClientOnProxyPortIsRejected() async throws {
        let peer = try await RawPeer.connect(port: daemon.proxyPort)
        try await peer.wait("the server's opening") { peer.raw.count >= 18 }
        XCTAssertEqual(Array(peer.raw.prefix(18)), VMLinkStateMachine.opening)
        // What a telnet client answers: it won't do the VMware extension.
        peer.write(raw: [0xFF, 0xFC, 0xE8] + Array("hello\r\n".utf8))
        try await peer.waitForClose()
        let text = String(decoding: peer.raw.dropFirst(18), as: UTF8.self)
        XCTAssertTrue(text.contains("telnet to the VM's own port"), text)
        // The daemon keeps serving.
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(20), name: "after-plain")
        defer { vm.close() }
        _ = try await daemon.port(of: vm.uuid)
    }

    func testGarbageAndTruncatedSubnegotiationsSurvive() async throws {
        var rng = SystemRandomNumberGenerator()
        for round in 0..<5 {
            var junk = (0..<20000).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if round == 0 { junk = [0xFF, 0xFA, 0xE8, 0x50] + [UInt8](repeating: 0x41, count: 100_000) } // endless SB
            if round == 1 { junk = [0xFF, 0xFB, 0xE8, 0xFF, 0xFA, 0xE8, 0x46, 0x53] }                    // truncated DO-PROXY
            if round == 2 { junk = [0xFF, 0xFA, 0xE8, 0x52, 0xFF, 0xFD, 0x01, 0xFF, 0xF0, 0xFF, 0xFA] }  // IAC DO inside SB
            // Sent, then closed; the daemon has read it all once it closes the connection in turn.
            try sendAndAwaitClose(port: daemon.proxyPort, junk)
        }
        // A VM that sends a truncated subnegotiation mid-session, then carries on.
        let uuid = testUUID(21)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "survivor")
        defer { vm.close() }
        let port = try await daemon.port(of: uuid)
        let client = try await SimulatedClient.connect(port: port)
        defer { client.close() }
        try await daemon.waitForList("client") { $0.first { $0.uuid == uuid }?.clients == 1 }
        vm.write(raw: [0xFF, 0xFA, 0xE8, 0x54, 0x01, 0x02] + [0xFF, 0xF0] + Array("ok".utf8))
        vm.write(raw: VMwareCommand.message(86, [1, 2, 3]))
        try await client.waitForData(count: 2)
        XCTAssertEqual(client.data, Array("ok".utf8))
        try await vm.wait("UNKNOWN-SUBOPTION-RCVD-2 for 84 and 86") { vm.unknownSuboptions.contains(84) && vm.unknownSuboptions.contains(86) }
        let listed = try await daemon.list()
        XCTAssertTrue(listed.contains { $0.uuid == uuid && $0.connected })
    }

    func testClientThatStopsReadingIsDroppedAlone() async throws {
        let small = try await startDaemon(["--scrollback", "0"])
        let uuid = testUUID(22)
        let vm = try await SimulatedVM.connect(port: small.proxyPort, uuid: uuid, name: "chatty")
        defer { vm.close() }
        let port = try await small.port(of: uuid)
        // A client that never reads: a raw socket whose receive window fills.
        let stuck = try StuckSocket(port: port)
        defer { stuck.close() }
        let good = try await SimulatedClient.connect(port: port)
        defer { good.close() }
        try await small.waitForList("two clients") { $0.first?.clients == 2 }
        let chunk = [UInt8](repeating: 0x55, count: 64 * 1024)
        var sent = 0
        // Up to 16 MiB: beyond the 1 MiB per-client bound plus whatever the kernel buffers for the stuck socket.
        for i in 1...256 {
            vm.output(chunk)
            sent += chunk.count
            try await good.waitForData(count: sent, timeout: 30)
            if i % 16 == 0, try await small.list().first?.clients == 1 { break }
        }
        try await small.waitForList("the stuck client dropped", timeout: 30) { $0.first?.clients == 1 }
        XCTAssertEqual(good.data.count, sent)
        XCTAssertTrue(small.log.contains("stopped reading"), small.log)
    }

    func testTakenPortIsSkippedForNewVM() async throws {
        // Occupy the first port of the range with another process's listener.
        let blocker = try StuckSocket(listenOn: daemon.portRange.lowerBound)
        defer { blocker.close() }
        let uuid = testUUID(23)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "skipper")
        defer { vm.close() }
        let port = try await daemon.port(of: uuid)
        XCTAssertNotEqual(port, daemon.portRange.lowerBound)
        let vms = try await daemon.list()
        XCTAssertTrue(vms[0].listening)
    }

    func testIdleAssignmentExpiresAndPortReturnsToPool() async throws {
        let quick = try await startDaemon(portRangeSize: 1, ["--vm-expire-time", "1"])
        let first = testUUID(40)
        let vm = try await SimulatedVM.connect(port: quick.proxyPort, uuid: first, name: "short-lived")
        let port = try await quick.port(of: first)
        // Connected VMs never expire: wait for an expiry sweep that runs well over the 1 s expiry time after
        // the VM connected (each sweep refreshes the saved last-seen time of the consoles in use).
        let saved = try Store(path: quick.dbPath, readOnly: true)
        try await waitUntil("an expiry sweep 1.5 s after the VM connected") {
            guard let a = try saved.loadAssignments().first(where: { $0.uuid == first }) else { return false }
            return a.lastSeen.timeIntervalSince(a.createdAt) > 1.5
        }
        let stillListed = try await quick.list()
        XCTAssertEqual(stillListed.map(\.uuid), [first])
        vm.close()
        try await quick.waitForList("the assignment to expire", timeout: 10) { $0.isEmpty }
        // The range has one port: the next VM gets it.
        let second = testUUID(41)
        let next = try await SimulatedVM.connect(port: quick.proxyPort, uuid: second, name: "next")
        defer { next.close() }
        let secondPort = try await quick.port(of: second)
        XCTAssertEqual(secondPort, port)
        let store = try Store(path: quick.dbPath, readOnly: true)
        try await vm.wait("port-expired event") { ((try? store.events(uuid: first)) ?? []).contains { $0.kind == "port-expired" } }
    }

    /// Idle time counts from when the VM was last seen, not from the daemon's start: a daemon restarted more
    /// often than --vm-expire-time still expires dead VMs.
    func testIdleTimeSurvivesARestart() async throws {
        let quick = try await startDaemon(["--vm-expire-time", "3"])
        let uuid = testUUID(42)
        let vm = try await SimulatedVM.connect(port: quick.proxyPort, uuid: uuid, name: "gone")
        _ = try await quick.port(of: uuid)
        vm.close()
        try await quick.waitForList("VM down") { $0.first?.connected == false }
        try await quick.stop()
        // Down until the VM was last seen more than 3 s ago.
        let assignment = try Store(path: quick.dbPath, readOnly: true).loadAssignments().first { $0.uuid == uuid }
        guard let lastSeen = assignment?.lastSeen else { throw SimError("no saved assignment for \(uuid)") }
        try await waitUntil("the VM last seen 3.5 s ago") { Date().timeIntervalSince(lastSeen) > 3.5 }
        try await quick.start()
        // Already idle for longer than 3 s: expired at the first sweep (within a second), not 3 s after start.
        try await quick.waitForList("the assignment to expire", timeout: 2) { $0.isEmpty }
    }

    func testNewVMsAreRefusedCleanlyNearTheDescriptorLimit() async throws {
        let limited = try makeDaemon()
        limited.openFileLimit = 100
        try await limited.start()
        // 100 descriptors, 64 kept in reserve, a few in use by the daemon itself: room for well under 30 VMs.
        let salt = UInt32.random(in: 0...UInt32.max)
        var accepted: [SimulatedVM] = []
        var refused = 0
        for i in 0..<30 {
            do {
                accepted.append(try await SimulatedVM.connect(port: limited.proxyPort, uuid: testUUID(i, salt), name: "fd-\(i)"))
            } catch {
                refused += 1
            }
        }
        defer { accepted.forEach { $0.close() } }
        XCTAssertGreaterThan(refused, 0)
        XCTAssertGreaterThan(accepted.count, 0)
        XCTAssertTrue(limited.log.contains("open-file limit nearly reached"), limited.log)
        // The daemon keeps serving the VMs it took.
        let listed = try await limited.waitForList("accepted VMs listed") { $0.count == accepted.count }
        XCTAssertTrue(listed.allSatisfy { $0.connected && $0.listening })
        let client = try await SimulatedClient.connect(port: listed[0].port)
        defer { client.close() }
        try await limited.waitForList("client") { $0.contains { $0.clients == 1 } }
    }

    func testKnownPortTakenAtRestartIsReportedAndOthersServed() async throws {
        let a = testUUID(50), b = testUUID(51)
        for (uuid, name) in [(a, "held"), (b, "free")] {
            let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: name)
            _ = try await daemon.port(of: uuid)
            vm.close()
        }
        let ports = Dictionary(uniqueKeysWithValues: try await daemon.list().map { ($0.uuid, $0.port) })
        try await daemon.stop()
        let blocker = try StuckSocket(listenOn: ports[a]!)
        defer { blocker.close() }
        try await daemon.start()
        let listed = try await daemon.list()
        XCTAssertEqual(listed.first { $0.uuid == a }?.port, ports[a], "the assignment is kept")
        XCTAssertEqual(listed.first { $0.uuid == a }?.listening, false)
        XCTAssertNotNil(listed.first { $0.uuid == a }?.listenError, "the reason is reported")
        XCTAssertNil(listed.first { $0.uuid == b }?.listenError)
        XCTAssertEqual(listed.first { $0.uuid == b }?.listening, true)
        XCTAssertTrue(daemon.log.contains("cannot listen on 127.0.0.1:\(ports[a]!)"), daemon.log)
        // Issue 15 item 5: in plain words, SwiftNIO's own at debug level only.
        XCTAssertTrue(daemon.log.contains("another process already listens there"), daemon.log)
        XCTAssertEqual(daemon.log.split(separator: "\n").filter { !$0.hasPrefix("<7>") && $0.contains("errno") }, [], daemon.log)
        // Issue 15 item 7: `vspc status` notes the port held by another process.
        let status = try vspc(["status", "--admin", daemon.adminArgument])
        XCTAssertTrue(status.text.contains("; 1 not listening: another process holds the port"), status.text + status.err)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: b, name: "free")
        defer { vm.close() }
        let client = try await SimulatedClient.connect(port: ports[b]!)
        defer { client.close() }
        try await daemon.waitForList("client on the free VM") { $0.first { $0.uuid == b }?.clients == 1 }
        vm.output("still serving")
        try await client.waitForData(count: 13)
    }

    func testGarbageFromAPersonOnAVMPortCostsOnlyThatConnection() async throws {
        let uuid = testUUID(60)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "target")
        defer { vm.close() }
        let port = try await daemon.port(of: uuid)
        let good = try await SimulatedClient.connect(port: port)
        defer { good.close() }
        var rng = SystemRandomNumberGenerator()
        // Random bytes, then a subnegotiation that never ends; then closed. The daemon has read it all once it
        // closes the connection in turn.
        try sendAndAwaitClose(port: port, (0..<50_000).map { _ in UInt8.random(in: 0...255, using: &rng) } + [0xFF, 0xFA, 0x18]
            + [UInt8](repeating: 0x41, count: 100_000))
        _ = vm.takeData()
        good.send(Array("still here".utf8))
        try await vm.wait("the good client's input") { vm.data.suffix(10) == Array("still here".utf8) }
        vm.output("and back")
        try await good.wait("output") { good.data.suffix(8) == Array("and back".utf8) }
    }

    func testBadDaemonArgumentsAreClearErrors() throws {
        let cases: [([String], String)] = [
            (["--port-range-start", "70000"], "--port-range-start"),
            (["--port-range-start", "30000", "--port-range-end", "29999"], "start <= end"),
            (["--proxy", "nonsense"], "--proxy must be [host]:port"),
            (["--ssl"], "--ssl needs --ssl-cert"),
            (["--vm-expire-time", "inf"], "--vm-expire-time"),
            (["--replay", "100", "--scrollback", "10"], "--replay"),
            (["--no-such-flag"], "Unknown option"),
        ]
        for (arguments, message) in cases {
            let result = try Daemon.runTool("vspcd", arguments + ["--db", daemon.directory.appendingPathComponent("bad.db").path])
            XCTAssertNotEqual(result.status, 0, "\(arguments)")
            XCTAssertTrue(result.err.contains(message), "\(arguments): \(result.err)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemon.directory.appendingPathComponent("bad.db").path))
    }

    func testListWithoutDaemonFailsClearly() throws {
        let port = try freePort()
        let result = try Daemon.run("vspc", ["list", "--admin", "127.0.0.1:\(port)"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.err.contains("cannot reach vspcd"), result.err)
        XCTAssertTrue(result.out.isEmpty)
    }

    func testAdminEndpointRejectsGarbage() async throws {
        let peer = try await RawPeer.connect(port: daemon.adminPort)
        peer.write(raw: Array("this is not json\n".utf8))
        try await peer.waitForClose()
        XCTAssertTrue(String(decoding: peer.raw, as: UTF8.self).contains("\"ok\":false"))
        let long = try await RawPeer.connect(port: daemon.adminPort)
        long.write(raw: [UInt8](repeating: 0x7B, count: 100_000))
        try await long.waitForClose()
        XCTAssertTrue(String(decoding: long.raw, as: UTF8.self).contains("longer than"), String(decoding: long.raw, as: UTF8.self))
        let wrongVersion = try await RawPeer.connect(port: daemon.adminPort)
        wrongVersion.write(raw: Array("{\"version\":99,\"command\":\"list\"}\n".utf8))
        try await wrongVersion.waitForClose()
        XCTAssertTrue(String(decoding: wrongVersion.raw, as: UTF8.self).contains("unsupported protocol version"))
        _ = try await daemon.list()
    }
}
