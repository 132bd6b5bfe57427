import Foundation
import XCTest
@testable import VSPCCore

/// The consoles' ports: binding, a taken port, bind failures and retries, exhaustion, the assignment write.
final class ConcentratorPortTests: XCTestCase {
    let keyA = ConsoleKey(uuid: UUIDs.a, label: "")

    private func upserts(_ actions: [ConcentratorAction]) -> [Assignment] {
        actions.persistedOps.compactMap { if case .upsertAssignment(let a) = $0 { return a }; return nil }
    }

    func testLoadedAssignmentsAreBoundAndListedAtStart() {
        let h = ConcentratorHarness(start: false)
        let seen = MockClock.originDate.addingTimeInterval(-100)
        let keyB = ConsoleKey(uuid: UUIDs.b, label: "com2")
        let acts = h.start(assignments: [
            Assignment(uuid: UUIDs.a, name: "web01", port: 20003, createdAt: seen, lastSeen: seen),
            Assignment(uuid: UUIDs.b, label: "com2", name: "db01", port: 20007, createdAt: seen, lastSeen: seen),
        ])
        XCTAssertEqual(acts, [
            .bind(ListenerRef(console: keyA, generation: 1), port: 20003),
            .bind(ListenerRef(console: keyB, generation: 2), port: 20007),
            .log(.info, "loaded 2 port assignments"),
            .schedule(.expirySweep, afterNanos: 60_000_000_000),
            .schedule(.scrollbackSave, afterNanos: 2_000_000_000),
            .schedule(.prune, afterNanos: 5_000_000_000),
        ])
        XCTAssertEqual(h.take().recordKinds, [], "nothing recorded, nothing written for known ports")
        XCTAssertEqual(h.persists.count, 0)
        XCTAssertEqual(h.list().map { "\($0.name):\($0.port):\($0.listening):\($0.connected)" },
                       ["db01:20007:true:false", "web01:20003:true:false"])
        XCTAssertEqual(h.list().first?.since, AdminProtocol.timestamp(seen))
        XCTAssertEqual(h.send(.started(detail: "proxy 0.0.0.0:13370")),
                       [.record(ConsoleEvent(kind: .daemonStart, time: h.clock.date, detail: "proxy 0.0.0.0:13370"))])
        // A new VM gets a port no assignment holds.
        h.bringUpVM(UUIDs.c, name: "app01")
        XCTAssertEqual(h.binds.last?.port, 20000)
    }

    func testNewVMWhosePortIsTakenMovesToTheNextFreePort() {
        let h = ConcentratorHarness()
        h.bindReply = { _, port in port == 20000 ? .addressInUse : .bound }
        h.bringUpVM(UUIDs.a, name: "web01")
        XCTAssertEqual(h.binds.map(\.port), [20000, 20001])
        XCTAssertEqual(h.binds.map(\.ref.generation), [1, 2], "each bind is a new listener generation")
        let acts = h.take()
        XCTAssertEqual(acts.recordKinds, [.vmConnect, .portAssigned], "moving on is no bind failure")
        XCTAssertEqual(acts.records.last?.detail, "port 20001")
        XCTAssertTrue(acts.logs.contains { $0 == (.warning, "port 20000 is taken by another process; trying 20001 for web01") })
        XCTAssertEqual(upserts(acts).map(\.port), [20001])
        XCTAssertEqual(h.list().map { "\($0.port):\($0.listening)" }, ["20001:true"])
        // The taken port is not handed to the next VM either.
        h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        XCTAssertEqual(h.binds.last?.port, 20002)
        XCTAssertEqual(h.status()["freePorts"], "7")
    }

    func testKnownVMWhosePortIsTakenKeepsItAndRetries() {
        let h = ConcentratorHarness(start: false)
        var taken = true
        h.bindReply = { _, _ in taken ? .addressInUse : .bound }
        h.start(assignments: [Assignment(uuid: UUIDs.a, name: "web01", port: 20005, createdAt: MockClock.originDate,
                                         lastSeen: MockClock.originDate)])
        let acts = h.take()
        XCTAssertEqual(acts.records, [
            ConsoleEvent(kind: .portBindFailed, time: h.clock.date, uuid: UUIDs.a, name: "web01",
                         detail: "port 20005: \(ConcentratorHarness.errAddressInUse)"),
        ])
        XCTAssertTrue(acts.logs.contains { $0.level == .error && $0.message.hasSuffix("will retry every 30 s") })
        XCTAssertEqual(h.remaining(.listenerRetry(keyA)), 30_000_000_000)
        XCTAssertEqual(h.binds.map(\.port), [20005], "a known VM never moves")
        XCTAssertEqual(upserts(acts), [])
        let info = h.list().first
        XCTAssertEqual(info?.listening, false)
        XCTAssertEqual(info?.listenError, ConcentratorHarness.errAddressInUse)

        // The VM comes back meanwhile: it keeps its port.
        h.take()
        h.bringUpVM(UUIDs.a, name: "web01")
        XCTAssertEqual(h.take().records.map { "\($0.kind.rawValue) \($0.detail ?? "")" },
                       ["vm-connect port 20005", "port-reused port 20005"])

        taken = false
        h.advance(by: 29.9)
        XCTAssertEqual(h.binds.count, 1)
        h.advance(by: 0.1)
        XCTAssertEqual(h.binds.map(\.port), [20005, 20005])
        XCTAssertEqual(h.binds.last?.ref, ListenerRef(console: keyA, generation: 2))
        let retried = h.take()
        XCTAssertEqual(retried.recordKinds, [], "nothing was lost: no port-assigned")
        XCTAssertEqual(upserts(retried), [])
        XCTAssertFalse(h.isArmed(.listenerRetry(keyA)))
        XCTAssertEqual(h.list().first?.listening, true)
        XCTAssertNil(h.list().first?.listenError)
    }

    func testFailureOtherThanAddressInUseKeepsTheNewPortAndRetries() {
        let h = ConcentratorHarness()
        var failing = true
        h.bindReply = { _, _ in failing ? .failed("Permission denied (errno: 13)") : .bound }
        h.bringUpVM()
        let acts = h.take()
        XCTAssertEqual(h.binds.map(\.port), [20000])
        XCTAssertEqual(acts.recordKinds, [.vmConnect, .portBindFailed, .portAssigned])
        XCTAssertEqual(acts.records.map(\.detail), ["port 20000", "port 20000: Permission denied (errno: 13)", "port 20000"])
        XCTAssertEqual(upserts(acts).map(\.port), [20000], "the assignment is written although not listening")
        let info = h.list().first
        XCTAssertEqual(info?.listening, false)
        XCTAssertEqual(info?.listenError, "Permission denied (errno: 13)")
        XCTAssertEqual(h.machine.daemonStatus().notListening, 1, "issue 15 item 7: status notes it")
        failing = false
        h.advance(by: 30)
        XCTAssertEqual(h.binds.map(\.port), [20000, 20000])
        XCTAssertEqual(h.list().first?.listening, true)
        XCTAssertEqual(h.machine.daemonStatus().notListening, 0)
    }

    func testEveryTriedPortTakenEndsInARetryOfTheLastOne() {
        var config = ConcentratorConfig.forTests
        config.portRange = 20000...20002
        let h = ConcentratorHarness(config: config)
        h.bindReply = { _, _ in .addressInUse }
        h.bringUpVM()
        XCTAssertEqual(h.binds.map(\.port), [20000, 20001, 20002])
        let acts = h.take()
        XCTAssertEqual(acts.recordKinds, [.vmConnect, .portBindFailed, .portAssigned])
        XCTAssertEqual(acts.records[1].detail, "port 20002: \(ConcentratorHarness.errAddressInUse)")
        XCTAssertTrue(h.isArmed(.listenerRetry(keyA)))
        XCTAssertEqual(h.status()["freePorts"], "0", "taken ports stay out of the pool")
    }

    func testExhaustedPoolRecordsPortExhaustedAndClosesTheConnection() {
        var config = ConcentratorConfig.forTests
        config.portRange = 20000...20001
        let h = ConcentratorHarness(config: config)
        h.bringUpVM(UUIDs.a, name: "web01", peer: "10.0.0.1:900")
        h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.2:900")
        let c = h.connectVM(peer: "10.0.0.3:900")
        h.negotiate(c)
        h.vm(c, says: ESXi.doProxy())
        h.vm(c, says: ESXi.vcUUID(UUIDs.c))
        h.take()
        let acts = h.vm(c, says: ESXi.name("app01"))
        XCTAssertEqual(acts, [
            .cancel(.negotiation(c)), .cancel(.name(c)),
            .record(ConsoleEvent(kind: .portExhausted, time: h.clock.date, uuid: UUIDs.c, name: "app01",
                                 peer: "10.0.0.3:900", detail: "no free port left in 20000-20001")),
            .close(c, flush: false),
        ])
        XCTAssertEqual(h.take().recordKinds, [.portExhausted], "its close is no vm-disconnect")
        XCTAssertEqual(h.binds.count, 2)
        XCTAssertEqual(h.list().map(\.name), ["db01", "web01"])
        XCTAssertEqual(h.status()["freePorts"], "0")
    }

    /// Issue 8: a console whose assignment cannot be written is still listed (unsaved) and served; the write is
    /// retried with back-off (1 s, 2 s, ...), and failures are logged at most once a minute.
    func testAssignmentWriteFailureIsRetriedWithBackoff() {
        let h = ConcentratorHarness()
        var failures = 1
        h.assignmentReply = { _ in
            if failures > 0 { failures -= 1; return .fail("disk I/O error") }
            return .commit
        }
        h.bringUpVM()
        let t0 = h.clock.date
        let acts = h.take()
        XCTAssertEqual(acts.recordKinds, [.vmConnect])
        XCTAssertTrue(acts.logs.contains {
            $0 == (.error, "cannot write to the database (disk I/O error); 1 VM serial port served unsaved, 0 removals pending; retrying")
        })
        XCTAssertEqual(h.remaining(.persistRetry(keyA)), 1_000_000_000)
        XCTAssertEqual(h.list().map(\.saved), [false])
        XCTAssertEqual(h.list().map(\.port), [20000])
        h.advance(by: 0.9)
        XCTAssertEqual(upserts(h.take()), [])
        h.advance(by: 0.1)
        let retried = h.take()
        XCTAssertEqual(upserts(retried), [Assignment(uuid: UUIDs.a, name: "web01", port: 20000, createdAt: t0,
                                                     lastSeen: h.clock.date)])
        XCTAssertEqual(h.persists.last?.token, .assignment(keyA, generation: 2))
        XCTAssertEqual(retried.records, [
            ConsoleEvent(kind: .portAssigned, time: h.clock.date, uuid: UUIDs.a, name: "web01", detail: "port 20000"),
        ])
        XCTAssertTrue(retried.logs.contains { $0.0 == .notice && $0.1.hasPrefix("the database takes writes again") })
        XCTAssertEqual(h.list().map(\.port), [20000])
        XCTAssertEqual(h.list().map(\.saved), [true])
    }

    func testOnlyTheLatestAssignmentWriteCounts() {
        let h = ConcentratorHarness()
        h.assignmentReply = { _ in .hold }
        h.bringUpVM()
        let first = WriteToken.assignment(keyA, generation: 1)
        XCTAssertEqual(h.heldWrites, [first])
        h.completeWrite(first, error: "database is locked")
        h.advance(by: 1)
        let second = WriteToken.assignment(keyA, generation: 2)
        XCTAssertEqual(h.heldWrites, [second])
        h.take()
        XCTAssertEqual(h.send(.writeCompleted(first, error: nil)), [], "a late answer to an older write")
        XCTAssertEqual(h.list().map(\.saved), [false])
        XCTAssertEqual(h.completeWrite(second).recordKinds, [.portAssigned])
        XCTAssertEqual(h.list().count, 1)
        XCTAssertEqual(h.send(.writeCompleted(second, error: nil)), [], "port-assigned is recorded once")
    }

    func testStaleBindResultIsUnbound() {
        let h = ConcentratorHarness(start: false)
        h.bindReply = { _, _ in .hold }
        let gone = MockClock.originDate.addingTimeInterval(-30 * 86400)
        h.start(assignments: [Assignment(uuid: UUIDs.a, name: "web01", port: 20003, createdAt: gone, lastSeen: gone)])
        let ref = ListenerRef(console: keyA, generation: 1)
        XCTAssertEqual(h.heldBinds, [ref: 20003])
        h.advance(by: 60) // the first sweep expires it while its bind is still pending
        XCTAssertEqual(h.take().recordKinds, [.portExpired])
        h.bindReply = { _, _ in .bound }
        let descriptors = h.status()["descriptors"]
        h.take()
        XCTAssertEqual(h.send(.listenerBound(ref)), [.unbind(ref)])
        XCTAssertEqual(h.status()["descriptors"], descriptors)
        XCTAssertEqual(h.list(), [])
    }
}
