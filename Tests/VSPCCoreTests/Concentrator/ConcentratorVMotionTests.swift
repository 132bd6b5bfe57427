import Foundation
import XCTest
@testable import VSPCCore

/// A console web01 carried by `source` (10.0.0.1:900), a person attached (192.0.2.7:40001), and a migration
/// begun with `sequence` at the clock's origin; outputs and actions so far are taken.
struct BegunMigration {
    let h: ConcentratorHarness
    let key = ConsoleKey(uuid: UUIDs.a, label: "")
    let source: ConnectionID
    let person: ConnectionID
    let sequence: [UInt8]
    let cookie: [UInt8]

    init(config: ConcentratorConfig = .forTests, seed: UInt64 = 0x5EED, sequence: [UInt8] = [0x44, 0xFF, 0x87, 0xF1]) {
        h = ConcentratorHarness(config: config, seed: seed)
        source = h.bringUpVM(peer: "10.0.0.1:900")
        person = h.connectClient(ConsoleKey(uuid: UUIDs.a, label: ""), peer: "192.0.2.7:40001")
        self.sequence = sequence
        cookie = sequence + expectedSecret(seed: seed)
        h.vm(source, says: ESXi.begin(sequence))
        _ = h.takeOutput(source)
        _ = h.takeOutput(person)
        h.take()
    }

    /// A destination joins and sends COMPLETE: the console moves to it, and the source departs.
    func completed() -> ConnectionID {
        let dest = h.connectDestination(cookie: cookie)
        h.vm(dest, says: ESXi.complete(sequence))
        return dest
    }

    func event(_ kind: EventKind, peer: String?, detail: String?, at time: Date? = nil) -> ConsoleEvent {
        ConsoleEvent(kind: kind, time: time ?? h.clock.date, uuid: UUIDs.a, name: "web01", peer: peer, detail: detail)
    }
}

/// vMotion: BEGIN -> GOAHEAD, PEER -> PEER-OK, COMPLETE, and the refusals on the way.
final class ConcentratorVMotionTests: XCTestCase {
    let key = ConsoleKey(uuid: UUIDs.a, label: "")

    func testHappyPathFromBeginToComplete() {
        let seed = seedWithIACInSecret()
        let secret = expectedSecret(seed: seed)
        XCTAssertTrue(secret.contains(0xFF), "so the GOAHEAD must be escaped")
        let sequence: [UInt8] = [0x44, 0xFF, 0x87, 0xF1]
        let h = ConcentratorHarness(seed: seed)
        let source = h.bringUpVM(peer: "10.0.0.1:900")
        let person = h.connectClient(key, peer: "192.0.2.7:40001")
        h.take()
        let t0 = h.clock.date
        let event = { (kind: EventKind, peer: String, detail: String) in
            ConsoleEvent(kind: kind, time: h.clock.date, uuid: UUIDs.a, name: "web01", peer: peer, detail: detail)
        }

        XCTAssertEqual(h.vm(source, says: ESXi.begin(sequence)), [
            .record(event(.vmotionBegin, "10.0.0.1:900", "sequence 44ff87f1")),
            .send(source, [0xFF, 0xFA, 0xE8, 0x29] + Wire.iacDoubled(sequence + secret) + [0xFF, 0xF0]),
            .record(event(.vmotionGoahead, "10.0.0.1:900", "sequence 44ff87f1, source 10.0.0.1:900")),
            .schedule(.vmotion(key, generation: 1), afterNanos: 30_000_000_000),
        ])
        XCTAssertEqual(h.list().first?.migrating, true)
        XCTAssertEqual(h.status()["migrating"], "1")
        XCTAssertEqual(h.client(person, types: Array("abc".utf8) + [0xFF, 0xFF]), [], "input in the window is held")
        XCTAssertEqual(h.vm(source, says: Array("still".utf8)), [.broadcast([person], Array("still".utf8))])

        h.advance(by: 0.5)
        let dest = h.connectVM(peer: "10.0.0.2:902")
        h.negotiate(dest)
        h.take()
        XCTAssertEqual(h.vm(dest, says: ESXi.peer(sequence + secret)), [
            .send(dest, [0xFF, 0xFA, 0xE8, 0x2D, 0x44, 0xFF, 0xFF, 0x87, 0xF1, 0xFF, 0xF0]),
            .record(event(.vmotionPeer, "10.0.0.2:902", "source 10.0.0.1:900, destination 10.0.0.2:902")),
        ])
        h.vm(dest, says: ESXi.vcUUID(UUIDs.a))
        h.vm(dest, says: ESXi.name("web01"))
        XCTAssertEqual(h.take().recordKinds, [.vmotionPeer], "a destination is not a fresh power-on")

        h.advance(by: 1)
        h.take()
        let complete = h.vm(dest, says: ESXi.complete(sequence))
        XCTAssertEqual(complete, [
            .cancel(.vmotion(key, generation: 1)),
            .schedule(.departure(key), afterNanos: UInt64(ConcentratorStateMachine.feedDrainSeconds * 1e9)),
            .send(dest, Array("abc".utf8) + [0xFF, 0xFF]),
            .record({ var e = event(.vmotionComplete, "10.0.0.2:902", "source 10.0.0.1:900, destination 10.0.0.2:902, window 1500.0 ms"); e.window = 1_500_000_000; return e }()),
        ])
        // The source departs: its last bytes, sent before the COMPLETE on its own connection, may come after it.
        // They still reach the person, before what the destination prints (which waits for the source's close).
        XCTAssertEqual(h.vm(dest, says: Array("moved".utf8)), [])
        XCTAssertEqual(h.vm(source, says: Array("last".utf8)), [.broadcast([person], Array("last".utf8))])
        XCTAssertEqual(h.send(.vmClosed(source)).io, [.broadcast([person], Array("moved".utf8))])
        XCTAssertFalse(h.isArmed(.departure(key)))
        XCTAssertEqual(Array(h.take().dropFirst(complete.count)).recordKinds, [], "the source's close is no disconnect")
        XCTAssertEqual(h.machine.tallies.vmDisconnects, [.migrated: 1])
        XCTAssertEqual(h.vm(dest, says: Array("more".utf8)), [.broadcast([person], Array("more".utf8))])
        XCTAssertEqual(h.client(person, types: Array("ok".utf8)), [.send(dest, Array("ok".utf8))])
        let info = h.list().first
        XCTAssertEqual(info?.migrating, false)
        XCTAssertEqual(info?.connected, true)
        XCTAssertEqual(info?.peer, "10.0.0.2:902")
        XCTAssertEqual(info?.since, AdminProtocol.timestamp(t0), "the VM never went down")
        h.take()
        h.advance(by: 60)
        XCTAssertEqual(h.take().recordKinds, [], "the window's timer finds nothing to expire")
        XCTAssertNil(h.closed[dest])
    }

    func testPeerWithAWrongCookieIsRejected() {
        let m = BegunMigration()
        let h = m.h
        let dest = h.connectVM(peer: "10.0.0.2:902")
        h.negotiate(dest)
        h.take()
        var wrong = m.cookie
        wrong[wrong.count - 1] ^= 0x01
        let peerTime = h.clock.date
        XCTAssertEqual(h.vm(dest, says: ESXi.peer(wrong)), [.send(dest, Wire.peerRefused)],
                       "its record waits for the connection's uuid")
        h.advance(by: 0.2)
        h.take()
        h.vm(dest, says: ESXi.vcUUID(UUIDs.a))
        XCTAssertEqual(h.take().records, [
            ConsoleEvent(kind: .vmotionPeerRejected, time: peerTime, uuid: UUIDs.a, peer: "10.0.0.2:902", detail: "unknown cookie"),
        ])
        XCTAssertEqual(h.list().first?.migrating, true)
        // The source itself cannot be a destination.
        XCTAssertEqual(h.vm(m.source, says: ESXi.peer(m.cookie)), [
            .send(m.source, Wire.peerRefused),
            .record(m.event(.vmotionPeerRejected, peer: "10.0.0.1:900", detail: "connection already carries a console")),
        ])
        // The right cookie still works, from another connection.
        h.take()
        h.connectDestination(cookie: m.cookie, peer: "10.0.0.3:903")
        XCTAssertEqual(h.take().recordKinds, [.vmotionPeer])
        // The rejected connection never carries anything: it is closed when its identification time is up.
        h.advance(by: 60)
        XCTAssertEqual(h.closed[dest], false)
    }

    func testCompleteWithoutAnAcceptedPeerIsRejected() {
        let m = BegunMigration()
        let h = m.h
        let stranger = h.connectVM(peer: "10.0.0.5:905")
        h.negotiate(stranger)
        h.take()
        XCTAssertEqual(h.vm(stranger, says: ESXi.complete(m.sequence)), [.send(stranger, Wire.completeRefused)])
        XCTAssertEqual(h.vm(m.source, says: ESXi.complete(m.sequence)), [
            .send(m.source, Wire.completeRefused),
            .record(m.event(.vmotionCompleteRejected, peer: "10.0.0.1:900", detail: "no accepted VMOTION-PEER")),
        ])
        XCTAssertEqual(h.list().first?.peer, "10.0.0.1:900")
        XCTAssertEqual(h.list().first?.migrating, true)
    }

    func testCompleteWithAnotherSequenceIsRejected() {
        let m = BegunMigration()
        let h = m.h
        let dest = h.connectDestination(cookie: m.cookie, peer: "10.0.0.2:902")
        h.take()
        XCTAssertEqual(h.vm(dest, says: ESXi.complete([9, 9, 9, 9])), [
            .send(dest, Wire.completeRefused),
            .record(m.event(.vmotionCompleteRejected, peer: "10.0.0.2:902", detail: "VMOTION-COMPLETE carries another sequence")),
        ])
        XCTAssertEqual(h.vm(dest, says: ESXi.complete(m.sequence)).recordKinds, [.vmotionComplete])
    }

    /// Issue 8: a BEGIN on the source of a migration still waiting for its destination restarts it.
    func testSecondBeginOnTheSourceWithNoDestinationRestartsTheMigration() {
        let m = BegunMigration()
        let h = m.h
        let acts = h.vm(m.source, says: ESXi.begin([1, 2, 3, 4]))
        XCTAssertEqual(acts.recordKinds, [.vmotionBegin, .vmotionExpired, .vmotionGoahead])
        XCTAssertFalse(h.isArmed(.vmotion(m.key, generation: 1)))
        XCTAssertTrue(h.isArmed(.vmotion(m.key, generation: 2)))
        XCTAssertEqual(h.status()["migrating"], "1")
    }

    func testBeginOnAConnectionThatCarriesNoConsoleGetsNotNow() {
        let h = ConcentratorHarness()
        let id = h.connectVM(peer: "10.0.0.5:905")
        h.negotiate(id)
        h.vm(id, says: ESXi.vcUUID(UUIDs.b))
        h.take()
        XCTAssertEqual(h.vm(id, says: ESXi.begin([7, 7])), [
            .send(id, Wire.vmware(Wire.notNow, [7, 7])),
            .record(ConsoleEvent(kind: .vmotionNotNow, time: h.clock.date, uuid: UUIDs.b, peer: "10.0.0.5:905",
                                 detail: "connection carries no console")),
        ])
    }

    func testSourceClosingBeforeCompleteIsNoDisconnect() {
        let m = BegunMigration()
        let h = m.h
        let dest = h.connectDestination(cookie: m.cookie, name: "web01-moved", peer: "10.0.0.2:902")
        h.take()
        let closed = h.send(.vmClosed(m.source))
        XCTAssertEqual(closed.records, [m.event(.vmotionSourceClosed, peer: "10.0.0.1:900", detail: nil)])
        XCTAssertEqual(h.list().first?.connected, false)
        XCTAssertEqual(h.list().first?.migrating, true)
        h.take()
        let complete = h.vm(dest, says: ESXi.complete(m.sequence))
        XCTAssertEqual(complete.io, [], "nothing to close, nothing held")
        XCTAssertEqual(complete.records.map { "\($0.kind.rawValue): \($0.detail ?? "")" }, [
            "vmotion-complete: source 10.0.0.1:900, destination 10.0.0.2:902, window 0.0 ms",
            "name-change: web01 -> web01-moved",
        ])
        XCTAssertTrue(complete.persistedOps.contains(.touchAssignment(uuid: UUIDs.a, label: "", name: "web01-moved",
                                                                      at: h.clock.date)))
        let info = h.list().first
        XCTAssertEqual(info?.connected, true)
        XCTAssertEqual(info?.name, "web01-moved")
        XCTAssertEqual(info?.peer, "10.0.0.2:902")
    }

    func testAbortWithoutBeginIsIgnored() {
        let h = ConcentratorHarness()
        let id = h.bringUpVM()
        h.take()
        XCTAssertEqual(h.vm(id, says: ESXi.abort), [
            .record(ConsoleEvent(kind: .vmotionAbortIgnored, time: h.clock.date, uuid: UUIDs.a, name: "web01",
                                 peer: "10.0.0.1:900", detail: "VMOTION-ABORT without VMOTION-BEGIN on this connection")),
        ])
    }
}
