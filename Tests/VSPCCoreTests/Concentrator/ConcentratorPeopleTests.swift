import Foundation
import XCTest
@testable import VSPCCore

/// People's telnet connections: fan-out, input, option negotiation, slow clients, the descriptor ceiling.
final class ConcentratorPeopleTests: XCTestCase {
    let keyA = ConsoleKey(uuid: UUIDs.a, label: "")

    func testAttachSendsTheOpeningAndIsRecorded() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        h.take()
        let person = h.newConnection(.client)
        let acts = h.send(.clientConnected(person, listener: h.listeners[keyA]!.ref, peer: "192.0.2.7:40001"))
        XCTAssertEqual(acts, [
            .send(person, Wire.clientOpening),
            .record(ConsoleEvent(kind: .clientAttach, time: h.clock.date, uuid: UUIDs.a, name: "web01",
                                 peer: "192.0.2.7:40001", detail: "door=telnet mode=read-write")),
        ])
        XCTAssertEqual(h.list().first?.clients, 1)
        XCTAssertEqual(h.send(.clientClosed(person)), [
            .record(ConsoleEvent(kind: .clientDetach, time: h.clock.date, uuid: UUIDs.a, name: "web01",
                                 peer: "192.0.2.7:40001", detail: "door=telnet mode=read-write")),
        ])
        XCTAssertEqual(h.list().first?.clients, 0)
    }

    func testVMOutputFansOutAsOneBroadcastWithIACDoubledAndRawToFollowers() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        let c1 = h.connectClient(keyA, peer: "192.0.2.1:1")
        let c2 = h.connectClient(keyA, peer: "192.0.2.2:2")
        let c3 = h.connectClient(keyA, peer: "192.0.2.3:3")
        let follower = h.admin(AdminRequest(command: "tail", vm: "web01", follow: true))
        XCTAssertEqual(follower.response?.ok, true)
        XCTAssertEqual(follower.response?.backlog, 0)
        XCTAssertNil(h.closed[follower.id], "a follower stays open")
        h.take()
        // The VM sends "A", 0xFF (escaped on its leg), "B".
        let acts = h.vm(vm, says: [0x41, 0xFF, 0xFF, 0x42])
        XCTAssertEqual(acts, [
            .broadcast([c1, c2, c3], [0x41, 0xFF, 0xFF, 0x42]),
            .broadcast([follower.id], [0x41, 0xFF, 0x42]),
        ])
        // A follower that leaves gets nothing more.
        h.send(.adminClosed(follower.id))
        XCTAssertEqual(h.vm(vm, says: Array("x".utf8)), [.broadcast([c1, c2, c3], Array("x".utf8))])
    }

    func testWhatAPersonTypesGoesToTheVMEscaped() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        let person = h.connectClient(keyA)
        h.take()
        // "ls", CR NUL, and a 0xFF typed as IAC IAC.
        let acts = h.client(person, types: Array("ls".utf8) + [0x0D, 0x00, 0xFF, 0xFF])
        XCTAssertEqual(acts, [.send(vm, Array("ls".utf8) + [0x0D, 0x00, 0xFF, 0xFF])])
    }

    func testClientOptionNegotiationIsAnsweredAndRefusedOnce() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        let person = h.connectClient(keyA)
        h.take()
        // WILL NAWS, WILL TTYPE: refused; DO ECHO, DO BINARY, WILL SGA: agreed, no answer.
        let acts = h.client(person, types: Hex.bytes("FF FB 1F FF FB 18 FF FD 01 FF FD 00 FF FB 03"))
        XCTAssertEqual(acts, [.send(person, Hex.bytes("FF FE 1F FF FE 18"))])
        XCTAssertEqual(h.client(person, types: Hex.bytes("FF FB 1F FF FB 18")), [], "each refusal once")
        XCTAssertEqual(h.client(person, types: Hex.bytes("FF FD 05")), [.send(person, Hex.bytes("FF FC 05"))])
        // Negotiation in the middle of typing: the answer first, then the text, without the sequence.
        XCTAssertEqual(h.client(person, types: Array("a".utf8) + Hex.bytes("FF FD 2C") + Array("b".utf8)),
                       [.send(person, Hex.bytes("FF FC 2C")), .send(vm, Array("ab".utf8))])
        // A sequence split across reads.
        XCTAssertEqual(h.client(person, types: [0xFF]), [])
        XCTAssertEqual(h.client(person, types: [0xFB, 0x27]), [.send(person, Hex.bytes("FF FE 27"))])
    }

    func testSlowClientIsDroppedThenDetachedOnClose() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        let c1 = h.connectClient(keyA, peer: "192.0.2.1:1")
        let slow = h.connectClient(keyA, peer: "192.0.2.2:2")
        let c3 = h.connectClient(keyA, peer: "192.0.2.3:3")
        h.take()
        let t = h.clock.date
        let acts = h.send(.writabilityChanged(slow, writable: false))
        XCTAssertEqual(acts, [
            .record(ConsoleEvent(kind: .clientDropped, time: t, uuid: UUIDs.a, name: "web01", peer: "192.0.2.2:2",
                                 detail: "stopped reading; door=telnet mode=read-write", reason: .drop(.slow))),
            .close(slow, flush: false),
        ])
        XCTAssertEqual(Array(h.take().dropFirst(acts.count)), [
            .record(ConsoleEvent(kind: .clientDetach, time: t, uuid: UUIDs.a, name: "web01", peer: "192.0.2.2:2",
                                 detail: "door=telnet mode=read-write")),
        ])
        XCTAssertEqual(h.vm(vm, says: Array("on".utf8)), [.broadcast([c1, c3], Array("on".utf8))],
                       "the others and the VM never wait for it")
        XCTAssertEqual(h.list().first?.clients, 2)
    }

    func testWritableAgainIsNoDrop() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        let person = h.connectClient(keyA)
        h.take()
        XCTAssertEqual(h.send(.writabilityChanged(person, writable: true)), [])
        XCTAssertNil(h.closed[person])
    }

    func testSlowTailFollowerIsDropped() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        let person = h.connectClient(keyA)
        let follower = h.admin(AdminRequest(command: "tail", vm: "web01", follow: true)).id
        h.take()
        let acts = h.send(.writabilityChanged(follower, writable: false))
        // Issue 13: a follower is a person on the tail door, dropped (and recorded) like any other.
        XCTAssertEqual(acts.nonLog, [
            .record(ConsoleEvent(kind: .clientDropped, time: h.clock.date, uuid: UUIDs.a, name: "web01", peer: "local",
                                 detail: "stopped reading; door=tail mode=read-only", reason: .drop(.slow))),
            .close(follower, flush: false),
        ])
        XCTAssertEqual(h.vm(vm, says: Array("z".utf8)), [.broadcast([person], Array("z".utf8))])
    }

    func testInputIsDiscardedWhileTheVMIsNotReading() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        let person = h.connectClient(keyA, peer: "192.0.2.7:40001")
        h.take()
        // Back-pressure: a VM that does not read is not read either, and a stuck timer is armed.
        XCTAssertEqual(h.send(.writabilityChanged(vm, writable: false)),
                       [.setReading(vm, false), .schedule(.stuck(vm), afterNanos: 60_000_000_000)])
        let acts = h.client(person, types: Array("lost".utf8))
        XCTAssertEqual(acts.nonLog, [])
        XCTAssertEqual(acts.logs.first?.level, .warning)
        XCTAssertEqual(acts.logs.first?.message, "input from 192.0.2.7:40001 discarded: VM web01 is not reading")
        h.send(.writabilityChanged(vm, writable: true))
        XCTAssertEqual(h.client(person, types: Array("kept".utf8)), [.send(vm, Array("kept".utf8))])
    }

    func testInputIsDiscardedWhileTheVMIsDisconnected() {
        let h = ConcentratorHarness(assignments: [Assignment(uuid: UUIDs.a, name: "web01", port: 20004,
                                                             createdAt: MockClock.originDate, lastSeen: MockClock.originDate)])
        let person = h.connectClient(keyA)
        h.take()
        let acts = h.client(person, types: Array("hello?".utf8))
        XCTAssertEqual(acts.nonLog, [])
        XCTAssertEqual(acts.logs.map(\.level), [.debug])
        // The VM connects: nothing typed before is replayed to it.
        let vm = h.bringUpVM()
        XCTAssertEqual(h.takeOutput(vm),
                       Wire.proxyOpening + Hex.bytes("FF FE 25")
                           + Wire.vmware(0x01, [0, 1, 2, 3, 40, 41, 43, 44, 45, 46, 48, 70, 71, 73, 80, 81, 82, 83])
                           + Wire.vmware(0x51) + Wire.vmware(0x53) + Wire.vmware(0x47),
                       "the VM got only the protocol")
    }

    func testReplayOfRecentScrollbackOnAttach() {
        var config = ConcentratorConfig.forTests
        config.replayBytes = 4
        let h = ConcentratorHarness(config: config)
        let vm = h.bringUpVM()
        h.vm(vm, says: Array("abcdef".utf8) + [0xFF, 0xFF])
        h.take()
        let person = h.newConnection(.client)
        let acts = h.send(.clientConnected(person, listener: h.listeners[keyA]!.ref, peer: "192.0.2.7:40001"))
        XCTAssertEqual(acts.io, [.send(person, Wire.clientOpening), .send(person, Array("def".utf8) + [0xFF, 0xFF])])
    }

    func testDescriptorCeilingForPeopleAndTheAdminTool() {
        var config = ConcentratorConfig.forTests
        config.descriptorLimit = 20
        config.descriptorReserve = 8
        let h = ConcentratorHarness(config: config, baseline: 8)
        h.bringUpVM() // 10 in use
        // People may use all but a quarter of the reserve: up to 18.
        let people = (0..<8).map { h.connectClient(keyA, peer: "192.0.2.\($0):1") }
        XCTAssertTrue(people.allSatisfy { h.closed[$0] == nil })
        h.take()
        let refused = h.newConnection(.client)
        let acts = h.send(.clientConnected(refused, listener: h.listeners[keyA]!.ref, peer: "192.0.2.99:1"))
        XCTAssertEqual(acts.nonLog, [.send(refused, Wire.clientOpening), .close(refused, flush: false)])
        XCTAssertEqual(acts.logs.first?.level, .error)
        XCTAssertEqual(acts.recordKinds, [])
        // The admin tool is told why.
        let admin = h.admin(AdminRequest(command: "status"))
        XCTAssertEqual(admin.response?.ok, false)
        XCTAssertEqual(admin.response?.error, "vspcd is at its open-file limit")
        XCTAssertEqual(h.closed[admin.id], true)
        // Refused connections never counted: one person leaving makes room for exactly one.
        h.send(.clientClosed(people[0]))
        XCTAssertNil(h.closed[h.connectClient(keyA, peer: "192.0.2.100:1")])
        let again = h.connectClient(keyA, peer: "192.0.2.101:1")
        XCTAssertEqual(h.closed[again], false)
    }
}
