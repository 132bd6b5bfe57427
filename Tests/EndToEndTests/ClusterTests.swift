import Foundation
import VSPCCore
import VSPCSim
import XCTest

/// Several daemons on one PostgreSQL database, end to end: shared ports, a vMotion from one daemon to another with
/// people on both, a stale owner fenced, nodes in `vspc status`, and `vspc migrate-db`. The storm and the kill are in
/// ClusterStormTests, the database outage in ClusterOutageTests, SSH on any daemon in ClusterDoorTests.
final class ClusterTests: ClusterTestCase {
    // MARK: - a. shared assignments

    func testFiveHundredVMsOverTwoDaemonsGetDistinctPortsListedAlikeOnBoth() async throws {
        let nodes = try await startNodes(2, portRangeSize: 600)
        let storm = VMotionStorm(hosts: nodes.map { ProxyAddress(host: $0.host, port: $0.proxyPort) }, count: 500,
                                 name: "spread-\(UInt32.random(in: 0...UInt32.max))")
        defer { storm.closeAll() }
        try await storm.connectAll(concurrency: 32)

        var listings: [[String: Int]] = []
        for node in nodes {
            try await waitUntil("\(node.host) to list the 500 VMs", timeout: 120) {
                let ports = try self.listedPorts(node)
                return storm.vms.allSatisfy { ports[$0.uuid] != nil }
            }
            listings.append(try listedPorts(node))
        }
        let ports = storm.vms.compactMap { listings[0][$0.uuid] }
        XCTAssertEqual(ports.count, 500)
        XCTAssertEqual(Set(ports).count, 500, "500 VMs, 500 distinct ports")
        XCTAssertTrue(ports.allSatisfy { nodes[0].portRange.contains($0) }, "every port in the shared range")
        for vm in storm.vms {
            XCTAssertEqual(listings[1][vm.uuid], listings[0][vm.uuid], "\(vm.name): the same port on both daemons")
        }

        // VM 0 came through n1; it comes back through n2 and keeps its port.
        let moved = storm.vms[0]
        XCTAssertEqual(moved.host, 0)
        moved.connection?.close()
        try await storm.connect(moved, to: 1)
        let listed = try await nodes[1].waitForList("\(moved.name) connected on n2") {
            $0.contains { $0.uuid == moved.uuid && $0.connected }
        }
        XCTAssertEqual(listed.first { $0.uuid == moved.uuid }?.port, listings[0][moved.uuid], "the same port through n2")
        XCTAssertEqual(try listedPorts(nodes[0])[moved.uuid], listings[0][moved.uuid], "n1 still lists the same port")
    }

    // MARK: - b. a vMotion across daemons, people on both

    func testCrossNodeVMotionWithAPersonOnEachDaemonLosesNoByte() async throws {
        let nodes = try await startNodes(2)
        let (n1, n2) = (nodes[0], nodes[1])
        let uuid = testUUID(1)
        let source = try await connectVM(n1, uuid, "move-1")
        let port = try await self.port(n1, uuid)
        let portOnN2 = try await self.port(n2, uuid)
        XCTAssertEqual(portOnN2, port, "n2 knows the assignment")
        // The same port number at two addresses: n1's own console, and n2's forwarded one.
        let onN1 = try await telnet(n1, port)
        let onN2 = try await telnet(n2, port)
        let sync = try await synchronize([onN1, onN2]) { source.output($0) }
        var expected = sync

        // Before.
        let before = patternBytes(4000, seed: 31)
        source.output(before)
        expected += before
        try await expectOutput([onN1, onN2], expected, "before the vMotion")

        // During: BEGIN on n1, PEER on n2; both people type, the source prints.
        let sequence: [UInt8] = [0x31, 0x32, 0x33, 0x34]
        guard case .goahead(let secret) = try await source.beginVMotion(sequence: sequence) else {
            return XCTFail("n1 answered NOTNOW")
        }
        let destination = try await SimulatedVM.connect(host: n2.host, port: n2.proxyPort, uuid: uuid, name: "move-1",
                                                        role: .destination(sequence: sequence, secret: secret))
        connections.append(destination)
        XCTAssertEqual(destination.peerAccepted, sequence, "n2 found n1's vMotion and answered PEER-OK")
        try await destination.wait("the name request") { destination.messages.contains { $0.first == VMwareCommand.getVMName } }
        let typedOnN1 = Array("typed-on-n1-during;".utf8), typedOnN2 = Array("typed-on-n2-during;".utf8)
        onN1.send(typedOnN1)
        onN2.send(typedOnN2)
        let during = patternBytes(3000, seed: 32)
        source.output(during)
        expected += during
        try await expectOutput([onN1, onN2], expected, "during the window")

        // COMPLETE on n2; the source closes; n2 owns the console.
        destination.completeVMotion(sequence: sequence)
        source.close()
        try await waitUntil("n1 and n2 to list n2 as the owner", timeout: 60) {
            try self.listedOwner(n1, uuid) == "n2" && self.listedOwner(n2, uuid) == "n2"
        }

        // After: the destination prints; both people see it once.
        let after = patternBytes(5000, seed: 33)
        destination.output(after)
        expected += after
        try await expectOutput([onN1, onN2], expected, "after the vMotion")

        // What the people typed during the window reached the VM once each (source or destination).
        let typedAfter = Array("typed-on-n1-after;".utf8), typedAfterN2 = Array("typed-on-n2-after;".utf8)
        onN1.send(typedAfter)
        onN2.send(typedAfterN2)
        let all = typedOnN1 + typedOnN2 + typedAfter + typedAfterN2
        do {
            try await waitUntil("the typed bytes at the VM") { source.data.count + destination.data.count >= all.count }
        } catch {
            print("what reached the VM: source=\(String(decoding: source.data, as: UTF8.self).debugDescription) destination=\(String(decoding: destination.data, as: UTF8.self).debugDescription)")
            throw error
        }
        try await barrier(onN1, onN2)
        let atVM = String(decoding: source.data + destination.data, as: UTF8.self)
        XCTAssertEqual(atVM.count, all.count, "nothing else reached the VM: \(atVM.debugDescription)")
        for typed in [typedOnN1, typedOnN2, typedAfter, typedAfterN2] {
            XCTAssertEqual(occurrences(of: String(decoding: typed, as: UTF8.self), in: atVM), 1, atVM)
        }
        XCTAssertFalse(onN1.closed || onN2.closed, "both people stay attached")
    }

    // MARK: - f. a stale owner fenced

    func testAStaleOwnerClosesItsConnectionAndItsPeopleAreFedFromTheNewOwner() async throws {
        let nodes = try await startNodes(2)
        let (n1, n2) = (nodes[0], nodes[1])
        let db = try XCTUnwrap(database)
        let uuid = testUUID(2)
        let old = try await connectVM(n1, uuid, "split-1")
        let port = try await self.port(n1, uuid)
        _ = try await self.port(n2, uuid)
        let person = try await telnet(n1, port)
        _ = try await synchronize([person]) { old.output($0) }
        try await waitUntil("the database to name n1 the owner") { try self.ownerInDatabase(uuid, db: db) == "n1" }

        // As after a network split: the VM reaches n2 while its old connection on n1 is still open.
        let new = try await connectVM(n2, uuid, "split-1")
        XCTAssertFalse(new.closed, "n2 took the VM")
        try await old.waitForClose(timeout: 60)
        try await waitUntil("the database to name n2 the owner") { try self.ownerInDatabase(uuid, db: db) == "n2" }
        try await waitForHistory(uuid, db: db, "n1's vm-disconnect naming n2") { events in
            events.contains { $0["kind"] as? String == "vm-disconnect" && ($0["detail"] as? String ?? "").contains("n2") }
        }

        // n1's person stays and is fed from n2: output and input.
        _ = person.takeData()
        let sync = try await synchronize([person]) { new.output($0) }
        let bytes = patternBytes(3000, seed: 41)
        new.output(bytes)
        try await expectOutput([person], sync + bytes, "the new owner's output on n1")
        person.send(Array("typed-on-n1;".utf8))
        try await new.wait("the person's input at the new connection", timeout: 30) {
            String(decoding: new.data, as: UTF8.self).contains("typed-on-n1;")
        }
        XCTAssertFalse(person.closed)
        XCTAssertEqual(try listedOwner(n1, uuid), "n2")
    }

    // MARK: - h. nodes in vspc status

    func testStatusListsBothNodesAndAKilledOneTurnsDead() async throws {
        let nodes = try await startNodes(2)
        for node in nodes {
            try await waitUntil("\(node.host)'s status to show n1 and n2 alive") {
                try self.nodesAlive(node) == ["n1": true, "n2": true]
            }
        }
        let text = try vspc(nodes[1], ["status"])
        XCTAssertTrue(text.contains("n1") && text.contains("n2"), text)

        try await nodes[0].kill9()
        try await waitUntil("n2's status to show n1 dead after the lease timeout", timeout: Double(Self.leaseTimeout) * 10) {
            try self.nodesAlive(nodes[1]) == ["n1": false, "n2": true]
        }
    }

    // MARK: - i. vspc migrate-db

    func testMigrateDBThenADaemonOnPostgreSQLListsTheSamePorts() async throws {
        let db = try makeDatabase()
        let single = try await startDaemon(portRangeSize: 50)
        var ports: [String: Int] = [:]
        for i in 0..<5 {
            let uuid = testUUID(10 + i)
            let vm = try await SimulatedVM.connect(port: single.proxyPort, uuid: uuid, name: "old-\(i)")
            connections.append(vm)
            ports[uuid] = try await single.port(of: uuid)
            vm.close()
        }
        try await single.stop()

        let result = try Daemon.runTool("vspc", ["migrate-db", single.dbPath, db.url])
        XCTAssertEqual(result.status, 0, result.err)
        let node = try makeNodes(1, database: db)[0]
        node.portRange = single.portRange
        try await node.start(timeout: 60)
        try await waitUntil("the daemon on PostgreSQL to list the 5 VMs") { try self.listedPorts(node).count >= 5 }
        XCTAssertEqual(try listedPorts(node), ports, "the same ports after migrate-db")
    }
}
