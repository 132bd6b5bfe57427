import Foundation
import XCTest
@testable import VSPCCore

/// VM connections on the proxy port: the ESXi opening, identification, reconnects, timeouts, the descriptor ceiling.
final class ConcentratorVMTests: XCTestCase {
    let keyA = ConsoleKey(uuid: UUIDs.a, label: "")

    func testProxyOpeningAndIdentificationRepliesByteForByte() {
        let h = ConcentratorHarness()
        let id = h.newConnection(.vm)
        let opened = h.send(.vmConnected(id, peer: "10.0.0.1:900"))
        XCTAssertEqual(opened.nonLog, [
            .schedule(.negotiation(id), afterNanos: 10_000_000_000),
            .schedule(.identify(id), afterNanos: 15_000_000_000), // issue 14: 60 s before
            .send(id, Wire.proxyOpening),
        ])
        h.vm(id, says: ESXi.options)
        XCTAssertEqual(h.takeOutput(id), Wire.proxyOpening + Hex.bytes("FF FE 25"), "AUTHENTICATION refused once")
        h.vm(id, says: ESXi.knownSuboptions1)
        XCTAssertEqual(h.takeOutput(id),
                       Wire.vmware(0x01, [0, 1, 2, 3, 40, 41, 43, 44, 45, 46, 48, 70, 71, 73, 80, 81, 82, 83])
                           + Wire.vmware(0x51) + Wire.vmware(0x53))
        h.vm(id, says: ESXi.doProxy())
        XCTAssertEqual(h.takeOutput(id), Wire.vmware(0x47), "WILL-PROXY")
        h.vm(id, says: ESXi.vcUUID(UUIDs.a))
        XCTAssertEqual(h.remaining(.name(id)), 5_000_000_000, "the name timer starts with the uuid")
        h.vm(id, says: ESXi.name("web01"))
        XCTAssertEqual(h.takeOutput(id), [])
        XCTAssertFalse(h.isArmed(.name(id)))
        XCTAssertFalse(h.isArmed(.negotiation(id)))
    }

    func testIdentificationBindsThenListsOnlyOnceTheAssignmentIsCommitted() {
        let h = ConcentratorHarness()
        h.assignmentReply = { _ in .hold }
        let id = h.connectVM(peer: "10.0.0.1:900")
        h.negotiate(id)
        h.vm(id, says: ESXi.doProxy())
        h.vm(id, says: ESXi.vcUUID(UUIDs.a))
        h.take()
        let t0 = h.clock.date
        let acts = h.vm(id, says: ESXi.name("web01"))
        XCTAssertEqual(acts, [
            .cancel(.negotiation(id)), .cancel(.name(id)),
            .bind(ListenerRef(console: keyA, generation: 1), port: 20000),
        ])
        // The driver reported the listener bound: the VM's connection is recorded with the port it got (issue 13:
        // not the first one tried), and the assignment is written, and waited for.
        let token = WriteToken.assignment(keyA, generation: 1)
        let assignment = Assignment(uuid: UUIDs.a, name: "web01", port: 20000, createdAt: t0, lastSeen: t0)
        XCTAssertEqual(Array(h.take().dropFirst(acts.count)), [
            .record(ConsoleEvent(kind: .vmConnect, time: t0, uuid: UUIDs.a, name: "web01", peer: "10.0.0.1:900",
                                 detail: "port 20000")),
            .persist([.upsertAssignment(assignment)], token: token),
        ])
        // Issue 8: listed as soon as its port is bound, marked unsaved until the write commits.
        XCTAssertEqual(h.list().map(\.saved), [false], "listed, unsaved, before the write commits")
        XCTAssertEqual(h.status()["consoles"], "1")

        h.advance(by: 1)
        h.take()
        XCTAssertEqual(h.completeWrite(token), [
            .record(ConsoleEvent(kind: .portAssigned, time: h.clock.date, uuid: UUIDs.a, name: "web01", detail: "port 20000")),
        ])
        XCTAssertEqual(h.list(), [
            ConsoleInfo(name: "web01", uuid: UUIDs.a, label: "", port: 20000, connected: true, clients: 0,
                        since: AdminProtocol.timestamp(t0), listening: true, listenError: nil, migrating: false,
                        peer: "10.0.0.1:900"),
        ])
    }

    func testRefusedServiceURIGetsWontProxyAndIsClosed() {
        let h = ConcentratorHarness()
        let id = h.connectVM()
        h.negotiate(id)
        _ = h.takeOutput(id)
        let acts = h.vm(id, says: ESXi.doProxy("other.py"))
        XCTAssertEqual(acts.nonLog, [.send(id, Wire.vmware(0x49)), .close(id, flush: false)])
        XCTAssertEqual(h.take().recordKinds, [])
        XCTAssertEqual(h.binds.count, 0)
    }

    func testReconnectKeepsThePortAndRecordsPortReused() {
        let h = ConcentratorHarness()
        let first = h.bringUpVM(UUIDs.a, name: "web01", peer: "10.0.0.1:900")
        h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        h.send(.vmClosed(first))
        h.advance(by: 5)
        h.take()
        let bindsBefore = h.binds.count
        h.bringUpVM(UUIDs.a, name: "web01", peer: "10.0.0.4:900")
        let acts = h.take()
        XCTAssertEqual(acts.recordKinds, [.vmConnect, .portReused])
        XCTAssertEqual(acts.records.map(\.detail), ["port 20000", "port 20000"])
        XCTAssertEqual(h.binds.count, bindsBefore, "the listener stayed open: no new bind")
        XCTAssertTrue(acts.persistedOps.contains(.touchAssignment(uuid: UUIDs.a, label: "", name: "web01", at: h.clock.date)))
        let web = h.list().first { $0.uuid == UUIDs.a }
        XCTAssertEqual(web?.port, 20000)
        XCTAssertEqual(web?.connected, true)
        XCTAssertEqual(web?.peer, "10.0.0.4:900")
    }

    func testNegotiationTimeoutRejectsAPlainTelnetPeerWithOneLineThenCloses() {
        let h = ConcentratorHarness()
        let id = h.connectVM(peer: "192.0.2.9:5555")
        h.vm(id, says: Hex.bytes("FF FD 03 FF FD 01") + Array("hello\r\n".utf8))
        h.advance(by: 9.9)
        XCTAssertNil(h.closed[id])
        _ = h.takeOutput(id)
        h.take()
        h.advance(by: 0.1)
        let message = "vspcd: this is the VMware virtual serial port proxy port, for ESXi only; to reach a console, telnet to the VM's own port (see `vspc list`).\r\n"
        XCTAssertEqual(h.take().io, [.send(id, Array(message.utf8)), .close(id, flush: true)])
        XCTAssertEqual(h.takeOutput(id), Array(message.utf8))
        XCTAssertEqual(h.binds.count, 0)
    }

    func testPeerRefusingTheExtensionIsRejectedAtOnce() {
        let h = ConcentratorHarness()
        let id = h.connectVM(peer: "192.0.2.9:5555")
        let acts = h.vm(id, says: Hex.bytes("FF FC E8"))
        XCTAssertEqual(acts.io, [.send(id, Array(VMLinkStateMachine.plainClientMessage.utf8)), .close(id, flush: true)])
        h.take()
        h.advance(by: 60)
        XCTAssertEqual(h.take().io, [], "the timers of a closed connection do nothing")
    }

    /// Issue 14: 15 s (it was 60 s, six negotiation times); ESXi identifies in milliseconds.
    func testConnectionThatNeverIdentifiesIsClosedAfterTheIdentifyTimeout() {
        let h = ConcentratorHarness()
        let id = h.connectVM(peer: "10.0.0.5:900")
        h.negotiate(id) // agrees to the extension, then never says DO-PROXY
        h.advance(by: 14.9)
        XCTAssertNil(h.closed[id], "the negotiation timeout does not reject an ESXi host")
        h.take()
        h.advance(by: 0.1)
        let acts = h.take()
        XCTAssertEqual(acts.io, [.close(id, flush: false)])
        XCTAssertTrue(acts.logs.contains { $0.level == .warning && $0.message.contains("not identified within 15.0 s") })
        XCTAssertEqual(acts.recordKinds, [])
    }

    func testNameTimeoutUsesTheUUIDAsTheName() {
        let h = ConcentratorHarness()
        let id = h.connectVM()
        h.negotiate(id)
        h.vm(id, says: ESXi.doProxy())
        h.vm(id, says: ESXi.vcUUID(UUIDs.a))
        h.advance(by: 4.9)
        XCTAssertEqual(h.take().recordKinds, [])
        h.advance(by: 0.1)
        let acts = h.take()
        XCTAssertEqual(acts.records.first?.kind, .vmConnect)
        XCTAssertEqual(acts.records.first?.name, "0123456789abcdef-fedcba9800000000")
        XCTAssertEqual(h.list().map(\.name), ["0123456789abcdef-fedcba9800000000"])
        // A name that comes later is a rename.
        h.take()
        h.vm(id, says: ESXi.name("web01"))
        XCTAssertEqual(h.take().records.map(\.detail), ["0123456789abcdef-fedcba9800000000 -> web01"])
        XCTAssertEqual(h.list().map(\.name), ["web01"])
    }

    func testOutputBeforeIdentificationReachesPeopleAlreadyWaiting() {
        let loaded = Assignment(uuid: UUIDs.a, name: "web01", port: 20004, createdAt: MockClock.originDate,
                                lastSeen: MockClock.originDate)
        let h = ConcentratorHarness(assignments: [loaded])
        let person = h.connectClient(keyA)
        XCTAssertEqual(h.takeOutput(person), Wire.clientOpening)
        let id = h.connectVM()
        h.negotiate(id)
        h.vm(id, says: Array("BIOS ".utf8) + [0xFF, 0xFF] + Array("\r\n".utf8))
        XCTAssertEqual(h.takeOutput(person), [], "kept until the connection carries the console")
        h.vm(id, says: ESXi.doProxy())
        h.vm(id, says: ESXi.vcUUID(UUIDs.a))
        let acts = h.vm(id, says: ESXi.name("web01"))
        XCTAssertEqual(acts.io, [.broadcast([person], Array("BIOS ".utf8) + [0xFF, 0xFF] + Array("\r\n".utf8))])
        let tail = h.admin(AdminRequest(command: "tail", vm: "web01"))
        XCTAssertEqual(tail.rest, Array("BIOS ".utf8) + [0xFF] + Array("\r\n".utf8), "scrollback keeps raw bytes")
    }

    func testEarlyOutputIsBounded() {
        var config = ConcentratorConfig.forTests
        config.earlyOutputLimit = 4
        let h = ConcentratorHarness(config: config)
        let id = h.connectVM()
        h.negotiate(id)
        h.vm(id, says: Array("abcdefgh".utf8))
        h.vm(id, says: ESXi.doProxy())
        h.vm(id, says: ESXi.vcUUID(UUIDs.a))
        let acts = h.vm(id, says: ESXi.name("web01"))
        XCTAssertTrue(acts.logs.contains { $0 == (.warning, "VM web01: 4 bytes of early output were discarded") })
        XCTAssertEqual(h.admin(AdminRequest(command: "tail", vm: "web01")).rest, Array("abcd".utf8))
    }

    func testDisconnectIsRecordedAndTouchesTheAssignment() {
        let h = ConcentratorHarness()
        let id = h.bringUpVM(peer: "10.0.0.1:900")
        h.advance(by: 7)
        h.take()
        let t = h.clock.date
        XCTAssertEqual(h.send(.vmClosed(id)).nonLog, [
            .cancel(.negotiation(id)), .cancel(.name(id)), .cancel(.identify(id)),
            .record(ConsoleEvent(kind: .vmDisconnect, time: t, uuid: UUIDs.a, name: "web01", peer: "10.0.0.1:900",
                                 detail: "closed", reason: .disconnect(.closed))),
            .persist([.touchAssignment(uuid: UUIDs.a, label: "", name: "web01", at: t)], token: nil),
        ])
        let info = h.list().first
        XCTAssertEqual(info?.connected, false)
        XCTAssertEqual(info?.since, AdminProtocol.timestamp(t))
        XCTAssertNil(info?.peer)
        XCTAssertEqual(info?.listening, true, "people can wait on the port for the VM to come back")
    }

    func testRenameAfterIdentificationIsRecordedAndWritten() {
        let h = ConcentratorHarness()
        let id = h.bringUpVM()
        h.take()
        let acts = h.vm(id, says: ESXi.name("web01-new"))
        XCTAssertEqual(acts.recordKinds, [.nameChange])
        XCTAssertEqual(acts.records.first?.detail, "web01 -> web01-new")
        XCTAssertEqual(acts.persistedOps,
                       [.touchAssignment(uuid: UUIDs.a, label: "", name: "web01-new", at: h.clock.date)])
        XCTAssertEqual(h.list().map(\.name), ["web01-new"])
        XCTAssertEqual(h.vm(id, says: ESXi.name("web01-new")).recordKinds, [], "the same name again is no change")
    }

    func testTwoSerialPortsOfOneVMAreTwoConsoles() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.a, name: "web01", peer: "10.0.0.1:900")
        h.take()
        h.bringUpVM(UUIDs.a, name: "web01", label: "com2", peer: "10.0.0.1:901")
        let acts = h.take()
        XCTAssertEqual(acts.recordKinds, [.vmConnect, .portAssigned], "the first port's connection is not replaced")
        XCTAssertEqual(acts.records.first?.label, "com2")
        XCTAssertEqual(h.list().map { "\($0.label):\($0.port):\($0.connected)" }, [":20000:true", "com2:20001:true"])
    }

    func testDescriptorCeilingRefusesVMsButLetsPeopleIn() {
        var config = ConcentratorConfig.forTests
        config.descriptorLimit = 20
        config.descriptorReserve = 8
        let h = ConcentratorHarness(config: config, baseline: 8)
        let a = h.bringUpVM(UUIDs.a, name: "web01", peer: "10.0.0.1:900") // connection + listener: 10
        let b = h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")  // 12 = limit - reserve
        h.take()
        let refused = h.newConnection(.vm)
        let acts = h.send(.vmConnected(refused, peer: "10.0.0.7:900"))
        XCTAssertEqual(acts.nonLog, [.close(refused, flush: false)], "no opening for a refused VM")
        XCTAssertEqual(acts.logs.map(\.level), [.error])
        XCTAssertEqual(acts.logs.first?.message,
                       "refused VM connection from 10.0.0.7:900: open-file limit nearly reached (12 of 20 in use)")
        XCTAssertEqual(h.status()["descriptors"], "13", "12, and the admin connection asking")
        // A person may dip into the reserve.
        let person = h.connectClient(keyA)
        XCTAssertNil(h.closed[person])
        h.send(.clientClosed(person))
        h.send(.vmClosed(a))
        h.send(.vmClosed(b))
        h.take()
        let welcome = h.connectVM(peer: "10.0.0.7:901")
        XCTAssertEqual(h.take().io, [.send(welcome, Wire.proxyOpening)], "10 in use: room again")
    }
}
