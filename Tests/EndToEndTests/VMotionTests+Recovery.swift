import Foundation
import VSPCCore
import VSPCClient
import VSPCSim
import VSPCStore
import XCTest

/// vMotion: expiry, sources that close, several serial ports, scale, renames and refused service URIs.
extension VMotionTests {
    // MARK: - 8. the destination never arrives

    func testPendingMigrationExpiresHeldInputGoesToSourceAndVMCanMigrateAgain() async throws {
        let daemon = try await startDaemon(["--vmotion-timeout", "1"])
        let uuid = testUUID(108)
        let (source, client, port) = try await vmWithClient(daemon, uuid, name: "stranded")
        defer { source.close(); client.close() }

        _ = try await goahead(source, [0x0A, 0x0B, 0x0C, 0x0D])
        let held: [UInt8] = Array("typed while waiting".utf8) + [0xFF]
        client.send(held)
        try await barrier(client, source)
        XCTAssertEqual(source.data, [])

        let events = try await waitForEvents(daemon, uuid: uuid, "vmotion-expired") { $0.contains { $0.kind == "vmotion-expired" } }
        XCTAssertTrue(inOrder(events.map(\.kind.rawValue), ["vmotion-begin", "vmotion-goahead", "vmotion-expired"]), "\(events.map(\.kind.rawValue))")
        try await source.waitForData(count: held.count)
        try await barrier(client, source)
        XCTAssertEqual(source.takeData(), held, "held input goes to the source after expiry, exactly once")
        XCTAssertFalse(source.closed)
        let listed = try await info(daemon, uuid)
        XCTAssertEqual(listed?.migrating, false)
        XCTAssertEqual(listed?.connected, true)
        XCTAssertEqual(listed?.port, port)

        // The VM can migrate again.
        let reply = try await source.beginVMotion(sequence: [0x0E, 0x0F, 0x10, 0x11])
        guard case .goahead(let secret) = reply else { return XCTFail("a new BEGIN after expiry got \(reply)") }
        XCTAssertEqual(secret.count, 8)
        source.abortVMotion()
        source.output("fine\r\n")
        try await client.waitForData(count: 6)
        XCTAssertEqual(client.data, Array("fine\r\n".utf8))
    }

    // MARK: - 9. the source closes without ABORT and no destination comes

    func testSourceClosedWithoutAbortExpiresAndVMReconnectsFreshOnItsPort() async throws {
        let daemon = try await startDaemon(["--vmotion-timeout", "1"])
        let uuid = testUUID(109)
        let (source, client, port) = try await vmWithClient(daemon, uuid, name: "vanished")
        defer { client.close() }

        _ = try await goahead(source, [0x21, 0x22, 0x23, 0x24])
        source.close()
        try await daemon.waitForList("VM down") { $0.first { $0.uuid == uuid }?.connected == false }
        XCTAssertFalse(client.closed)
        try await waitForEvents(daemon, uuid: uuid, "vmotion-expired") { $0.contains { $0.kind == "vmotion-expired" } }
        let down = try await daemon.waitForList("migration dropped") { $0.first { $0.uuid == uuid }?.migrating == false }
        XCTAssertEqual(down.first { $0.uuid == uuid }?.port, port)

        // The VM comes back with a fresh DO-PROXY and keeps its port.
        let fresh = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "vanished")
        defer { fresh.close() }
        XCTAssertEqual(fresh.proxyReply, Code.willProxy)
        let up = try await daemon.waitForList("VM up") { $0.first { $0.uuid == uuid }?.connected == true }
        XCTAssertEqual(up.first { $0.uuid == uuid }?.port, port)
        fresh.output("back\r\n")
        try await client.waitForData(count: 6)
        XCTAssertEqual(client.data, Array("back\r\n".utf8))
        client.send(Array("z".utf8))
        try await fresh.waitForData(count: 1)
        XCTAssertEqual(fresh.data, Array("z".utf8))

        let events = try await waitForEvents(daemon, uuid: uuid, "disconnect, expiry and reconnect") {
            self.inOrder($0.map(\.kind.rawValue), ["vm-connect", "vmotion-begin", "vmotion-goahead", "vmotion-source-closed",
                                          "vmotion-expired", "vm-disconnect", "vm-connect"])
        }
        XCTAssertTrue(events.contains { $0.kind == "vm-disconnect" && ($0.detail ?? "").contains("vMotion") }, "\(events.map { "\($0.kind)[\($0.detail ?? "")]" })")

        // And it can migrate again.
        let dest = try await fresh.migrate(port: daemon.proxyPort)
        defer { dest.close() }
        dest.output("x")
        try await client.waitForData(count: 7)
    }

    func testSourceReconnectingAfreshDuringPendingMigrationDropsIt() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(1091)
        let (source, client, port) = try await vmWithClient(daemon, uuid, name: "rebooter")
        defer { client.close() }
        let seq: [UInt8] = [0x31, 0x32, 0x33, 0x34]
        let secret = try await goahead(source, seq)
        client.send(Array("typed".utf8)) // held: a migration is pending
        try await barrier(client)
        source.close()
        try await daemon.waitForList("VM down") { $0.first { $0.uuid == uuid }?.connected == false }
        let fresh = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "rebooter")
        defer { fresh.close() }
        // What was typed during the dropped migration reaches the VM once it is back.
        try await fresh.waitForData(count: 5)
        XCTAssertEqual(fresh.takeData(), Array("typed".utf8))
        XCTAssertTrue(source.data.isEmpty)
        let up = try await daemon.waitForList("VM up, migration dropped") {
            $0.first { $0.uuid == uuid }.map { $0.connected && !$0.migrating } ?? false
        }
        XCTAssertEqual(up.first { $0.uuid == uuid }?.port, port)
        let events = try await waitForEvents(daemon, uuid: uuid, "vmotion-expired") { $0.contains { $0.kind == "vmotion-expired" } }
        // The source closed with no destination: the migration ended then, not at the fresh reconnect.
        XCTAssertTrue(events.contains { $0.kind == "vmotion-expired" && ($0.detail ?? "").contains("source closed with no destination") },
                      "\(events.map { "\($0.kind)[\($0.detail ?? "")]" })")
        // A new migration works.
        let dest = try await fresh.migrate(port: daemon.proxyPort)
        defer { dest.close() }
        dest.output("hi")
        try await client.waitForData(count: 2)
        XCTAssertEqual(client.data, Array("hi".utf8))
        // The dropped migration's cookie no longer works, and trying it does not disturb the VM.
        let late = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "rebooter",
                                                 role: .destination(sequence: seq, secret: secret))
        defer { late.close() }
        XCTAssertNil(late.peerAccepted)
        XCTAssertEqual(wireFrames(late.raw, command: Code.unknownSuboptionRcvd2), [[0xFF, 0xFA, 0xE8, 0x03, 0x2C, 0xFF, 0xF0]])
        try await barrier(late, dest)
        XCTAssertFalse(dest.closed, "a rejected VMOTION-PEER displaced the VM's connection")
        dest.output("!")
        try await client.waitForData(count: 3)
        XCTAssertEqual(client.data, Array("hi!".utf8))
    }

    // MARK: - 10. the source closes before COMPLETE

    func testSourceClosingBeforeCompleteStillCompletesWithoutLoss() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(110)
        let (source, client, port) = try await vmWithClient(daemon, uuid, name: "racer")
        defer { source.close(); client.close() }

        let counting = (0x20...0x7E).map { UInt8($0) }
        for b in counting[0..<32] { source.output([b]) }
        let seq = [0x41, 0x42, 0x43, 0x44] as [UInt8]
        let secret = try await goahead(source, seq)
        let dest = try await destination(daemon, uuid, name: "racer", sequence: seq, secret: secret)
        defer { dest.close() }
        let typed = Array("typed".utf8)
        client.send(typed)

        // The source's close is processed before the COMPLETE.
        source.close()
        try await daemon.waitForList("source gone") { $0.first { $0.uuid == uuid }?.connected == false }
        dest.completeVMotion(sequence: seq)
        for b in counting[32..<64] { dest.output([b]) }
        try await client.waitForData(count: 64)
        try await dest.waitForData(count: typed.count)
        XCTAssertTrue(dest.unknownSuboptions.isEmpty, "COMPLETE was rejected")
        XCTAssertEqual(dest.data, typed)
        XCTAssertEqual(source.data, [])

        // Second migration: source close and COMPLETE leave at the same instant.
        let seq2 = [0x51, 0x52, 0x53, 0x54] as [UInt8]
        let secret2 = try await goahead(dest, seq2)
        let dest2 = try await destination(daemon, uuid, name: "racer", sequence: seq2, secret: secret2)
        defer { dest2.close() }
        dest.close()
        dest2.completeVMotion(sequence: seq2)
        for b in counting[64...] { dest2.output([b]) }
        try await client.waitForData(count: counting.count)
        try await barrier(dest2, client)
        XCTAssertEqual(client.data, counting, "no loss, no duplication")
        XCTAssertFalse(client.closed)
        XCTAssertTrue(dest2.unknownSuboptions.isEmpty, "COMPLETE was rejected")
        let vm = try await daemon.waitForList("on the second destination") {
            $0.first { $0.uuid == uuid }.map { $0.connected && !$0.migrating } ?? false
        }
        XCTAssertEqual(vm.first { $0.uuid == uuid }?.port, port)
        try await waitForEvents(daemon, uuid: uuid, "two vmotion-complete") { $0.filter { $0.kind == "vmotion-complete" }.count == 2 }
    }

    // MARK: - 11. events

    func testSuccessfulMigrationRecordsEventsInOrderWithPeers() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(111)
        let source = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "audited")
        defer { source.close() }
        _ = try await daemon.port(of: uuid)
        let sourcePeer = try await info(daemon, uuid)?.peer
        XCTAssertNotNil(sourcePeer)
        let dest = try await source.migrate(port: daemon.proxyPort, sequence: [0x61, 0x62, 0x63, 0x64])
        defer { dest.close() }
        let after = try await daemon.waitForList("on destination") {
            $0.first { $0.uuid == uuid }.map { $0.connected && !$0.migrating && $0.peer != sourcePeer } ?? false
        }
        let destPeer = after.first { $0.uuid == uuid }?.peer
        XCTAssertNotNil(destPeer)

        let wanted = ["vmotion-begin", "vmotion-goahead", "vmotion-peer", "vmotion-complete"]
        let events = try await waitForEvents(daemon, uuid: uuid, "the vMotion events") { e in wanted.allSatisfy { k in e.contains { $0.kind.rawValue == k } } }
        let vmotion = events.filter { wanted.contains($0.kind.rawValue) }
        XCTAssertEqual(vmotion.map(\.kind.rawValue), wanted, "\(events.map(\.kind.rawValue))")
        guard vmotion.count == 4 else { return }
        XCTAssertEqual(vmotion[0].peer, sourcePeer)
        XCTAssertEqual(vmotion[1].peer, sourcePeer)
        XCTAssertEqual(vmotion[2].peer, destPeer)
        XCTAssertEqual(vmotion[3].peer, destPeer)
        XCTAssertTrue(vmotion.allSatisfy { $0.uuid == uuid && $0.name == "audited" })
        XCTAssertTrue(vmotion.allSatisfy { ($0.peer ?? "").hasPrefix("127.0.0.1:") }, "\(vmotion.map(\.peer))")
        XCTAssertTrue(zip(vmotion, vmotion.dropFirst()).allSatisfy { $0.time <= $1.time })
        let detail = vmotion[3].detail ?? ""
        XCTAssertNotNil(detail.range(of: #"[0-9]+(\.[0-9]+)? ms"#, options: .regularExpression), detail)
        XCTAssertTrue((vmotion[0].detail ?? "").contains("61626364"), vmotion[0].detail ?? "")
    }

    // MARK: - 12. several serial ports per VM

    func testSeveralSerialPortsPerVMHaveTheirOwnStablePorts() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(112)
        var (com1, client1, port1) = try await vmWithClient(daemon, uuid, name: "twin")
        var (com2, client2, port2) = try await vmWithClient(daemon, uuid, name: "twin", serviceURI: "vSPC.py?port=com2", label: "com2")
        defer { com1.close(); com2.close(); client1.close(); client2.close() }
        XCTAssertNotEqual(port1, port2)
        XCTAssertFalse(com1.closed, "the second serial port replaced the first one's connection")

        let listed = try await daemon.list()
        XCTAssertEqual(listed.count, 2)
        XCTAssertEqual(Set(listed.map(\.label)), ["", "com2"])
        XCTAssertTrue(listed.allSatisfy { $0.uuid == uuid && $0.connected && $0.name == "twin" })
        let text = try Daemon.run("vspc", ["list", "--admin", "127.0.0.1:\(daemon.adminPort)"])
        XCTAssertEqual(text.status, 0, text.err)
        let classic = UUIDSpelling.classic(uuid)
        XCTAssertEqual(text.out, "twin:\(classic):\(port1)\ntwin#com2:\(classic):\(port2)\n")

        // Each port carries only its own serial port's bytes, both ways.
        try await checkSeparation(com1, client1, com2, client2, "1")

        // A daemon restart keeps both ports.
        try await daemon.stop()
        com1.close(); com2.close(); client1.close(); client2.close()
        try await daemon.start()
        let restarted = try await daemon.list()
        XCTAssertEqual(Set(restarted.map { "\($0.label):\($0.port)" }), [":\(port1)", "com2:\(port2)"])
        XCTAssertTrue(restarted.allSatisfy { $0.listening && !$0.connected })
        com2 = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "twin", serviceURI: "vSPC.py?port=com2")
        com1 = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "twin")
        let again1 = try await daemon.port(of: uuid)
        let again2 = try await daemon.port(of: uuid, label: "com2")
        XCTAssertEqual(again1, port1)
        XCTAssertEqual(again2, port2)
        client1 = try await SimulatedClient.connect(port: port1)
        client2 = try await SimulatedClient.connect(port: port2)
        try await daemon.waitForList("both clients") { $0.allSatisfy { $0.clients == 1 && $0.connected } }
        try await checkSeparation(com1, client1, com2, client2, "2")

        // Migrating com2 does not disturb com1.
        let com1Peer = try await info(daemon, uuid)?.peer
        let moved = try await com2.migrate(port: daemon.proxyPort)
        com2 = moved
        let afterMove = try await daemon.waitForList("com2 migrated") {
            $0.first { $0.label == "com2" }.map { $0.connected && !$0.migrating } ?? false
        }
        XCTAssertFalse(com1.closed)
        XCTAssertEqual(afterMove.first { $0.label == "" }?.peer, com1Peer)
        XCTAssertEqual(afterMove.first { $0.label == "" }?.connected, true)
        XCTAssertEqual(afterMove.first { $0.label == "com2" }?.port, port2)
        try await checkSeparation(com1, client1, com2, client2, "3")

        // Both ports migrating at once, with the same sequence (one vMotion of the whole VM).
        let seq: [UInt8] = [0x71, 0xFF, 0x72, 0x73]
        let (s1, s2, proxyPort) = (com1, com2, daemon.proxyPort)
        async let m1 = s1.migrate(port: proxyPort, sequence: seq)
        async let m2 = s2.migrate(port: proxyPort, sequence: seq)
        let (d1, d2) = try await (m1, m2)
        com1 = d1
        com2 = d2
        let both = try await daemon.waitForList("both migrated") { $0.count == 2 && $0.allSatisfy { $0.connected && !$0.migrating } }
        XCTAssertEqual(Set(both.map { "\($0.label):\($0.port)" }), [":\(port1)", "com2:\(port2)"])
        try await checkSeparation(com1, client1, com2, client2, "4")
    }

    private func checkSeparation(_ com1: SimulatedVM, _ client1: SimulatedClient, _ com2: SimulatedVM,
                                 _ client2: SimulatedClient, _ round: String) async throws {
        _ = client1.takeData(); _ = client2.takeData(); _ = com1.takeData(); _ = com2.takeData()
        let out1 = Array("com1 says \(round)\r\n".utf8) + [0xFF]
        let out2 = Array("com2 says \(round) and more\r\n".utf8)
        com1.output(out1)
        com2.output(out2)
        try await client1.waitForData(count: out1.count)
        try await client2.waitForData(count: out2.count)
        let in1 = Array("to-com1-\(round)".utf8)
        let in2 = Array("to-com2-\(round)!".utf8)
        client1.send(in1)
        client2.send(in2)
        try await com1.waitForData(count: in1.count)
        try await com2.waitForData(count: in2.count)
        try await barrier(client1, client2, com1, com2, client1, client2)
        XCTAssertEqual(client1.data, out1, "round \(round)")
        XCTAssertEqual(client2.data, out2, "round \(round)")
        XCTAssertEqual(com1.data, in1, "round \(round)")
        XCTAssertEqual(com2.data, in2, "round \(round)")
    }

    // MARK: - 13. 200 VMs migrating at once

    func testTwoHundredVMsMigrateAtOnce() async throws {
        let daemon = try await startDaemon(portRangeSize: 300)
        let proxyPort = daemon.proxyPort
        let salt = UInt32.random(in: 0...UInt32.max)
        let count = 200
        let sources = try await withThrowingTaskGroup(of: (Int, SimulatedVM).self) { group in
            for i in 0..<count {
                group.addTask {
                    (i, try await SimulatedVM.connect(port: proxyPort, uuid: testUUID(i, salt), name: "herd-\(i)"))
                }
            }
            var all: [Int: SimulatedVM] = [:]
            for try await (i, vm) in group { all[i] = vm }
            return all
        }
        defer { sources.values.forEach { $0.close() } }
        let listed = try await daemon.waitForList("\(count) VMs", timeout: 60) { $0.count == count }
        let ports = Dictionary(uniqueKeysWithValues: listed.map { ($0.uuid, $0.port) })
        XCTAssertEqual(Set(ports.values).count, count)

        let sample = Array(stride(from: 0, to: count, by: 20))
        var clients: [Int: SimulatedClient] = [:]
        for i in sample { clients[i] = try await SimulatedClient.connect(port: ports[testUUID(i, salt)]!) }
        defer { clients.values.forEach { $0.close() } }
        try await daemon.waitForList("sample clients", timeout: 30) { vms in
            sample.allSatisfy { i in vms.first { $0.uuid == testUUID(i, salt) }?.clients == 1 }
        }

        let destinations = try await withThrowingTaskGroup(of: (Int, SimulatedVM).self) { group in
            for (i, vm) in sources {
                group.addTask { (i, try await vm.migrate(port: proxyPort)) }
            }
            var all: [Int: SimulatedVM] = [:]
            for try await (i, vm) in group { all[i] = vm }
            return all
        }
        defer { destinations.values.forEach { $0.close() } }
        XCTAssertEqual(destinations.count, count)

        let after = try await daemon.waitForList("all \(count) on their destinations", timeout: 60) { vms in
            vms.count == count && vms.allSatisfy { $0.connected && !$0.migrating }
        }
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: after.map { ($0.uuid, $0.port) }), ports, "ports changed")

        for (i, dest) in destinations { dest.output("marker-\(i)\r\n") }
        for i in sample {
            let expected = Array("marker-\(i)\r\n".utf8)
            try await clients[i]!.waitForData(count: expected.count, timeout: 30)
        }
        for i in sample { try await barrier(destinations[i]!, clients[i]!) }
        for i in sample {
            XCTAssertEqual(clients[i]!.data, Array("marker-\(i)\r\n".utf8), "VM \(i)")
            XCTAssertFalse(clients[i]!.closed)
        }
        XCTAssertTrue(destinations.values.allSatisfy { !$0.closed && $0.unknownSuboptions.isEmpty })
    }

    // MARK: - 14. a service URI the daemon does not accept

    func testRenameAfterAMigrationIsRecorded() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(1201)
        let (source, client, _) = try await vmWithClient(daemon, uuid, name: "before-move")
        defer { client.close() }
        let dest = try await source.migrate(port: daemon.proxyPort)
        defer { dest.close() }
        try await daemon.waitForList("migrated") { $0.first { $0.uuid == uuid }.map { $0.connected && !$0.migrating } ?? false }
        dest.rename("after-move")
        try await daemon.waitForList("renamed") { $0.first { $0.uuid == uuid }?.name == "after-move" }
        let events = try await waitForEvents(daemon, uuid: uuid, "name-change") { $0.contains { $0.kind == "name-change" } }
        XCTAssertTrue(events.contains { $0.kind == "name-change" && $0.detail == "before-move -> after-move" })
    }

    func testUnacceptedServiceURIGetsWontProxy() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(114)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "elsewhere",
                                               serviceURI: "other.py", waitForProxy: false)
        defer { vm.close() }
        try await vm.wait("the DO-PROXY answer") { vm.proxyReply != nil }
        XCTAssertEqual(vm.proxyReply, Code.wontProxy)
        XCTAssertEqual(wireFrames(vm.raw, command: Code.wontProxy), [[0xFF, 0xFA, 0xE8, 0x49, 0xFF, 0xF0]])
        XCTAssertTrue(wireFrames(vm.raw, command: Code.willProxy).isEmpty)

        // A refused VM gets no console port (the daemon closes it once it has refused it).
        try await barrier(vm)
        let listed = try await daemon.list()
        XCTAssertFalse(listed.contains { $0.uuid == uuid }, "a VM refused with WONT-PROXY was given a port: \(listed)")

        // The daemon keeps serving.
        let good = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(1140), name: "here")
        defer { good.close() }
        XCTAssertEqual(good.proxyReply, Code.willProxy)
        _ = try await daemon.port(of: good.uuid)
    }
}
