import Foundation
import XCTest
@testable import VSPCCore

/// What runs on timers and at the end: expiry of idle consoles, scrollback saves, shutdown.
final class ConcentratorMaintenanceTests: XCTestCase {
    let keyA = ConsoleKey(uuid: UUIDs.a, label: "")
    let keyB = ConsoleKey(uuid: UUIDs.b, label: "")

    /// The scrollback snapshots written, in order.
    private func snapshots(_ h: ConcentratorHarness) -> [[StoreOp]] {
        h.persists.compactMap { if case .scrollback = $0.token { return $0.ops }; return nil }
    }

    // MARK: expiry

    func testIdleConsoleExpiresOnlyAfterTheExpireTime() {
        let h = ConcentratorHarness()
        let id = h.bringUpVM()
        let ref = h.listeners[keyA]!.ref
        h.send(.vmClosed(id))
        h.take()
        h.advance(by: 3600) // swept every minute; idle for exactly the expire time is not more than it
        XCTAssertFalse(h.take().recordKinds.contains(.portExpired))
        XCTAssertEqual(h.list().count, 1)
        h.take()
        h.advance(by: 60)
        let acts = h.take()
        XCTAssertEqual(acts.withoutHousekeeping.nonLog, [
            .record(ConsoleEvent(kind: .portExpired, time: h.clock.date, uuid: UUIDs.a, name: "web01", detail: "port 20000")),
            .cancel(.listenerRetry(keyA)), .unbind(ref), .cancel(.persistRetry(keyA)),
            .persist([.deleteAssignment(uuid: UUIDs.a, label: "")], token: .deletion(keyA, generation: 1)),
            .schedule(.expirySweep, afterNanos: 60_000_000_000),
        ])
        XCTAssertEqual(h.list(), [])
        XCTAssertEqual(h.status()["freePorts"], "10")

        // A person on the old listener is turned away; the VM coming back is a new assignment.
        let late = h.newConnection(.client)
        XCTAssertEqual(h.send(.clientConnected(late, listener: ref, peer: "192.0.2.8:1")).nonLog,
                       [.send(late, Wire.clientOpening), .close(late, flush: false)])
        h.take()
        h.bringUpVM()
        XCTAssertEqual(h.take().records.map { "\($0.kind.rawValue) \($0.detail ?? "")" },
                       ["vm-connect port 20001", "port-assigned port 20001"])
    }

    func testConsoleWithAPersonAttachedNeverExpires() {
        let h = ConcentratorHarness()
        let id = h.bringUpVM()
        let person = h.connectClient(keyA)
        h.send(.vmClosed(id))
        h.take()
        h.advance(by: 3 * 3600)
        let acts = h.take()
        XCTAssertFalse(acts.recordKinds.contains(.portExpired))
        XCTAssertTrue(acts.persistedOps.contains(.touchAssignment(uuid: UUIDs.a, label: "", name: "web01", at: h.clock.date)),
                      "each sweep refreshes the last_seen of a console in use")
        // Once the person leaves, the hour counts from then.
        h.send(.clientClosed(person))
        h.advance(by: 3600)
        XCTAssertFalse(h.take().recordKinds.contains(.portExpired))
        h.advance(by: 60)
        XCTAssertEqual(h.take().recordKinds, [.portExpired])
    }

    func testConsoleWithItsVMConnectedNeverExpires() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        h.advance(by: 5 * 3600)
        XCTAssertFalse(h.take().recordKinds.contains(.portExpired))
        XCTAssertEqual(h.list().count, 1)
    }

    func testIdleTimeOfALoadedAssignmentCountsFromItsLastSeen() {
        let h = ConcentratorHarness(start: false)
        let recently = MockClock.originDate.addingTimeInterval(-3000)
        let longAgo = MockClock.originDate.addingTimeInterval(-10 * 86400)
        h.start(assignments: [
            Assignment(uuid: UUIDs.a, name: "web01", port: 20003, createdAt: recently, lastSeen: recently),
            Assignment(uuid: UUIDs.b, name: "old01", port: 20009, createdAt: longAgo, lastSeen: longAgo),
        ])
        h.take()
        h.advance(by: 60)
        XCTAssertEqual(h.take().records.map { "\($0.kind.rawValue) \($0.name ?? "")" }, ["port-expired old01"],
                       "a restart does not make a dead VM young again")
        h.advance(by: 540) // web01 idle for 3600 s
        XCTAssertEqual(h.take().recordKinds, [])
        h.advance(by: 60)
        XCTAssertEqual(h.take().records.map { "\($0.kind.rawValue) \($0.name ?? "") \($0.detail ?? "")" },
                       ["port-expired web01 port 20003"])
    }

    func testLastSeenInTheFutureCountsAsNow() {
        let h = ConcentratorHarness(start: false)
        let future = MockClock.originDate.addingTimeInterval(86400)
        h.start(assignments: [Assignment(uuid: UUIDs.a, name: "web01", port: 20003, createdAt: future, lastSeen: future)])
        h.advance(by: 3600)
        XCTAssertFalse(h.take().recordKinds.contains(.portExpired))
        h.advance(by: 60)
        XCTAssertEqual(h.take().recordKinds, [.portExpired])
    }

    // MARK: scrollback

    func testScrollbackIsSavedOnTheSaveTimer() {
        let h = ConcentratorHarness()
        let id = h.bringUpVM()
        h.vm(id, says: Array("hello\r\n".utf8) + [0xFF, 0xFF])
        h.advance(by: 1.9)
        XCTAssertEqual(snapshots(h), [])
        h.advance(by: 0.1)
        XCTAssertEqual(snapshots(h), [[.appendScrollback(uuid: UUIDs.a, label: "", data: Array("hello\r\n".utf8) + [0xFF],
                                                         keep: h.config.scrollbackBytes, at: h.clock.date)]])
        XCTAssertEqual(h.persists.last?.token, .scrollback([keyA]))
        h.advance(by: 10)
        XCTAssertEqual(snapshots(h).count, 1, "nothing new, nothing saved")
    }

    func testConsolesThatPrintedAreSavedTogetherInKeyOrder() {
        let h = ConcentratorHarness()
        let b = h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        let a = h.bringUpVM(UUIDs.a, name: "web01")
        h.bringUpVM(UUIDs.c, name: "quiet", peer: "10.0.0.4:900")
        h.vm(b, says: Array("b".utf8))
        h.vm(a, says: Array("a".utf8))
        h.advance(by: 2)
        XCTAssertEqual(h.persists.last?.token, .scrollback([keyA, keyB]))
        XCTAssertEqual(snapshots(h).last?.count, 2)
    }

    func testAtMostOneSnapshotPerConsoleIsInFlight() {
        let h = ConcentratorHarness()
        h.scrollbackReply = { _ in .hold }
        let id = h.bringUpVM()
        h.vm(id, says: Array("a".utf8))
        h.advance(by: 2)
        XCTAssertEqual(h.heldWrites, [.scrollback([keyA])])
        h.vm(id, says: Array("b".utf8))
        h.advance(by: 10)
        XCTAssertEqual(snapshots(h).count, 1, "the console stays dirty while its snapshot waits for the disk")
        h.completeWrite(.scrollback([keyA]))
        h.advance(by: 2)
        XCTAssertEqual(snapshots(h).count, 2)
        // Only what was printed since the last save goes to the disk (issue 8: writes grow with output).
        XCTAssertEqual(snapshots(h).last, [.appendScrollback(uuid: UUIDs.a, label: "", data: Array("b".utf8),
                                                             keep: h.config.scrollbackBytes, at: h.clock.date)])
    }

    func testFailedSaveIsRetriedWithoutNewOutput() {
        let h = ConcentratorHarness()
        var failing = true
        h.scrollbackReply = { _ in failing ? .fail("disk full") : .commit }
        let id = h.bringUpVM()
        h.vm(id, says: Array("x".utf8))
        h.advance(by: 2)
        XCTAssertEqual(snapshots(h).count, 1)
        failing = false
        h.advance(by: 2)
        XCTAssertEqual(snapshots(h).count, 2)
        XCTAssertEqual(snapshots(h).last, [.saveScrollback(uuid: UUIDs.a, label: "", data: Array("x".utf8), at: h.clock.date)])
        h.advance(by: 10)
        XCTAssertEqual(snapshots(h).count, 2)
    }

    func testPruneRunsAfterTheDelayThenEveryInterval() {
        let h = ConcentratorHarness()
        let prunes = { h.persists.filter { $0.ops == [.prune(h.config.retention)] }.count }
        h.advance(by: 4.9)
        XCTAssertEqual(prunes(), 0)
        h.advance(by: 0.1)
        XCTAssertEqual(prunes(), 1)
        h.advance(by: 3600)
        XCTAssertEqual(prunes(), 2)
    }

    // MARK: shutdown

    func testShutdownClosesEverythingAndSavesDirtyScrollback() {
        let h = ConcentratorHarness()
        h.scrollbackReply = { _ in .hold }
        let vmA = h.bringUpVM(UUIDs.a, name: "web01")
        let person = h.connectClient(keyA)
        let follower = h.admin(AdminRequest(command: "tail", vm: "web01", follow: true)).id
        let vmB = h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        let stray = h.connectVM(peer: "10.0.0.8:900")
        h.vm(vmA, says: Array("first ".utf8))
        h.advance(by: 2) // a snapshot of web01 waits for the disk
        h.vm(vmA, says: Array("second".utf8))
        let refA = h.listeners[keyA]!.ref
        let refB = h.listeners[keyB]!.ref
        h.take()
        let t = h.clock.date
        let acts = h.send(.shutdown)
        XCTAssertEqual(acts, [
            .persist([.appendScrollback(uuid: UUIDs.a, label: "", data: Array("second".utf8), keep: h.config.scrollbackBytes, at: t)],
                     token: .scrollback([keyA])),
            // Issue 13: every person's end is recorded, with its typed reason.
            .cancel(.listenerRetry(keyA)), .unbind(refA),
            .record(ConsoleEvent(kind: .clientDropped, time: t, uuid: UUIDs.a, name: "web01", peer: "192.0.2.7:40001",
                                 detail: "daemon stopping; door=telnet mode=read-write", reason: .drop(.shutdown))),
            .close(person, flush: false),
            .record(ConsoleEvent(kind: .clientDropped, time: t, uuid: UUIDs.a, name: "web01", peer: "local",
                                 detail: "daemon stopping; door=tail mode=read-only", reason: .drop(.shutdown))),
            .close(follower, flush: false),
            .cancel(.listenerRetry(keyB)), .unbind(refB),
            .close(vmA, flush: false), .close(vmB, flush: false), .close(stray, flush: false),
        ])
        // The closes, reported back.
        XCTAssertEqual(Array(h.take().dropFirst(acts.count)).records.map { "\($0.kind.rawValue) \($0.name ?? "") \($0.detail ?? "")" }, [
            "client-detach web01 door=telnet mode=read-write", "client-detach web01 door=tail mode=read-only",
            "vm-disconnect web01 daemon stopping", "vm-disconnect db01 daemon stopping",
        ])
        // Timers that still fire, a late bind and a second shutdown do nothing.
        h.advance(by: 120)
        XCTAssertEqual(h.take(), [])
        XCTAssertEqual(h.send(.shutdown), [])
        XCTAssertEqual(h.send(.listenerBound(refA)), [.unbind(refA)])
        let late = h.newConnection(.vm)
        XCTAssertEqual(h.send(.vmConnected(late, peer: "10.0.0.9:900")).nonLog, [.close(late, flush: false)])
    }
}
