import Foundation
import VSPCCore
import VSPCSim
import XCTest

/// End to end: a second connection that claims a live console does not get it (the old one is probed with
/// `DO TIMING-MARK`), a silent or closed one is replaced; a BEGIN restarts its own stale migration, and a source
/// that closes with no destination ends its migration at once.
extension HostilePeerTests {
    /// True if `raw` contains `needle` as consecutive bytes.
    func contains(_ raw: [UInt8], _ needle: [UInt8]) -> Bool {
        raw.windows(ofCount: needle.count).contains(needle)
    }

    /// True if `kinds` contains `wanted` in this order (other kinds may come between).
    func inOrder(_ kinds: [String], _ wanted: [String]) -> Bool {
        var rest = wanted[...]
        for k in kinds where k == rest.first { rest.removeFirst() }
        return rest.isEmpty
    }

    // MARK: - 4. takeover

    /// (a) The console's connection answers the probe: the newcomer is refused and closed, and the person's
    /// input keeps reaching the first VM. The probe timeout is long, so only the answer can refuse the newcomer.
    func testLiveConsoleIsNotTakenOverByASecondConnection() async throws {
        let daemon = try await startDaemon(["--takeover-probe-timeout", "600"])
        let uuid = testUUID(841)
        let (first, client) = try await vmWithClient(daemon, uuid, name: "keeper")
        defer { first.close(); client.close() }
        try await roundTrip(first, client, 0)

        let intruder = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "keeper")
        defer { intruder.close() }
        try await intruder.waitForClose(timeout: 60)
        XCTAssertTrue(contains(first.raw, Code.doTimingMark), "the open connection was not probed")
        let events = try await waitForEvents(daemon, uuid: uuid, "vm-takeover-refused") { $0.contains { $0.kind == "vm-takeover-refused" } }
        let refused = try XCTUnwrap(events.first { $0.kind == "vm-takeover-refused" })
        XCTAssertTrue(refused.detail?.contains("answered a probe") == true, refused.detail ?? "no detail")
        XCTAssertFalse(events.contains { $0.kind == "vm-disconnect" }, "\(events.map(\.kind.rawValue))")

        // The first VM still carries the console, both ways; the intruder got nothing of the person's.
        try await roundTrip(first, client, 1)
        XCTAssertFalse(first.closed)
        XCTAssertEqual(intruder.data, [], "the refused connection received console input")
        let listed = try await daemon.list().first { $0.uuid == uuid }
        XCTAssertEqual(listed?.connected, true)
        XCTAssertEqual(listed?.clients, 1)
    }

    /// (b) The console's connection stays silent (its host died): the newcomer takes over after the probe
    /// timeout, the old connection is closed, and the person now talks to the newcomer.
    func testSilentConsoleIsTakenOverAfterTheProbe() async throws {
        let daemon = try await startDaemon(["--takeover-probe-timeout", "1"])
        let uuid = testUUID(842)
        let (first, client) = try await vmWithClient(daemon, uuid, name: "ha-vm")
        defer { first.close(); client.close() }
        try await roundTrip(first, client, 0)

        first.freeze()
        let second = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "ha-vm")
        defer { second.close() }
        try await first.waitForClose(timeout: 60)
        XCTAssertTrue(contains(first.raw, Code.doTimingMark), "the silent connection was not probed")
        XCTAssertFalse(second.closed)
        try await roundTrip(second, client, 1)
        let events = try await waitForEvents(daemon, uuid: uuid, "vm-disconnect of the replaced connection") {
            $0.contains { $0.kind == "vm-disconnect" }
        }
        XCTAssertTrue(events.contains { $0.kind == "vm-disconnect" && $0.detail?.contains("replaced by a new connection") == true },
                      "\(events.map { "\($0.kind)[\($0.detail ?? "")]" })")
        XCTAssertFalse(events.contains { $0.kind == "vm-takeover-refused" })
        let listed = try await daemon.list().first { $0.uuid == uuid }
        XCTAssertEqual(listed?.connected, true)
    }

    /// (c) A closed old connection is replaced at once: after a clean reconnect, and when the old connection
    /// closes while it is being probed. The probe timeout is long, so only the close can let the newcomer in.
    func testClosedConsoleConnectionIsReplacedAtOnce() async throws {
        let daemon = try await startDaemon(["--takeover-probe-timeout", "600"])
        let uuid = testUUID(843)
        let (first, client) = try await vmWithClient(daemon, uuid, name: "rebooter")
        defer { first.close(); client.close() }
        try await roundTrip(first, client, 0)

        // A clean reconnect: the old connection is gone before the new one identifies.
        first.close()
        try await daemon.waitForList("the VM down") { $0.first { $0.uuid == uuid }?.connected == false }
        let second = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "rebooter")
        defer { second.close() }
        try await roundTrip(second, client, 1)
        XCTAssertFalse(contains(second.raw, Code.doTimingMark))

        // The old connection closes while it is probed (it never answers): the newcomer takes over then.
        second.freeze()
        let third = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "rebooter")
        defer { third.close() }
        try await second.wait("the probe", timeout: 60) { self.contains(second.raw, Code.doTimingMark) }
        XCTAssertFalse(third.closed)
        second.close()
        try await roundTrip(third, client, 2)
        let events = try await waitForEvents(daemon, uuid: uuid, "two disconnects and the third connect") {
            $0.filter { $0.kind == "vm-disconnect" }.count >= 2 && $0.filter { $0.kind == "vm-connect" }.count >= 3
        }
        XCTAssertFalse(events.contains { $0.kind == "vm-takeover-refused" }, "\(events.map(\.kind.rawValue))")
        XCTAssertEqual(events.filter { $0.kind == "vm-connect" }.count, 3, "\(events.map(\.kind.rawValue))")
    }

    // MARK: - 5. vMotion restart

    /// A BEGIN on a source whose migration still waits for its destination restarts it with a new secret; the
    /// first cookie is then refused, the new one is accepted and completes.
    func testBeginRestartsAStaleMigrationWithANewSecret() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(851)
        let (source, client) = try await vmWithClient(daemon, uuid, name: "mover")
        defer { source.close(); client.close() }

        let seq1: [UInt8] = [0x11, 0x22, 0x33, 0x44]
        let seq2: [UInt8] = [0x55, 0x66, 0xFF, 0x77]
        guard case .goahead(let secret1) = try await source.beginVMotion(sequence: seq1) else {
            return XCTFail("no GOAHEAD for the first BEGIN")
        }
        guard case .goahead(let secret2) = try await source.beginVMotion(sequence: seq2) else {
            return XCTFail("the second BEGIN on the same source was not answered with GOAHEAD")
        }
        XCTAssertEqual(secret2.count, 8)
        XCTAssertNotEqual(secret1, secret2, "the restarted migration kept its secret")
        XCTAssertTrue(contains(source.raw, wireMessage(Code.goahead, seq2 + secret2)), "GOAHEAD = sequence + secret, 0xFF doubled")

        // The first cookie, and the old secret with the new sequence, are refused.
        let peerRefused = wireMessage(Code.unknownSuboptionRcvd2, [Code.peer])
        for (sequence, secret) in [(seq1, secret1), (seq2, secret1)] {
            let stale = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "mover",
                                                      role: .destination(sequence: sequence, secret: secret))
            XCTAssertNil(stale.peerAccepted, "a stale cookie was accepted")
            XCTAssertTrue(contains(stale.raw, peerRefused), "no UNKNOWN-SUBOPTION-RCVD-2 for PEER: \(stale.messages)")
            stale.close()
        }

        // The new cookie is accepted and completes; the person stays attached and reaches the destination.
        let destination = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "mover",
                                                        role: .destination(sequence: seq2, secret: secret2))
        defer { destination.close() }
        XCTAssertEqual(destination.peerAccepted, seq2)
        try await destination.wait("the name request") { destination.messages.contains { $0.first == Code.getVMName } }
        destination.completeVMotion(sequence: seq2)
        source.close()
        try await daemon.waitForList("the vMotion done") {
            guard let c = $0.first(where: { $0.uuid == uuid }) else { return false }
            return c.connected && !c.migrating && c.clients == 1
        }
        try await roundTrip(destination, client, 0)

        let events = try await waitForEvents(daemon, uuid: uuid, "the restart, both refusals and the completion") { events in
            events.contains { $0.kind == "vmotion-complete" } && events.filter { $0.kind == "vmotion-peer-rejected" }.count >= 2
        }
        let kinds = events.map(\.kind.rawValue)
        XCTAssertTrue(events.contains { $0.kind == "vmotion-expired" && $0.detail?.contains("restarted by a new VMOTION-BEGIN") == true },
                      "\(events.map { "\($0.kind)[\($0.detail ?? "")]" })")
        XCTAssertTrue(inOrder(kinds, ["vmotion-begin", "vmotion-goahead", "vmotion-begin", "vmotion-expired", "vmotion-goahead",
                                      "vmotion-peer", "vmotion-complete"]), "\(kinds)")
    }

    /// A source that closes with no destination ends its migration at once; what the person typed during the
    /// window goes to the VM's next connection.
    func testSourceClosingWithNoDestinationEndsTheMigration() async throws {
        let daemon = try await startDaemon(["--vmotion-timeout", "600"])
        let uuid = testUUID(852)
        let (source, client) = try await vmWithClient(daemon, uuid, name: "dropper")
        defer { source.close(); client.close() }
        guard case .goahead = try await source.beginVMotion(sequence: [0x01, 0x02, 0x03, 0x04]) else {
            return XCTFail("no GOAHEAD")
        }
        try await daemon.waitForList("migrating") { $0.first { $0.uuid == uuid }?.migrating == true }
        let typed = Array("typed-in-window;".utf8)
        client.send(typed)
        // Held, not delivered to the source during the window (once the daemon has read it).
        try await barrier(client, source)
        XCTAssertEqual(source.data, [], "input reached the source during the window")

        source.close()
        let events = try await waitForEvents(daemon, uuid: uuid, "vmotion-expired") { $0.contains { $0.kind == "vmotion-expired" } }
        let expired = try XCTUnwrap(events.first { $0.kind == "vmotion-expired" })
        XCTAssertTrue(expired.detail?.contains("source closed with no destination") == true, expired.detail ?? "no detail")
        try await daemon.waitForList("not migrating, down") {
            guard let c = $0.first(where: { $0.uuid == uuid }) else { return false }
            return !c.connected && !c.migrating
        }

        // The VM's next connection gets what was typed, then works both ways; it can migrate again.
        let next = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "dropper")
        defer { next.close() }
        try await next.waitForData(count: typed.count, timeout: 30)
        XCTAssertEqual(next.data, typed)
        try await roundTrip(next, client, 0)
        guard case .goahead = try await next.beginVMotion(sequence: [0x05, 0x06, 0x07, 0x08]) else {
            return XCTFail("the next connection could not migrate")
        }
    }
}
