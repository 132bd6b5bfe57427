import Foundation
import XCTest
@testable import VSPCCore

/// vMotion windows that end otherwise: ABORT, expiry, a closed source or destination, a fresh reconnect; and
/// what is kept meanwhile (held input, a destination's early output).
final class ConcentratorVMotionWindowTests: XCTestCase {
    func testAbortResumesOnTheSourceAndDeliversHeldInput() {
        let m = BegunMigration()
        let h = m.h
        let dest = h.connectDestination(cookie: m.cookie, peer: "10.0.0.2:902")
        XCTAssertEqual(h.client(m.person, types: Array("xyz".utf8)), [])
        h.advance(by: 2)
        h.take()
        let abort = h.vm(m.source, says: ESXi.abort)
        XCTAssertEqual(abort, [
            .cancel(.vmotion(m.key, generation: 1)),
            .close(dest, flush: false),
            .send(m.source, Array("xyz".utf8)),
            .record(m.event(.vmotionAbort, peer: "10.0.0.1:900",
                            detail: "source 10.0.0.1:900, destination 10.0.0.2:902, window 2000.0 ms")),
        ])
        XCTAssertEqual(Array(h.take().dropFirst(abort.count)).recordKinds, [], "the dropped destination's close")
        XCTAssertEqual(h.client(m.person, types: Array("next".utf8)), [.send(m.source, Array("next".utf8))])
        XCTAssertEqual(h.list().first?.migrating, false)
        XCTAssertEqual(h.status()["migrating"], "0")
        XCTAssertEqual(h.vm(m.source, says: ESXi.abort).recordKinds, [.vmotionAbortIgnored])
    }

    func testExpiryResumesOnTheSourceAndDeliversHeldInput() {
        let m = BegunMigration()
        let h = m.h
        h.client(m.person, types: Array("held".utf8))
        h.advance(by: 29.9)
        XCTAssertEqual(h.take().recordKinds, [])
        h.advance(by: 0.1)
        XCTAssertEqual(h.take().withoutHousekeeping.nonLog, [
            .send(m.source, Array("held".utf8)),
            .record(m.event(.vmotionExpired, peer: "10.0.0.1:900",
                            detail: "source 10.0.0.1:900, destination none, window 30000.0 ms")),
        ])
        XCTAssertEqual(h.client(m.person, types: Array("more".utf8)), [.send(m.source, Array("more".utf8))])
        XCTAssertEqual(h.list().first?.migrating, false)
        // A new migration may begin, with a new generation.
        XCTAssertEqual(h.vm(m.source, says: ESXi.begin([5, 6])).recordKinds, [.vmotionBegin, .vmotionGoahead])
        XCTAssertTrue(h.isArmed(.vmotion(m.key, generation: 2)))
    }

    func testExpiryWithAPeeredDestinationClosesIt() {
        let m = BegunMigration()
        let h = m.h
        let dest = h.connectDestination(cookie: m.cookie, peer: "10.0.0.2:902")
        h.take()
        h.advance(by: 30)
        let acts = h.take()
        XCTAssertEqual(acts.io, [.close(dest, flush: false)])
        XCTAssertEqual(acts.records.map(\.detail), ["source 10.0.0.1:900, destination 10.0.0.2:902, window 30000.0 ms"])
        XCTAssertEqual(h.list().first?.peer, "10.0.0.1:900")
    }

    func testDestinationClosingBeforeCompleteFreesTheSlot() {
        let m = BegunMigration()
        let h = m.h
        let first = h.connectDestination(cookie: m.cookie, peer: "10.0.0.2:902")
        h.take()
        // While it is peered, another destination is refused.
        let other = h.connectDestination(cookie: m.cookie, peer: "10.0.0.4:904")
        XCTAssertEqual(h.take().records.map(\.detail), ["the migration already has a destination"])
        XCTAssertEqual(Array(h.takeOutput(other).suffix(Wire.peerRefused.count)), Wire.peerRefused)
        let closed = h.send(.vmClosed(first))
        XCTAssertEqual(closed.records, [
            m.event(.vmotionDestinationClosed, peer: "10.0.0.2:902", detail: "closed before VMOTION-COMPLETE"),
        ])
        XCTAssertEqual(h.list().first?.migrating, true)
        h.take()
        let second = h.connectDestination(cookie: m.cookie, peer: "10.0.0.3:903")
        XCTAssertEqual(h.take().recordKinds, [.vmotionPeer])
        let complete = h.vm(second, says: ESXi.complete(m.sequence))
        XCTAssertEqual(complete.records.map(\.detail), ["source 10.0.0.1:900, destination 10.0.0.3:903, window 0.0 ms"])
        XCTAssertEqual(h.list().first?.peer, "10.0.0.3:903")
    }

    func testHoldBufferOverflowIsBoundedAndReported() {
        var config = ConcentratorConfig.forTests
        config.vmotionHoldLimit = 8
        let m = BegunMigration(config: config)
        let h = m.h
        XCTAssertEqual(h.client(m.person, types: Array("0123456".utf8)), [])
        XCTAssertEqual(h.client(m.person, types: Array("789ab".utf8)), [
            .log(.warning, "vMotion of web01: hold buffer full, 4 bytes of input from 192.0.2.7:40001 discarded"),
        ])
        let dest = h.connectDestination(cookie: m.cookie)
        h.take()
        XCTAssertEqual(h.vm(dest, says: ESXi.complete(m.sequence)).filter { if case .record = $0 { return false }; return true }, [
            .cancel(.vmotion(m.key, generation: 1)),
            .schedule(.departure(m.key), afterNanos: UInt64(ConcentratorStateMachine.feedDrainSeconds * 1e9)),
            .log(.warning, "vMotion of web01: 4 bytes of client input exceeded the hold buffer and were discarded"),
            .send(dest, Array("01234567".utf8)),
        ])
    }

    func testHeldInputIsDiscardedIfTheDestinationIsNotReading() {
        let m = BegunMigration()
        let h = m.h
        h.client(m.person, types: Array("typed".utf8))
        let dest = h.connectDestination(cookie: m.cookie)
        h.send(.writabilityChanged(dest, writable: false))
        h.take()
        let complete = h.vm(dest, says: ESXi.complete(m.sequence))
        XCTAssertEqual(complete.io, [], "no input for the destination; the source departs")
        XCTAssertTrue(complete.logs.contains { $0 == (.warning, "vMotion of web01: held input discarded, VM is not reading") })
    }

    func testDestinationEarlyOutputIsDeliveredAfterComplete() {
        let m = BegunMigration()
        let h = m.h
        let dest = h.connectVM(peer: "10.0.0.2:902")
        h.negotiate(dest)
        h.vm(dest, says: Array("pre ".utf8))
        h.vm(dest, says: ESXi.peer(m.cookie))
        h.vm(dest, says: Array("post".utf8) + [0xFF, 0xFF])
        XCTAssertEqual(h.takeOutput(m.person), [], "not before it carries the console")
        XCTAssertEqual(h.vm(m.source, says: Array("src ".utf8)), [.broadcast([m.person], Array("src ".utf8))])
        h.take()
        XCTAssertEqual(h.vm(dest, says: ESXi.complete(m.sequence)).io, [], "after the source's last bytes")
        XCTAssertEqual(h.vm(m.source, says: Array("last ".utf8)), [.broadcast([m.person], Array("last ".utf8))])
        XCTAssertEqual(h.send(.vmClosed(m.source)).io, [.broadcast([m.person], Array("pre post".utf8) + [0xFF, 0xFF])])
        XCTAssertEqual(h.admin(AdminRequest(command: "tail", vm: "web01")).rest, Array("src last pre post".utf8) + [0xFF])
    }

    /// A source that never closes after the COMPLETE is closed once its time is up, with a warning, and what the
    /// destination printed meanwhile goes out then.
    func testADepartingSourceThatNeverClosesIsClosedInTime() {
        let m = BegunMigration()
        let h = m.h
        let dest = m.completed()
        h.vm(dest, says: Array("on dest".utf8))
        XCTAssertEqual(h.takeOutput(m.person), [])
        h.take()
        h.advance(by: ConcentratorStateMachine.feedDrainSeconds)
        let ended = h.take()
        XCTAssertEqual(ended.io, [.close(m.source, flush: false), .broadcast([m.person], Array("on dest".utf8))])
        XCTAssertTrue(ended.logs.contains { $0.level == .warning && $0.message.contains("the vMotion source did not close within 10 s") })
        XCTAssertEqual(h.machine.tallies.vmDisconnects, [.migrated: 1])
        XCTAssertEqual(ended.recordKinds, [], "the VM did not go down")
    }

    /// What the destination prints while the source departs is bounded: past the early-output limit, the source
    /// is closed and everything goes out, in order.
    func testTheDestinationsOutputWhileTheSourceDepartsIsBounded() {
        var config = ConcentratorConfig.forTests
        config.earlyOutputLimit = 16
        let m = BegunMigration(config: config)
        let h = m.h
        let dest = m.completed()
        h.vm(dest, says: Array("0123456789".utf8))
        h.take()
        let overflow = h.vm(dest, says: Array("abcdefghij".utf8))
        XCTAssertEqual(overflow.io, [.close(m.source, flush: false), .broadcast([m.person], Array("0123456789".utf8)),
                                     .broadcast([m.person], Array("abcdefghij".utf8))])
        XCTAssertTrue(overflow.logs.contains { $0.level == .warning && $0.message.contains("before the source closed") })
        XCTAssertFalse(h.isArmed(.departure(m.key)))
    }

    /// The VM moves on again before the first source closed: that source is closed then, and the output held for
    /// the first destination goes out before the second destination's.
    func testAnotherCompleteBeforeTheSourceClosedEndsItsDeparture() {
        let m = BegunMigration()
        let h = m.h
        let first = m.completed()
        h.vm(first, says: Array("first ".utf8))
        let sequence: [UInt8] = [9, 9, 9, 9]
        h.vm(first, says: ESXi.begin(sequence))
        // The GOAHEAD's payload (IAC SB 232 41 ... IAC SE), unescaped: the sequence, then the secret.
        let output = h.takeOutput(first)
        let start = (0...(output.count - 4)).last { Array(output[$0..<$0 + 4]) == [0xFF, 0xFA, 0xE8, 0x29] } ?? 0
        var payload: [UInt8] = []
        var i = start + 4
        while i < output.count - 2 {
            payload.append(output[i])
            i += output[i] == 0xFF ? 2 : 1
        }
        let secret = Array(payload.dropFirst(sequence.count))
        let second = h.connectDestination(cookie: sequence + secret, peer: "10.0.0.3:903")
        h.take()
        let complete = h.vm(second, says: ESXi.complete(sequence))
        XCTAssertEqual(complete.io, [.close(m.source, flush: false), .broadcast([m.person], Array("first ".utf8))])
        h.vm(second, says: Array("second".utf8))
        // The first destination is the departing source now: its last bytes still come before the second's.
        XCTAssertEqual(h.vm(first, says: Array("last ".utf8)), [.broadcast([m.person], Array("last ".utf8))])
        XCTAssertEqual(h.send(.vmClosed(first)).io, [.broadcast([m.person], Array("second".utf8))])
    }

    func testCompleteCancelsTheWindowTimer() {
        let m = BegunMigration()
        let h = m.h
        XCTAssertTrue(h.isArmed(.vmotion(m.key, generation: 1)))
        let dest = h.connectDestination(cookie: m.cookie, peer: "10.0.0.2:902")
        h.take()
        let complete = h.vm(dest, says: ESXi.complete(m.sequence))
        XCTAssertEqual(complete.filter { if case .cancel(.vmotion) = $0 { return true }; return false },
                       [.cancel(.vmotion(m.key, generation: 1))])
        XCTAssertFalse(h.isArmed(.vmotion(m.key, generation: 1)))
        XCTAssertEqual(h.status()["migrating"], "0")
    }

    func testAbortCancelsTheWindowTimer() {
        let m = BegunMigration()
        let h = m.h
        XCTAssertTrue(h.isArmed(.vmotion(m.key, generation: 1)))
        let abort = h.vm(m.source, says: ESXi.abort)
        XCTAssertEqual(abort.filter { if case .cancel(.vmotion) = $0 { return true }; return false },
                       [.cancel(.vmotion(m.key, generation: 1))])
        XCTAssertFalse(h.isArmed(.vmotion(m.key, generation: 1)))
        XCTAssertEqual(h.status()["migrating"], "0")
        // An ABORT that ends nothing cancels nothing.
        XCTAssertEqual(h.vm(m.source, says: ESXi.abort).filter { if case .cancel = $0 { return true }; return false }, [])
    }

    func testAFreshReconnectEndsTheMigrationAndCancelsItsTimer() {
        let m = BegunMigration()
        let h = m.h
        h.client(m.person, types: Array("typed".utf8))
        let dest = h.connectDestination(cookie: m.cookie, peer: "10.0.0.2:902")
        // The source closes as for a migration; the VM then starts afresh instead of completing it.
        h.send(.vmClosed(m.source))
        h.take()
        let fresh = h.bringUpVM(peer: "10.0.0.9:909")
        let acts = h.take()
        XCTAssertTrue(acts.contains(.cancel(.vmotion(m.key, generation: 1))))
        XCTAssertFalse(h.isArmed(.vmotion(m.key, generation: 1)))
        XCTAssertTrue(acts.records.contains(m.event(.vmotionExpired, peer: "10.0.0.9:909",
                                                    detail: "VM reconnected afresh; source 10.0.0.1:900, destination 10.0.0.2:902, window 0.0 ms")))
        XCTAssertTrue(acts.contains(.close(dest, flush: false)))
        XCTAssertTrue(acts.contains(.send(fresh, Array("typed".utf8))), "the held input goes to the new connection")
        XCTAssertEqual(h.status()["migrating"], "0")
        XCTAssertEqual(h.list().first?.peer, "10.0.0.9:909")
    }

    func testGenerationsAreUniqueAcrossConsoles() {
        let h = ConcentratorHarness()
        let a = h.bringUpVM(UUIDs.a, name: "web01", peer: "10.0.0.1:900")
        let b = h.bringUpVM(UUIDs.b, name: "web02", peer: "10.0.0.1:901")
        h.vm(a, says: ESXi.begin([1, 1]))
        h.vm(b, says: ESXi.begin([1, 1]))
        XCTAssertTrue(h.isArmed(.vmotion(ConsoleKey(uuid: UUIDs.a, label: ""), generation: 1)))
        XCTAssertTrue(h.isArmed(.vmotion(ConsoleKey(uuid: UUIDs.b, label: ""), generation: 2)))
        XCTAssertEqual(h.status()["migrating"], "2")
    }
}
