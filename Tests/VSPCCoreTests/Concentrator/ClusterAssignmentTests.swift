import Foundation
import XCTest
@testable import VSPCCore

/// Issue 18: assignments are shared. A new console is served once its assignment has committed; the database's
/// answer decides its port; other nodes' assignments are bound here too.
final class ClusterAssignmentTests: XCTestCase {
    private let keyA = ConsoleKey(uuid: UUIDs.a, label: "")
    private let keyB = ConsoleKey(uuid: UUIDs.b, label: "")

    /// The assignment writes asked for, in order: their token and the port written.
    private func assignmentWrites(_ h: ConcentratorHarness) -> [(token: WriteToken, port: Int)] {
        h.persists.compactMap { write in
            guard case let .assignment(key, _)? = write.token, key == keyA,
                  case let .upsertAssignment(a)? = write.ops.first else { return nil }
            return (write.token!, a.port)
        }
    }

    func testANewConsoleWaitsForItsAssignmentToCommit() {
        let h = ConcentratorHarness(config: .clusterTests)
        h.assignmentReply = { _ in .hold }
        h.take()
        let vm = h.bringUpVM()
        XCTAssertTrue(h.binds.isEmpty, "no bind before the commit")
        XCTAssertEqual(h.records.map(\.kind), [])
        XCTAssertEqual(h.list(), [])
        XCTAssertEqual(h.takeClaims(), [])
        guard let write = assignmentWrites(h).last else { return XCTFail("no assignment write") }
        XCTAssertEqual(write.port, 20000)
        h.completeWrite(write.token)
        XCTAssertEqual(h.binds.map(\.port), [20000])
        XCTAssertEqual(h.records.map(\.kind), [.portAssigned, .vmConnect])
        XCTAssertEqual(h.takeClaims(), [.claim(keyA)])
        XCTAssertEqual(h.list().map(\.port), [20000])
        XCTAssertNil(h.closed[vm])
    }

    func testAConflictWithAPortMovesTheConsoleThere() {
        let h = ConcentratorHarness(config: .clusterTests)
        h.assignmentReply = { _ in .hold }
        h.take()
        h.bringUpVM()
        guard let write = assignmentWrites(h).last else { return XCTFail("no assignment write") }
        h.send(.writeCompleted(write.token, error: StoreFailure(.conflict, "assigned elsewhere", assignedPort: 20005)))
        XCTAssertEqual(h.binds.map(\.port), [20005])
        XCTAssertEqual(h.records.filter { $0.kind == .portAssigned }.map(\.detail), ["port 20005"])
        XCTAssertEqual(h.records.filter { $0.kind == .vmConnect }.map(\.detail), ["port 20005"])
        XCTAssertEqual(h.list().map(\.port), [20005])
        // The port first tried is free again here; the one taken is not.
        XCTAssertEqual(h.status()["freePorts"], "9")
        h.assignmentReply = { _ in .commit }
        h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        XCTAssertEqual(h.list().map(\.port), [20001, 20005])
    }

    func testAConflictWithoutAPortTriesTheNextPortAtOnce() {
        let h = ConcentratorHarness(config: .clusterTests)
        h.assignmentReply = { _ in .hold }
        h.bringUpVM()
        guard let first = assignmentWrites(h).last else { return XCTFail("no assignment write") }
        h.send(.writeCompleted(first.token, error: StoreFailure(.conflict, "port taken")))
        XCTAssertEqual(assignmentWrites(h).map(\.port), [20000, 20001])
        XCTAssertTrue(h.binds.isEmpty)
        guard let second = assignmentWrites(h).last else { return XCTFail("no second write") }
        h.completeWrite(second.token)
        XCTAssertEqual(h.binds.map(\.port), [20001])
        XCTAssertEqual(h.list().map(\.port), [20001])
        // 20000 stays reserved: another console holds it.
        h.assignmentReply = { _ in .commit }
        h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        XCTAssertEqual(Set(h.list().map(\.port)), [20001, 20002])
        XCTAssertEqual(h.status()["freePorts"], "7")
    }

    /// Two nodes pick the same free port at once: the other node's assignment arrives while this node's own
    /// write of that port is on its way. The other node's console binds at once (this node's console is not
    /// bound before its commit); this node's write meets the conflict and moves on.
    func testAnotherNodesAssignmentOfAPortThisNodeIsStillWritingBindsAtOnce() {
        let h = ConcentratorHarness(config: .clusterTests)
        h.assignmentReply = { _ in .hold }
        h.bringUpVM()
        guard let first = assignmentWrites(h).last else { return XCTFail("no assignment write") }
        XCTAssertEqual(first.port, 20000)
        let date = MockClock.originDate
        h.news(.assignments([Assignment(uuid: UUIDs.b, name: "db01", port: 20000, createdAt: date, lastSeen: date)],
                            removed: []))
        XCTAssertEqual(h.listeners[keyB]?.port, 20000)
        h.send(.writeCompleted(first.token, error: StoreFailure(.conflict, "port taken")))
        guard let second = assignmentWrites(h).last else { return XCTFail("no second write") }
        XCTAssertEqual(second.port, 20001)
        h.completeWrite(second.token)
        XCTAssertEqual(h.listeners[keyA]?.port, 20001)
        XCTAssertEqual(h.listeners[keyB]?.port, 20000)
        XCTAssertEqual(Set(h.list().map(\.port)), [20000, 20001])
    }

    func testThirtyTwoConflictsRefuseTheVM() {
        var config = ConcentratorConfig.clusterTests
        config.portRange = 20000...20099
        let h = ConcentratorHarness(config: config)
        h.assignmentReply = { _ in .hold }
        let vm = h.bringUpVM()
        for _ in 0..<32 {
            guard let write = assignmentWrites(h).last, h.closed[vm] == nil else { break }
            h.send(.writeCompleted(write.token, error: StoreFailure(.conflict, "port taken")))
        }
        XCTAssertEqual(assignmentWrites(h).count, 32)
        XCTAssertEqual(h.closed[vm], false)
        let refused = h.records.filter { $0.kind == .portRefused }
        XCTAssertEqual(refused.map(\.detail), ["no port could be assigned: 32 ports tried are held by other consoles"])
        XCTAssertEqual(h.list(), [])
        XCTAssertTrue(h.binds.isEmpty)
    }

    func testAnUnreachableDatabaseRefusesNewVMsWithOneLogLineAMinute() {
        let h = ConcentratorHarness(config: .clusterTests)
        h.assignmentReply = { _ in .hold }
        h.take()
        let vm = h.bringUpVM()
        guard let write = assignmentWrites(h).last else { return XCTFail("no assignment write") }
        h.send(.writeCompleted(write.token, error: StoreFailure(.unreachable, "connection refused")))
        XCTAssertEqual(h.closed[vm], false)
        XCTAssertEqual(h.machine.tallies.vmDisconnects[.refused], 1)
        XCTAssertEqual(h.records.map(\.kind), [.portRefused])
        XCTAssertEqual(h.records.first?.detail, "the database is unreachable; no new port can be assigned")
        let errors = h.take().logs.filter { $0.level == .error }.map(\.message)
        XCTAssertEqual(errors.count, 1)
        XCTAssertTrue(errors.first?.hasPrefix("cannot assign a port to VM web01 (") == true, "\(errors)")
        XCTAssertTrue(errors.first?.contains("the database is unreachable") == true)
        XCTAssertEqual(h.list(), [])
        XCTAssertFalse(h.machine.knows(keyA))
        // A second refusal within the minute: recorded, not logged.
        h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        guard let next = h.persists.last?.token else { return XCTFail("no write") }
        h.send(.writeCompleted(next, error: StoreFailure(.unreachable, "connection refused")))
        let again = h.take()
        XCTAssertEqual(again.recordKinds, [.portRefused])
        XCTAssertEqual(again.logs.filter { $0.level == .error }.count, 0)
    }

    func testOtherNodesAssignmentsAreCreatedBoundMovedAndRemoved() {
        let h = ConcentratorHarness(config: .clusterTests)
        let date = MockClock.originDate
        h.news(.assignments([Assignment(uuid: UUIDs.b, name: "db01", port: 20004, createdAt: date, lastSeen: date)],
                            removed: []))
        XCTAssertEqual(h.listeners[keyB]?.port, 20004)
        XCTAssertEqual(h.list().map { [$0.name, "\($0.port)", "\($0.connected)"] }, [["db01", "20004", "false"]])
        XCTAssertEqual(h.persists.filter { $0.token != nil }.count, 0, "not written again here")
        // A person can wait on it here; a local VM gets another port.
        let person = h.connectClient(keyB)
        h.bringUpVM()
        XCTAssertEqual(h.list().first { $0.uuid == UUIDs.a }?.port, 20000)
        // Moved by the database.
        h.news(.assignments([Assignment(uuid: UUIDs.b, name: "db01", port: 20006, createdAt: date, lastSeen: date)],
                            removed: []))
        XCTAssertEqual(h.listeners[keyB]?.port, 20006)
        // A port held here by another console: logged, kept.
        h.take()
        h.news(.assignments([Assignment(uuid: UUIDs.b, name: "db01", port: 20000, createdAt: date, lastSeen: date)],
                            removed: []))
        XCTAssertEqual(h.listeners[keyB]?.port, 20006)
        XCTAssertEqual(h.take().logs.filter { $0.level == .error }.count, 1)
        // Removed: it goes here too (its people with it); the connected one is written again instead.
        h.news(.assignments([], removed: [keyB, keyA]))
        XCTAssertFalse(h.machine.knows(keyB))
        XCTAssertNil(h.listeners[keyB])
        XCTAssertNotNil(h.closed[person])
        XCTAssertTrue(h.machine.knows(keyA))
        XCTAssertTrue(h.take().persistedOps.contains { if case .upsertAssignment(let a) = $0 { return a.uuid == UUIDs.a }; return false })
    }

    func testAConnectedConsoleRemovedElsewhereIsWrittenAgainAndKeptThroughAnOutage() {
        let h = ConcentratorHarness(config: .clusterTests)
        let vm = h.bringUpVM()
        h.news(.claimed(keyA, Owner(node: "a", epoch: 1)))
        h.assignmentReply = { _ in .hold }
        h.news(.assignments([], removed: [keyA]))
        guard let rewrite = assignmentWrites(h).last, assignmentWrites(h).count == 2 else { return XCTFail("not written again") }
        // Its port went to another console meanwhile: the next port; then the database is out of reach.
        h.send(.writeCompleted(rewrite.token, error: StoreFailure(.conflict, "port taken")))
        XCTAssertNil(h.listeners[keyA])
        guard let moved = assignmentWrites(h).last else { return XCTFail("no write") }
        XCTAssertEqual(moved.port, 20001)
        h.send(.writeCompleted(moved.token, error: StoreFailure(.unreachable, "connection refused")))
        XCTAssertNil(h.closed[vm], "a known console is never refused")
        XCTAssertTrue(h.isArmed(.persistRetry(keyA)))
        h.advance(by: 1)
        guard let retry = assignmentWrites(h).last, assignmentWrites(h).count == 4 else { return XCTFail("no retry") }
        h.completeWrite(retry.token)
        XCTAssertEqual(h.listeners[keyA]?.port, 20001)
        XCTAssertEqual(h.list().map(\.port), [20001])
        XCTAssertNil(h.closed[vm])
    }

    func testAWaitingConsoleCommittedByAnotherNodeTakesItsPort() {
        let h = ConcentratorHarness(config: .clusterTests)
        h.assignmentReply = { _ in .hold }
        h.bringUpVM()
        let date = MockClock.originDate
        h.news(.assignments([Assignment(uuid: UUIDs.a, name: "web01", port: 20003, createdAt: date, lastSeen: date)],
                            removed: []))
        XCTAssertEqual(h.binds.map(\.port), [20003])
        XCTAssertEqual(h.list().map(\.port), [20003])
        XCTAssertEqual(h.takeClaims(), [.claim(keyA)])
        // This node's own write, answered late, no longer counts.
        guard let write = assignmentWrites(h).last else { return XCTFail("no assignment write") }
        h.completeWrite(write.token)
        XCTAssertEqual(h.binds.count, 1)
    }
}

/// Issue 18: `vspc status` and `vspc list` show the nodes and the owners; one daemon alone shows neither, and
/// none of the cluster's machinery runs.
final class ClusterAdminTests: XCTestCase {
    private let keyA = ConsoleKey(uuid: UUIDs.a, label: "")

    func testStatusShowsTheNodesWithTheAgeOfTheirHeartbeats() {
        let h = ConcentratorHarness(config: .clusterTests)
        let t = Date(timeIntervalSince1970: 1_800_000_000)
        h.news(.nodes([
            NodeStatus(name: "b", link: "127.0.0.3:6781", startedAt: t, heartbeat: t.addingTimeInterval(-4), consoles: 2, alive: true),
            NodeStatus(name: "a", link: "127.0.0.2:6781", startedAt: t, heartbeat: t, consoles: 0, alive: true),
        ]))
        h.advance(by: 1.5)
        let daemon = h.admin(AdminRequest(command: "status")).response?.daemon
        XCTAssertEqual(daemon?.node, "a")
        XCTAssertEqual(daemon?.nodes?.map(\.name), ["a", "b"])
        XCTAssertEqual(daemon?.nodes?.map(\.alive), [true, true])
        XCTAssertEqual(daemon?.nodes?.map(\.heartbeatAge), [1.5, 5.5])
        XCTAssertEqual(daemon?.nodes?.map(\.consoles), [0, 2])
        XCTAssertEqual(h.machine.clusterNodeCounts.alive, 2)
        XCTAssertEqual(h.machine.clusterNodeCounts.dead, 0)
        h.bringUpVM()
        XCTAssertEqual(h.machine.consolesOwnedHere, 0)
        h.news(.claimed(keyA, Owner(node: "a", epoch: 1)))
        XCTAssertEqual(h.list().map(\.owner), ["a"])
        XCTAssertEqual(h.machine.consolesOwnedHere, 1)
    }

    func testOneDaemonAloneHasNoNodesNoOwnersAndIgnoresClusterNews() throws {
        let h = ConcentratorHarness()
        XCTAssertFalse(h.isArmed(.heartbeat))
        let vm = h.bringUpVM()
        h.news(.owners([keyA: Owner(node: "b", epoch: 9)], full: true))
        h.news(.assignments([Assignment(uuid: UUIDs.b, name: "db01", port: 20004)], removed: [keyA]))
        h.news(.nodes([NodeStatus(name: "b", link: "x", startedAt: Date(), heartbeat: Date(), consoles: 1, alive: true)]))
        XCTAssertNil(h.closed[vm])
        XCTAssertEqual(h.clusterRequests, [])
        let list = h.admin(AdminRequest(command: "list"))
        XCTAssertEqual(list.response?.vms?.map(\.owner), [nil])
        XCTAssertEqual(list.response?.vms?.count, 1)
        let status = h.adminRaw(Array(try JSONEncoder().encode(AdminRequest(command: "status"))))
        XCTAssertNil(status.response?.daemon?.node)
        XCTAssertNil(status.response?.daemon?.nodes)
        h.scrollbackReply = { _ in .hold }
        h.vm(vm, says: Array("x".utf8))
        h.take()
        h.advance(by: 2)
        XCTAssertFalse(h.take().persistedOps.contains { if case .fenced = $0 { return true }; return false })
    }
}
