import XCTest
@testable import VSPCCore

/// The table of pending migrations: one record each, and the PEER index and count that follow from them.
final class VMotionTableTests: XCTestCase {
    let a = ConsoleKey(uuid: String(repeating: "a", count: 32), label: "")
    let b = ConsoleKey(uuid: String(repeating: "b", count: 32), label: "")
    let seq: [UInt8] = [1, 2, 3, 4]

    private func begin(_ table: inout VMotionTable, _ key: ConsoleKey, secret: [UInt8], from id: ConnectionID,
                       current: ConnectionID? = nil, now: UInt64 = 0) -> VMotionStateMachine.BeginResult {
        table.update(key) {
            $0.begin(sequence: seq, from: id, currentVM: current ?? id, secret: secret, now: now, sourcePeer: "src-\(id)")
        }.result
    }

    func testBeginIndexesTheMigrationAndItsEndRemovesIt() {
        var table = VMotionTable(maxHeldBytes: 16)
        XCTAssertEqual(table.count, 0)
        XCTAssertEqual(begin(&table, a, secret: [9, 9], from: 10), .goahead(payload: seq + [9, 9], generation: 1))
        XCTAssertEqual(table.count, 1)
        XCTAssertTrue(table.isPending(a))
        XCTAssertEqual(table.pending(a)?.sourcePeer, "src-10")
        XCTAssertEqual(table.console(forCookie: seq + [9, 9], secretLength: 2), a)
        XCTAssertNil(table.console(forCookie: seq + [9, 8], secretLength: 2))

        XCTAssertEqual(table.update(a) { $0.peer(cookie: self.seq + [9, 9], from: 20, address: "dst") }.result,
                       .accepted(sequence: seq))
        XCTAssertNil(table.update(a) { $0.peer(cookie: self.seq + [9, 9], from: 20) }.ended)
        let (result, ended) = table.update(a) { $0.complete(sequence: self.seq, from: 20, now: 5) }
        guard case .switched = result else { return XCTFail("\(result)") }
        XCTAssertEqual(ended?.generation, 1)
        XCTAssertEqual(ended?.sourcePeer, "src-10")
        XCTAssertEqual(ended?.destinationPeer, "dst")
        XCTAssertEqual(table.count, 0)
        XCTAssertFalse(table.isPending(a))
        XCTAssertNil(table.console(forCookie: seq + [9, 9], secretLength: 2))
    }

    func testARefusedBeginKeepsNothing() {
        var table = VMotionTable(maxHeldBytes: 16)
        guard case .notNow = begin(&table, a, secret: [9, 9], from: 10, current: 11) else { return XCTFail() }
        XCTAssertEqual(table.count, 0)
        XCTAssertFalse(table.isPending(a))
        XCTAssertEqual(begin(&table, a, secret: [9, 9], from: 10), .goahead(payload: seq + [9, 9], generation: 1))
    }

    func testConsolesSharingASequenceAreToldApartByTheSecret() {
        var table = VMotionTable(maxHeldBytes: 16)
        XCTAssertEqual(begin(&table, a, secret: [1, 1], from: 10), .goahead(payload: seq + [1, 1], generation: 1))
        XCTAssertEqual(begin(&table, b, secret: [2, 2], from: 11), .goahead(payload: seq + [2, 2], generation: 2))
        XCTAssertEqual(table.count, 2)
        XCTAssertEqual(table.console(forCookie: seq + [1, 1], secretLength: 2), a)
        XCTAssertEqual(table.console(forCookie: seq + [2, 2], secretLength: 2), b)
        let ended = table.update(a) { $0.abort(from: 10, now: 1) }.ended
        XCTAssertEqual(ended?.generation, 1)
        XCTAssertEqual(table.count, 1)
        XCTAssertNil(table.console(forCookie: seq + [1, 1], secretLength: 2))
        XCTAssertEqual(table.console(forCookie: seq + [2, 2], secretLength: 2), b)
        // A later migration of the first console gets a generation no other migration had.
        XCTAssertEqual(begin(&table, a, secret: [3, 3], from: 10), .goahead(payload: seq + [3, 3], generation: 3))
    }

    func testClientInputIsHeldOnlyWhileAMigrationIsPending() {
        var table = VMotionTable(maxHeldBytes: 4)
        XCTAssertEqual(table.clientInput(a, [1, 2]), .forward)
        XCTAssertEqual(table.count, 0, "input creates no record")
        _ = begin(&table, a, secret: [9, 9], from: 10)
        XCTAssertEqual(table.clientInput(a, [1, 2, 3]), .held)
        XCTAssertEqual(table.clientInput(a, [4, 5]), .dropped(1))
        XCTAssertEqual(table.clientInput(b, [1]), .forward)
        let (handoff, ended) = table.update(a) { $0.expire(generation: 1, now: 7) }
        XCTAssertEqual(handoff?.held, [1, 2, 3, 4])
        XCTAssertEqual(handoff?.heldDropped, 1)
        XCTAssertNotNil(ended)
        XCTAssertEqual(table.clientInput(a, [6]), .forward)
    }

    func testAnEndWithNothingPendingReportsNothing() {
        var table = VMotionTable(maxHeldBytes: 4)
        let (result, ended) = table.update(a) { $0.abort(from: 10, now: 0) }
        XCTAssertEqual(result, .ignored(reason: "VMOTION-ABORT without VMOTION-BEGIN on this connection"))
        XCTAssertNil(ended)
        XCTAssertNil(table.update(a) { $0.expire(generation: 1, now: 0) }.result)
        XCTAssertEqual(table.count, 0)
    }
}
