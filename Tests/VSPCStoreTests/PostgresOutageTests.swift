import Foundation
import GRDB
import XCTest
@testable import VSPCStore
import VSPCCore

final class PostgresOutageTests: XCTestCase {
    /// The database stops: events wait in the queue and all land once it is back; an assignment fails at once
    /// as unreachable (the core decides).
    func testEventsWaitWhileTheDatabaseIsStoppedAndAllLand() throws {
        let pg = try PrivatePostgres(self)
        let store = try PostgresStore(url: try PostgresURL(pg.url), node: "n1")
        defer { store.close() }
        for i in 0..<10 { store.enqueue(.event(ConsoleEvent(kind: EventKind(rawValue: "before\(i)")))) }
        store.flush()
        try pg.stop()
        for i in 0..<200 { store.enqueue(.event(ConsoleEvent(kind: EventKind(rawValue: "during\(i)")))) }
        try waitUntil("the writer saw the database go") { store.isUnreachable }
        let refused = try XCTUnwrap(pgWrite(store, .upsertAssignment(Assignment(uuid: String(repeating: "a", count: 32),
                                                                                  name: "x", port: 7000))) as? StoreFailure)
        XCTAssertEqual(refused.kind, .unreachable)
        XCTAssertFalse(refused.message.contains("password"))
        XCTAssertGreaterThan(store.backlog.writes, 0)
        try pg.start()
        try waitUntil("the queue drained") { !store.isUnreachable && store.backlog.writes == 0 }
        store.flush()
        let kinds = try store.events(uuid: nil).map(\.kind.rawValue)
        XCTAssertEqual(kinds, (0..<10).map { "before\($0)" } + (0..<200).map { "during\($0)" }, "every event, in order")
    }

    /// While the database is away, cluster requests fail as unreachable; the listening connection is made again
    /// once it is back (`.reconnected`: notices may have been missed), and hears what is committed after.
    func testTheClusterListensAgainAfterAnOutage() throws {
        let pg = try PrivatePostgres(self)
        let cluster = try PostgresCluster(url: try PostgresURL(pg.url), node: "a")
        defer { cluster.close() }
        let heard = NoticeBox()
        try cluster.listen { heard.append($0) }
        let key = ConsoleKey(uuid: String(repeating: "b", count: 32), label: "")
        XCTAssertEqual(try cluster.claim(key, node: "a"), Owner(node: "a", epoch: 1))
        XCTAssertTrue(heard.wait(count: 1))
        try pg.stop()
        XCTAssertThrowsError(try cluster.claim(key, node: "a")) { error in
            XCTAssertEqual((error as? StoreFailure)?.kind, .unreachable, "\(error)")
        }
        try pg.start()
        XCTAssertTrue(heard.wait(count: 2), "heard \(heard.all)")
        XCTAssertEqual(heard.all.last, .reconnected)
        XCTAssertEqual(try cluster.claim(key, node: "a"), Owner(node: "a", epoch: 2))
        XCTAssertTrue(heard.wait(count: 3), "heard \(heard.all)")
        XCTAssertEqual(heard.all, [.owner(key, Owner(node: "a", epoch: 1)), .reconnected, .owner(key, Owner(node: "a", epoch: 2))])
    }

    /// The oldest queued events go beyond the bound, counted in one `events-suppressed` event.
    func testTheQueueBoundDropsTheOldestEvents() throws {
        let pg = try PrivatePostgres(self)
        let store = try PostgresStore(url: try PostgresURL(pg.url), node: "n1", maxQueuedEvents: 50)
        defer { store.close() }
        store.flush()
        try pg.stop()
        store.enqueue(.event(ConsoleEvent(kind: "first")))
        try waitUntil("the writer saw the database go") { store.isUnreachable }
        for i in 0..<100 { store.enqueue(.event(ConsoleEvent(kind: EventKind(rawValue: "e\(i)")))) }
        try pg.start()
        try waitUntil("the queue drained") { !store.isUnreachable && store.backlog.writes == 0 }
        store.flush()
        let kinds = try store.events(uuid: nil).map(\.kind.rawValue)
        XCTAssertEqual(Array(kinds.filter { $0 != EventKind.eventsSuppressed.rawValue }), (50..<100).map { "e\($0)" })
        XCTAssertEqual(kinds.filter { $0 == EventKind.eventsSuppressed.rawValue }.count, 1)
    }

    func testMigrateDBCopiesASQLiteDatabaseAndRefusesANonEmptyTarget() throws {
        let db = try PostgresTestDatabase(self)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vspc-migrate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("vspcd.db").path
        let sqlite = try Store(path: path)
        let t0 = Date(timeIntervalSince1970: 1_700_000_000.5)
        let assignments = [Assignment(uuid: String(repeating: "1", count: 32), name: "web1", port: 50001, createdAt: t0, lastSeen: t0),
                           Assignment(uuid: String(repeating: "2", count: 32), label: "com2", name: "db1", port: 50002, createdAt: t0, lastSeen: t0)]
        for a in assignments { sqlite.enqueue(.upsertAssignment(a)) }
        for i in 0..<30 {
            sqlite.enqueue(.event(ConsoleEvent(kind: "vm-connect", uuid: assignments[i % 2].uuid, label: assignments[i % 2].label,
                                               name: "n\(i)", time: t0.addingTimeInterval(Double(i)))))
        }
        sqlite.enqueue(.saveScrollback(uuid: assignments[0].uuid, label: "", data: [0, 1, 0xff, 27], at: t0))
        let token = APIToken(id: "0123456789ab", hash: String(repeating: "cd", count: 32), vms: [], readOnly: false,
                             comment: "", createdAt: t0, expiresAt: nil)
        sqlite.enqueue(.saveToken(token))
        sqlite.close()

        let counts = try RecordCopy.sqliteToPostgres(from: path, to: db.url)
        XCTAssertEqual("\(counts)", "2 assignments, 30 events, 1 scrollbacks, 1 API tokens")
        let copy = try RecordBackends.openForReading(db.url)
        let source = try Store(path: path, readOnly: true)
        XCTAssertEqual(try copy.loadAssignments(), try source.loadAssignments())
        XCTAssertEqual(try copy.events(uuid: nil, label: nil, since: nil, limit: nil).map { [$0.kind.rawValue, $0.name ?? "", $0.uuid ?? ""] },
                       try source.events(uuid: nil, label: nil, since: nil, limit: nil).map { [$0.kind.rawValue, $0.name ?? "", $0.uuid ?? ""] })
        XCTAssertEqual(try copy.scrollback(uuid: assignments[0].uuid, label: ""), [0, 1, 0xff, 27])
        XCTAssertEqual(try copy.loadTokens(), [token])

        XCTAssertThrowsError(try RecordCopy.sqliteToPostgres(from: path, to: db.url)) { error in
            XCTAssertTrue("\(error)".contains("already holds 2 assignments and 30 events"), "\(error)")
        }
        XCTAssertEqual(try db.count("events"), 30, "nothing copied twice")
    }

    private func waitUntil(_ what: String, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(60)
        while !condition() {
            guard Date() < deadline else { throw PostgresURL.Invalid(message: "timed out waiting: \(what)") }
            usleep(20_000)
        }
    }
}
