import Foundation
import XCTest
@testable import VSPCStore
import VSPCCore

/// The cluster's records against PostgreSQL: claims and epochs, fencing, shared vMotions, notifications.
final class PostgresClusterTests: XCTestCase {
    let key = ConsoleKey(uuid: "0123456789abcdeffedcba9800000000", label: "com 2")

    func cluster(_ db: PostgresTestDatabase, _ node: String) throws -> PostgresCluster {
        let c = try XCTUnwrap(try RecordBackends.openCluster(db.url, node: node) as? PostgresCluster)
        addTeardownBlock { c.close() }
        return c
    }

    func testClaimsBumpTheEpochAndNodesHeartbeat() throws {
        let db = try PostgresTestDatabase(self)
        let a = try cluster(db, "a"), b = try cluster(db, "b")
        XCTAssertEqual(try a.claim(key, node: "a"), Owner(node: "a", epoch: 1))
        XCTAssertEqual(try b.claim(key, node: "b"), Owner(node: "b", epoch: 2))
        XCTAssertEqual(try a.claim(key, node: "a"), Owner(node: "a", epoch: 3))
        XCTAssertEqual(try b.owners(), [key: Owner(node: "a", epoch: 3)])
        XCTAssertTrue(try b.holds(key, Owner(node: "a", epoch: 3)))
        XCTAssertFalse(try b.holds(key, Owner(node: "b", epoch: 2)))

        _ = try a.heartbeat(node: "a", link: "127.0.0.2:6781", consoles: 1, leaseTimeout: 10)
        let nodes = try b.heartbeat(node: "b", link: "127.0.0.3:6781", consoles: 0, leaseTimeout: 10)
        XCTAssertEqual(nodes.map(\.name), ["a", "b"])
        XCTAssertEqual(nodes.map(\.link), ["127.0.0.2:6781", "127.0.0.3:6781"])
        XCTAssertEqual(nodes.map(\.consoles), [1, 0])
        XCTAssertEqual(nodes.map(\.alive), [true, true])
        _ = try db.rows("UPDATE nodes SET heartbeat_at = now() - interval '11 seconds' WHERE name = 'a'")
        XCTAssertEqual(try b.heartbeat(node: "b", link: "127.0.0.3:6781", consoles: 0, leaseTimeout: 10).map(\.alive),
                       [false, true], "a's heartbeat is older than the lease")
    }

    func testAStaleOwnersWriteIsFenced() throws {
        let db = try PostgresTestDatabase(self)
        let a = try cluster(db, "a")
        let store = try XCTUnwrap(try RecordBackends.openForDaemon(db.url, node: "a") as? PostgresStore)
        defer { store.close() }
        let first = try a.claim(key, node: "a")
        let save = StoreOp.appendScrollback(uuid: key.uuid, label: key.label, data: [1, 2], keep: 100, at: Date())
        XCTAssertNil(pgWrite(store, .fenced(key, first, [save])))
        let second = try a.claim(key, node: "b")
        let refused = try XCTUnwrap(pgWrite(store, .fenced(key, first, [save, .event(ConsoleEvent(kind: "x"))])) as? StoreFailure)
        XCTAssertEqual(refused.kind, .fenced)
        XCTAssertEqual(store.failure(of: refused).kind, .fenced)
        XCTAssertEqual(try store.scrollback(uuid: key.uuid, label: key.label), [1, 2], "the stale write left nothing")
        XCTAssertEqual(try store.events(uuid: nil).count, 0)
        XCTAssertNil(pgWrite(store, .fenced(key, second, [save])))
        XCTAssertEqual(try store.scrollback(uuid: key.uuid, label: key.label), [1, 2, 1, 2])
    }

    func testVMotionsArePublishedFoundByTheirCookieAndWithdrawn() throws {
        let db = try PostgresTestDatabase(self)
        let a = try cluster(db, "a"), b = try cluster(db, "b")
        let v = SharedVMotion(key: key, name: "web1", port: 50001, sequence: [0, 1, 2, 0xff], secret: [9, 8, 7, 6, 5, 4, 3, 2],
                              sourceNode: "a", sourcePeer: "10.0.0.1:900", begunAt: Date(timeIntervalSince1970: 1_700_000_000.25))
        try a.publish(v)
        XCTAssertEqual(try b.findVMotion(cookie: v.cookie, secretLength: 8), v)
        var wrong = v.cookie
        wrong[wrong.count - 1] ^= 1
        XCTAssertNil(try b.findVMotion(cookie: wrong, secretLength: 8), "a wrong secret finds nothing")
        XCTAssertNil(try b.findVMotion(cookie: [0, 1, 2], secretLength: 8))
        try b.withdrawVMotion(key, sequence: v.sequence)
        XCTAssertNil(try b.findVMotion(cookie: v.cookie, secretLength: 8))

        // Published by the node that holds the console: the row names that node's claim.
        let claim = try a.claim(key, node: "a")
        try a.publish(v)
        var named = v
        named.sourceEpoch = claim.epoch
        XCTAssertEqual(try b.findVMotion(cookie: v.cookie, secretLength: 8), named)
    }

    func testNotificationsReachAnotherNode() throws {
        let db = try PostgresTestDatabase(self)
        let a = try cluster(db, "a"), b = try cluster(db, "b")
        let heard = NoticeBox()
        try b.listen { heard.append($0) }
        let store = try XCTUnwrap(try RecordBackends.openForDaemon(db.url, node: "a") as? PostgresStore)
        defer { store.close() }
        // LISTEN has been answered once listen returns: what is committed from now on is heard.
        _ = try a.claim(key, node: "a")
        XCTAssertNil(pgWrite(store, .upsertAssignment(Assignment(uuid: key.uuid, label: key.label, name: "web1", port: 50001))))
        XCTAssertNil(pgWrite(store, .deleteAssignment(uuid: key.uuid, label: key.label)))
        try a.publish(SharedVMotion(key: key, name: "web1", port: 50001, sequence: [0xab, 0xcd], secret: [1], sourceNode: "a",
                                    sourcePeer: "p", begunAt: Date()))
        let expected: [ClusterNotice] = [.owner(key, Owner(node: "a", epoch: 1)), .assignment(key, deleted: false),
                                         .assignment(key, deleted: true), .vmotion(sequence: [0xab, 0xcd])]
        XCTAssertTrue(heard.wait(count: expected.count), "heard \(heard.all)")
        XCTAssertEqual(heard.all, expected)
    }
}

final class NoticeBox: @unchecked Sendable {
    private let condition = NSCondition()
    private var notices: [ClusterNotice] = []
    func append(_ n: ClusterNotice) {
        condition.lock()
        notices.append(n)
        condition.broadcast()
        condition.unlock()
    }
    var all: [ClusterNotice] {
        condition.lock()
        defer { condition.unlock() }
        return notices
    }
    /// Waits (at most a minute: a failing test ends) until `count` notices arrived.
    func wait(count: Int) -> Bool {
        let deadline = Date().addingTimeInterval(60)
        condition.lock()
        defer { condition.unlock() }
        while notices.count < count {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }
}
