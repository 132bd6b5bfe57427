import Foundation
import GRDB
import XCTest
@testable import VSPCStore
import VSPCCore

final class UUIDSpellingTests: XCTestCase {
    let hex = "0123456789abcdeffedcba9800000000"

    func testNormalizeSpellings() {
        for s in ["01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00",
                  "0123456789abcdef-fedcba9800000000",
                  "0123456789ABCDEFFEDCBA9800000000",
                  "01234567-89ab-cdef-fedc-ba9800000000",
                  "{01234567-89AB-CDEF-FEDC-BA9800000000}",
                  "  0123456789abcdeffedcba9800000000\n"] {
            XCTAssertEqual(UUIDSpelling.normalize(s), hex, s)
        }
        for s in ["", "0123", "0123456789abcdeffedcba98000000000", "0123456789abcdeffedcba980000000g", "é123456789abcdeffedcba9800000000"] {
            XCTAssertNil(UUIDSpelling.normalize(s), s)
        }
    }

    func testClassicAndPrefix() {
        XCTAssertEqual(UUIDSpelling.classic(hex), "0123456789abcdef-fedcba9800000000")
        XCTAssertEqual(UUIDSpelling.hexPrefix("01 23-AB"), "0123ab")
        XCTAssertNil(UUIDSpelling.hexPrefix("web1"))
    }
}

final class StoreTests: XCTestCase {
    var dir: URL!
    var dbPath: String { dir.appendingPathComponent("vspcd.db").path }

    let u1 = "0123456789abcdeffedcba9800000000"
    let u2 = "0123456789abcdef0000000000000001"
    let u3 = "ffffffffffffffff0000000000000002"

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vspcstore-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// Enqueues and waits for the op's own result.
    @discardableResult
    func write(_ store: Store, _ op: StoreOp) -> Error? {
        let box = ErrorBox()
        let sem = DispatchSemaphore(value: 0)
        store.enqueue(op) { err in box.set(err); sem.signal() }
        sem.wait()
        return box.get()
    }

    func migrationFiles() throws -> [String] {
        try Store.migrationSources().map(\.name)
    }

    /// The build plugin embeds exactly the package's migrations/sqlite/*.sql, byte for byte.
    func testEmbeddedMigrationsAreThePackageFiles() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("migrations").appendingPathComponent("sqlite")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".sql") }.sorted()
        let embedded = try Store.migrationSources()
        XCTAssertEqual(embedded.map(\.name), names)
        for (name, sql) in embedded {
            XCTAssertEqual(sql, try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8))
        }
    }

    func testMigrationsAppliedRecordedAndNotReapplied() throws {
        let files = try migrationFiles()
        XCTAssertFalse(files.isEmpty)
        do {
            let store = try Store(path: dbPath)
            store.flush()
        }
        let store = try Store(path: dbPath)   // reopen: must not re-apply (would fail on CREATE TABLE)
        let q = try DatabaseQueue(path: dbPath)
        try q.read { db in
            let ids = try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier")
            XCTAssertEqual(ids, files)
            XCTAssertTrue(try db.tableExists("assignment"))
            XCTAssertTrue(try db.tableExists("event"))
            XCTAssertTrue(try db.tableExists("scrollback_chunk"))
            let idx = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='event' AND sql IS NOT NULL")
            XCTAssertEqual(Set(idx).count, 2)
            XCTAssertEqual(try String.fetchOne(db, sql: "PRAGMA journal_mode"), "wal")
        }
        _ = store
    }

    func testMigrationsDirOverride() throws {
        let mdir = dir.appendingPathComponent("mig")
        try FileManager.default.createDirectory(at: mdir, withIntermediateDirectories: true)
        for (name, sql) in try Store.migrationSources() {
            try sql.write(to: mdir.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        try "CREATE TABLE extra(x);".write(to: mdir.appendingPathComponent("9999_extra.sql"), atomically: true, encoding: .utf8)
        let baseCount = try migrationFiles().count
        setenv("VSPC_MIGRATIONS_DIR", mdir.path, 1)
        defer { unsetenv("VSPC_MIGRATIONS_DIR") }
        _ = try Store(path: dbPath)
        let q = try DatabaseQueue(path: dbPath)
        try q.read { db in
            XCTAssertTrue(try db.tableExists("extra"))
            XCTAssertEqual(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM grdb_migrations"), baseCount + 1)
        }
        setenv("VSPC_MIGRATIONS_DIR", dir.appendingPathComponent("nope").path, 1)
        XCTAssertThrowsError(try Store(path: dir.appendingPathComponent("other.db").path)) { err in
            XCTAssertTrue("\(err)".contains("migrations folder not found"), "\(err)")
        }
    }

    func testAssignmentRoundTrip() throws {
        let store = try Store(path: dbPath)
        let t0 = Date(timeIntervalSince1970: 1_700_000_000.5)
        let t1 = Date(timeIntervalSince1970: 1_700_000_100.25)
        let a = Assignment(uuid: "01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00", label: "", name: "web1", port: 50001, createdAt: t0, lastSeen: t0)
        let b = Assignment(uuid: u2, label: "com2", name: "alpha", port: 50002, createdAt: t0, lastSeen: t0)
        XCTAssertNil(write(store, .upsertAssignment(a)))
        XCTAssertNil(write(store, .upsertAssignment(b)))
        var loaded = try store.loadAssignments()
        XCTAssertEqual(loaded.map(\.name), ["alpha", "web1"])
        var expectA = a
        expectA.uuid = u1
        XCTAssertEqual(loaded[1], expectA)

        // upsert keeps created_at, updates the rest; touch updates name + last_seen
        var a2 = expectA
        a2.port = 50003
        a2.createdAt = t1
        a2.lastSeen = t1
        XCTAssertNil(write(store, .upsertAssignment(a2)))
        XCTAssertNil(write(store, .touchAssignment(uuid: u1.uppercased(), label: "", name: "web1-renamed", at: t1)))
        loaded = try store.loadAssignments()
        XCTAssertEqual(loaded.count, 2)
        let got = try XCTUnwrap(loaded.first { $0.uuid == u1 })
        XCTAssertEqual(got, Assignment(uuid: u1, label: "", name: "web1-renamed", port: 50003, createdAt: t0, lastSeen: t1))

        XCTAssertNil(write(store, .deleteAssignment(uuid: UUIDSpelling.classic(u1), label: "")))
        XCTAssertEqual(try store.loadAssignments(), [b])

        // invalid uuid is reported to the op
        let err = write(store, .upsertAssignment(Assignment(uuid: "zz", name: "x", port: 1)))
        XCTAssertEqual(err as? StoreError, .invalidUUID("zz"))
    }

    func testPortUniqueViolationDoesNotLoseBatch() throws {
        let store = try Store(path: dbPath)
        let results = ResultsBox()
        let sem = DispatchSemaphore(value: 0)
        let ops: [StoreOp] = [
            .upsertAssignment(Assignment(uuid: u1, name: "a", port: 6000)),
            .event(ConsoleEvent(kind: "x1")),
            .upsertAssignment(Assignment(uuid: u2, name: "b", port: 6000)),   // duplicate port
            .event(ConsoleEvent(kind: "x2")),
            .upsertAssignment(Assignment(uuid: u3, name: "c", port: 6001)),
        ]
        // Enqueue while the writer is blocked so everything lands in one batch.
        let gate = DispatchSemaphore(value: 0)
        store.enqueue([StoreOp]()) { _ in gate.wait() }
        for (i, op) in ops.enumerated() {
            store.enqueue(op) { err in results.set(i, err); sem.signal() }
        }
        gate.signal()
        for _ in ops { sem.wait() }
        XCTAssertNil(results.get(0))
        XCTAssertNil(results.get(1))
        let e = try XCTUnwrap(results.get(2) as? DatabaseError)
        XCTAssertEqual(e.resultCode, .SQLITE_CONSTRAINT)
        XCTAssertNil(results.get(3))
        XCTAssertNil(results.get(4))
        XCTAssertEqual(try store.loadAssignments().map(\.name), ["a", "c"])
        XCTAssertEqual(try store.events(uuid: nil).map(\.kind), ["x1", "x2"])

        // a multi-op enqueue is atomic
        let err = ErrorBox()
        store.enqueue([.event(ConsoleEvent(kind: "x3")), .upsertAssignment(Assignment(uuid: u2, name: "b", port: 6001))]) { err.set($0) }
        store.flush()
        XCTAssertNotNil(err.get())
        XCTAssertEqual(try store.events(uuid: nil).map(\.kind), ["x1", "x2"])
    }

    func testEventsOrderingSinceLimit() throws {
        let store = try Store(path: dbPath)
        let base = 1_700_000_000.0
        // inserted out of time order on purpose
        let times: [Double] = [5, 1, 3, 2, 4]
        for t in times {
            store.enqueue(.event(ConsoleEvent(kind: EventKind(rawValue: "k\(Int(t))"), uuid: UUIDSpelling.classic(u1), name: "web1", peer: "10.0.0.1:4000", detail: "d", time: Date(timeIntervalSince1970: base + t))))
        }
        store.enqueue(.event(ConsoleEvent(kind: "other", uuid: u2, label: "com2", time: Date(timeIntervalSince1970: base + 2.5))))
        store.enqueue(.event(ConsoleEvent(kind: "global", time: Date(timeIntervalSince1970: base + 0.5))))
        store.flush()

        let all = try store.events(uuid: u1)
        XCTAssertEqual(all.map(\.kind), ["k1", "k2", "k3", "k4", "k5"])
        XCTAssertEqual(all[0].uuid, u1)
        XCTAssertEqual(all[0].name, "web1")
        XCTAssertEqual(all[0].peer, "10.0.0.1:4000")
        XCTAssertEqual(all[0].detail, "d")
        XCTAssertEqual(all[0].label, "")
        XCTAssertEqual(all[0].time, Date(timeIntervalSince1970: base + 1))

        XCTAssertEqual(try store.events(uuid: "01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00", since: Date(timeIntervalSince1970: base + 3)).map(\.kind), ["k3", "k4", "k5"])
        XCTAssertEqual(try store.events(uuid: u1, limit: 2).map(\.kind), ["k4", "k5"])
        XCTAssertEqual(try store.events(uuid: u1, since: Date(timeIntervalSince1970: base + 2), limit: 10).map(\.kind), ["k2", "k3", "k4", "k5"])
        XCTAssertEqual(try store.events(uuid: nil).map(\.kind), ["global", "k1", "k2", "other", "k3", "k4", "k5"])
        XCTAssertEqual(try store.events(uuid: nil, limit: 3).map(\.kind), ["k3", "k4", "k5"])
        XCTAssertEqual(try store.events(uuid: u2, label: "com2").map(\.kind), ["other"])
        XCTAssertEqual(try store.events(uuid: u2, label: "").map(\.kind), [])
        XCTAssertEqual(try store.events(uuid: nil, label: "com2").map(\.kind), ["other"])
    }

    func testPrune() throws {
        let store = try Store(path: dbPath)
        let now = Date()
        for i in 0..<10 {
            // i = 0 is 10 days old ... i = 9 is 1 day old
            store.enqueue(.event(ConsoleEvent(kind: EventKind(rawValue: "e\(i)"), time: now.addingTimeInterval(-Double(10 - i) * 86400))))
        }
        store.flush()
        XCTAssertNil(write(store, .prune(Retention(maxAge: 5.5 * 86400, maxCount: nil))))
        XCTAssertEqual(try store.events(uuid: nil).map(\.kind), ["e5", "e6", "e7", "e8", "e9"])
        XCTAssertNil(write(store, .prune(Retention(maxAge: nil, maxCount: 3))))
        XCTAssertEqual(try store.events(uuid: nil).map(\.kind), ["e7", "e8", "e9"])
        XCTAssertNil(write(store, .prune(Retention(maxAge: 2.5 * 86400, maxCount: 1))))
        XCTAssertEqual(try store.events(uuid: nil).map(\.kind), ["e9"])
        XCTAssertNil(write(store, .prune(Retention(maxAge: nil, maxCount: 0))))
        XCTAssertEqual(try store.events(uuid: nil).count, 0)
    }

    func testPruneDropsOldScrollbackOfExpiredAssignmentsOnly() throws {
        let store = try Store(path: dbPath)
        let old = Date().addingTimeInterval(-10 * 86400)
        store.enqueue(.upsertAssignment(Assignment(uuid: u1, name: "kept", port: 20001)))
        store.enqueue(.saveScrollback(uuid: u1, label: "", data: [1], at: old))          // old, still assigned
        store.enqueue(.saveScrollback(uuid: u2, label: "", data: [2], at: old))          // old, expired
        store.enqueue(.saveScrollback(uuid: u3, label: "", data: [3], at: Date()))       // recent, expired
        store.flush()
        XCTAssertNil(write(store, .prune(Retention(maxAge: 5 * 86400, maxCount: nil))))
        XCTAssertEqual(try store.scrollback(uuid: u1, label: ""), [1])
        XCTAssertNil(try store.scrollback(uuid: u2, label: ""))
        XCTAssertEqual(try store.scrollback(uuid: u3, label: ""), [3])
    }

    func testScrollbackRoundTrip() throws {
        let store = try Store(path: dbPath)
        var bytes: [UInt8] = [0x00, 0xFF, 0x00, 0x1B, 0x5B, 0xFE, 0x80, 0x00]
        bytes += (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        bytes.append(0x00)
        store.enqueue(.saveScrollback(uuid: UUIDSpelling.classic(u1), label: "", data: [1, 2, 3], at: Date()))
        store.enqueue(.saveScrollback(uuid: u1, label: "", data: bytes, at: Date()))
        store.enqueue(.saveScrollback(uuid: u2, label: "com2", data: [], at: Date()))
        store.flush()
        XCTAssertEqual(try store.scrollback(uuid: u1, label: ""), bytes)
        XCTAssertEqual(try store.scrollback(uuid: u2, label: "com2"), [])
        XCTAssertNil(try store.scrollback(uuid: u2, label: ""))
        XCTAssertNil(try store.scrollback(uuid: u3, label: ""))
        let all = try store.allScrollback()
        XCTAssertEqual(all.count, 2)
        XCTAssertEqual(all[0].uuid, u2)
        XCTAssertEqual(all[0].label, "com2")
        XCTAssertEqual(all[1].uuid, u1)
        XCTAssertEqual(all[1].data, bytes)
    }

    func testReadOnlyMissingFile() throws {
        let missing = dir.appendingPathComponent("sub/missing.db").path
        XCTAssertThrowsError(try Store(path: missing, readOnly: true)) { err in
            XCTAssertEqual(err as? StoreError, .databaseNotFound(path: missing))
            XCTAssertTrue("\(err)".contains(missing))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("sub").path))
    }

    func testReadOnlyWhileWriterOpen() throws {
        let writer = try Store(path: dbPath)
        writer.enqueue(.upsertAssignment(Assignment(uuid: u1, name: "web1", port: 7000)))
        writer.enqueue(.event(ConsoleEvent(kind: "connect", uuid: u1, name: "web1")))
        writer.flush()

        let reader = try Store(path: dbPath, readOnly: true)
        XCTAssertEqual(try reader.loadAssignments().map(\.name), ["web1"])
        XCTAssertEqual(try reader.events(uuid: u1).map(\.kind), ["connect"])

        // the writer keeps writing; the reader sees new commits
        writer.enqueue(.event(ConsoleEvent(kind: "disconnect", uuid: u1, name: "web1")))
        writer.flush()
        XCTAssertEqual(try reader.events(uuid: u1).map(\.kind), ["connect", "disconnect"])

        // writes through a read-only store fail cleanly
        let err = write(reader, .event(ConsoleEvent(kind: "nope")))
        XCTAssertEqual(err as? StoreError, .readOnly(path: dbPath))
        XCTAssertEqual(try writer.events(uuid: nil).count, 2)
    }

    func testReadOnlyAfterWriterClosed() throws {
        do {
            let writer = try Store(path: dbPath)
            writer.enqueue(.event(ConsoleEvent(kind: "connect", uuid: u1, name: "web1")))
            writer.flush()
        }
        let reader = try Store(path: dbPath, readOnly: true)
        XCTAssertEqual(try reader.events(uuid: u1).map(\.kind), ["connect"])
    }

    func testResolveVM() throws {
        let store = try Store(path: dbPath)
        store.enqueue(.upsertAssignment(Assignment(uuid: u1, name: "web1", port: 7001)))
        store.enqueue(.upsertAssignment(Assignment(uuid: u1, label: "com2", name: "web1", port: 7002)))
        store.enqueue(.upsertAssignment(Assignment(uuid: u2, name: "Web", port: 7003)))
        // u3's assignment expired: only history remains, under an old and a new name
        store.enqueue(.event(ConsoleEvent(kind: "connect", uuid: u3, name: "db-old", time: Date(timeIntervalSince1970: 1000))))
        store.enqueue(.event(ConsoleEvent(kind: "connect", uuid: u3, name: "db", time: Date(timeIntervalSince1970: 2000))))
        store.enqueue(.event(ConsoleEvent(kind: "connect", uuid: u1, name: "web1")))
        store.flush()

        func names(_ q: String) throws -> [String] { try store.resolveVM(q).map(\.name) }
        func uuids(_ q: String) throws -> [String] { try store.resolveVM(q).map(\.uuid) }

        XCTAssertEqual(try uuids("web1"), [u1])
        XCTAssertEqual(try uuids("Web"), [u2])             // case-sensitive exact wins
        XCTAssertEqual(try uuids("WEB1"), [u1])            // case-insensitive exact
        XCTAssertEqual(try uuids("db"), [u3])              // from event history
        XCTAssertEqual(try store.resolveVM("db-old").map(\.name), ["db"])  // old name, reported under latest name
        for s in ["01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00", "0123456789abcdef-fedcba9800000000",
                  "0123456789ABCDEFFEDCBA9800000000", "01234567-89ab-cdef-fedc-ba9800000000"] {
            XCTAssertEqual(try store.resolveVM(s).map(\.uuid), [u1], s)
            XCTAssertEqual(try store.resolveVM(s).map(\.name), ["web1"], s)
        }
        XCTAssertEqual(try uuids("ff"), [u3])              // uuid prefix
        XCTAssertEqual(try uuids("0123456789abcdef-f"), [u1])
        XCTAssertEqual(try uuids("db-"), [u3])             // name prefix
        XCTAssertEqual(Set(try uuids("0123")), [u1, u2])   // ambiguous uuid prefix
        XCTAssertEqual(try names("we").count, 2)           // ambiguous name prefix
        XCTAssertEqual(try uuids("nosuchvm"), [])
        XCTAssertEqual(try uuids(""), [])
        XCTAssertEqual(try uuids("ffffffffffffffff0000000000000009"), [])
    }

    func testFlushWaits() throws {
        let store = try Store(path: dbPath)
        let done = Counter()
        let gate = DispatchSemaphore(value: 0)
        store.enqueue([StoreOp]()) { _ in
            gate.wait()            // hold the writer
            done.increment()
        }
        for i in 0..<100 {
            store.enqueue(.event(ConsoleEvent(kind: EventKind(rawValue: "e\(i)")))) { _ in done.increment() }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { gate.signal() }
        let start = Date()
        store.flush()
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 0.15)
        XCTAssertEqual(done.value, 101)
        XCTAssertEqual(try store.events(uuid: nil).count, 100)
    }

    func testEnqueueDoesNotBlockAndManyEventsCommit() throws {
        let store = try Store(path: dbPath)
        let start = Date()
        let failures = Counter()
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for i in 0..<2_500 {
                store.enqueue(.event(ConsoleEvent(kind: "bulk", uuid: u1, detail: "\(t)-\(i)"))) { err in
                    if err != nil { failures.increment() }
                }
            }
        }
        let enqueueTime = Date().timeIntervalSince(start)
        store.flush()
        XCTAssertEqual(failures.value, 0)
        XCTAssertEqual(try store.events(uuid: u1).count, 10_000)
        XCTAssertEqual(try store.events(uuid: u1, limit: 10).count, 10)
        XCTAssertLessThan(enqueueTime, 5)
    }
}

final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var error: Error?
    func set(_ e: Error?) { lock.lock(); error = e; lock.unlock() }
    func get() -> Error? { lock.lock(); defer { lock.unlock() }; return error }
}

final class ResultsBox: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Int: Error?] = [:]
    func set(_ i: Int, _ e: Error?) { lock.lock(); results[i] = e; lock.unlock() }
    func get(_ i: Int) -> Error? { lock.lock(); defer { lock.unlock() }; return results[i] ?? nil }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}
