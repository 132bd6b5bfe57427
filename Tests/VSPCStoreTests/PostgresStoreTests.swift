import Foundation
import XCTest
@testable import VSPCStore
import VSPCCore

/// The store contract against PostgreSQL (each test on a fresh database of `VSPC_TEST_POSTGRES_URL`).
final class PostgresStoreTests: XCTestCase {
    let u1 = "0123456789abcdeffedcba9800000000"
    let u2 = "0123456789abcdef0000000000000001"
    let u3 = "ffffffffffffffff0000000000000002"

    func open(_ db: PostgresTestDatabase, node: String = "n1") throws -> PostgresStore {
        let store = try XCTUnwrap(try RecordBackends.openForDaemon(db.url, node: node) as? PostgresStore)
        addTeardownBlock { store.close() }
        return store
    }

    func testAssignmentsEventsScrollbackTokens() throws {
        let db = try PostgresTestDatabase(self)
        let store = try open(db)
        let t0 = Date(timeIntervalSince1970: 1_700_000_000.5)
        let t1 = Date(timeIntervalSince1970: 1_700_000_100.25)
        let a = Assignment(uuid: UUIDSpelling.classic(u1), name: "web1", port: 50001, createdAt: t0, lastSeen: t0)
        let b = Assignment(uuid: u2, label: "com2", name: "alpha", port: 50002, createdAt: t0, lastSeen: t0)
        XCTAssertNil(pgWrite(store, .upsertAssignment(a)))
        XCTAssertNil(pgWrite(store, .upsertAssignment(b)))
        var expectA = a
        expectA.uuid = u1
        XCTAssertEqual(try store.loadAssignments(), [b, expectA])
        // A re-upsert refreshes name and last_seen, never created_at; touch does name + last_seen.
        var again = expectA
        again.createdAt = t1
        again.lastSeen = t1
        XCTAssertNil(pgWrite(store, .upsertAssignment(again)))
        XCTAssertNil(pgWrite(store, .touchAssignment(uuid: u1.uppercased(), label: "", name: "web1-renamed", at: t1)))
        XCTAssertEqual(try store.loadAssignments().first { $0.uuid == u1 },
                       Assignment(uuid: u1, name: "web1-renamed", port: 50001, createdAt: t0, lastSeen: t1))
        XCTAssertNil(pgWrite(store, .deleteAssignment(uuid: u1, label: "")))
        XCTAssertEqual(try store.loadAssignments(), [b])
        XCTAssertEqual(pgWrite(store, .upsertAssignment(Assignment(uuid: "zz", name: "x", port: 1))) as? StoreFailure,
                       StoreFailure(.other, "invalid VM uuid 'zz' (expected 32 hex digits)"))

        // Events: ordered by time, since inclusive, limit keeps the newest; each carries this node.
        let base = 1_700_000_000.0
        for t in [5.0, 1, 3, 2, 4] {
            store.enqueue(.event(ConsoleEvent(kind: EventKind(rawValue: "k\(Int(t))"), uuid: UUIDSpelling.classic(u1), name: "web1",
                                              peer: "10.0.0.1:4000", detail: "d", time: Date(timeIntervalSince1970: base + t))))
        }
        store.enqueue(.event(ConsoleEvent(kind: "other", uuid: u2, label: "com2", time: Date(timeIntervalSince1970: base + 2.5))))
        store.enqueue(.event(ConsoleEvent(kind: "global", time: Date(timeIntervalSince1970: base + 0.5))))
        store.flush()
        let all = try store.events(uuid: u1)
        XCTAssertEqual(all.map(\.kind), ["k1", "k2", "k3", "k4", "k5"])
        XCTAssertEqual(all[0].time, Date(timeIntervalSince1970: base + 1))
        XCTAssertEqual(all[0].peer, "10.0.0.1:4000")
        XCTAssertEqual(try store.events(uuid: u1, since: Date(timeIntervalSince1970: base + 3)).map(\.kind), ["k3", "k4", "k5"])
        XCTAssertEqual(try store.events(uuid: u1, limit: 2).map(\.kind), ["k4", "k5"])
        XCTAssertEqual(try store.events(uuid: nil).map(\.kind), ["global", "k1", "k2", "other", "k3", "k4", "k5"])
        XCTAssertEqual(try store.events(uuid: nil, label: "com2").map(\.kind), ["other"])
        XCTAssertEqual(try db.rows("SELECT DISTINCT node FROM events"), ["n1"])

        // Scrollback: appended, trimmed to what is kept, binary-safe.
        var bytes: [UInt8] = [0x00, 0xFF, 0x1B, 0x80]
        bytes += (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        XCTAssertNil(pgWrite(store, .saveScrollback(uuid: u1, label: "", data: [1, 2, 3], at: Date())))
        XCTAssertNil(pgWrite(store, .appendScrollback(uuid: u1, label: "", data: bytes, keep: 5000, at: Date())))
        XCTAssertEqual(try store.scrollback(uuid: u1, label: ""), [1, 2, 3] + bytes)
        XCTAssertNil(pgWrite(store, .appendScrollback(uuid: u1, label: "", data: [9, 9], keep: 10, at: Date())))
        XCTAssertEqual(try store.scrollback(uuid: u1, label: ""), bytes + [9, 9], "whole chunks covering 10 bytes kept")
        XCTAssertNil(try store.scrollback(uuid: u3, label: ""))
        XCTAssertEqual(try store.allScrollback().map(\.uuid), [u1])

        // Tokens.
        let token = APIToken(id: "abcdef012345", hash: String(repeating: "ab", count: 32), vms: ["web*", "db1"], readOnly: true,
                             comment: "ci", createdAt: t0, expiresAt: t1)
        XCTAssertNil(pgWrite(store, .saveToken(token)))
        XCTAssertNil(pgWrite(store, .revokeToken(id: token.id, at: t1)))
        var revoked = token
        revoked.revokedAt = t1
        XCTAssertEqual(try store.loadTokens(), [revoked])

        // knownConsoles: assignments, then the (uuid, label, name) of events.
        let known = try store.knownConsoles()
        XCTAssertEqual(known.first?.port, 50002)
        XCTAssertTrue(known.contains { $0.uuid == u1 && $0.name == "web1" && $0.port == nil })

        // Read-only opening (vspc offline) sees the same and refuses writes.
        let reader = try RecordBackends.openForReading(db.url)
        XCTAssertEqual(try reader.loadAssignments(), [b])
        XCTAssertEqual(try reader.events(uuid: u1, label: nil, since: nil, limit: nil).count, 5)
    }

    func testPruneByAgeAndCountAndOldScrollbackOfExpiredAssignments() throws {
        let db = try PostgresTestDatabase(self)
        let store = try open(db)
        let now = Date()
        for i in 0..<10 {
            store.enqueue(.event(ConsoleEvent(kind: EventKind(rawValue: "e\(i)"), time: now.addingTimeInterval(-Double(10 - i) * 86400))))
        }
        let old = now.addingTimeInterval(-10 * 86400)
        store.enqueue(.upsertAssignment(Assignment(uuid: u1, name: "kept", port: 20001)))
        store.enqueue(.saveScrollback(uuid: u1, label: "", data: [1], at: old))
        store.enqueue(.saveScrollback(uuid: u2, label: "", data: [2], at: old))
        store.enqueue(.saveScrollback(uuid: u3, label: "", data: [3], at: now))
        store.flush()
        XCTAssertNil(pgWrite(store, .prune(Retention(maxAge: 5.5 * 86400, maxCount: nil))))
        XCTAssertEqual(try store.events(uuid: nil).map(\.kind), ["e5", "e6", "e7", "e8", "e9"])
        XCTAssertEqual(try store.scrollback(uuid: u1, label: ""), [1])
        XCTAssertNil(try store.scrollback(uuid: u2, label: ""))
        XCTAssertEqual(try store.scrollback(uuid: u3, label: ""), [3])
        XCTAssertNil(pgWrite(store, .prune(Retention(maxAge: nil, maxCount: 3))))
        XCTAssertEqual(try store.events(uuid: nil).map(\.kind), ["e7", "e8", "e9"])
        XCTAssertNil(pgWrite(store, .prune(Retention(maxAge: nil, maxCount: 0))))
        XCTAssertEqual(try store.events(uuid: nil).count, 0)
    }

    func testAMultiOpEnqueueIsAtomicAndAFailureVoidsOnlyItsOwn() throws {
        let db = try PostgresTestDatabase(self)
        let store = try open(db)
        let results = PGResults()
        let gate = DispatchSemaphore(value: 0)
        store.enqueue([StoreOp]()) { _ in gate.wait() }
        let ops: [[StoreOp]] = [
            [.upsertAssignment(Assignment(uuid: u1, name: "a", port: 6000))],
            [.event(ConsoleEvent(kind: "x1"))],
            [.event(ConsoleEvent(kind: "x2")), .upsertAssignment(Assignment(uuid: u2, name: "b", port: 6000))],
            [.upsertAssignment(Assignment(uuid: u3, name: "c", port: 6001))],
        ]
        let done = DispatchGroup()
        for (i, unit) in ops.enumerated() {
            done.enter()
            store.enqueue(unit) { results.set(i, $0); done.leave() }
        }
        gate.signal()
        done.wait()
        XCTAssertNil(results.get(0))
        XCTAssertNil(results.get(1))
        let conflict = try XCTUnwrap(results.get(2) as? StoreFailure)
        XCTAssertEqual(conflict.kind, .conflict)
        XCTAssertNil(conflict.assignedPort, "the port is another console's")
        XCTAssertNil(results.get(3))
        XCTAssertEqual(try store.loadAssignments().map(\.name), ["a", "c"])
        XCTAssertEqual(try store.events(uuid: nil).map(\.kind), ["x1"])
    }

    /// Two daemons (two stores) assign ports to the same 500 VMs over one range, as the core does: the lowest
    /// port they believe free; a conflict tells them the console's port, or that the port is taken.
    func testTwoNodesRacingAssignmentsGetDistinctPorts() throws {
        let db = try PostgresTestDatabase(self)
        let stores = [try open(db, node: "a"), try open(db, node: "b")]
        let vms = (0..<500).map { String(format: "%032x", 0xabc000 + $0) }
        let range = 30000..<30500
        let outcomes = PGResults()
        DispatchQueue.concurrentPerform(iterations: 2) { n in
            var used = Set<Int>()
            var mine: [String: Int] = [:]
            var conflicts = 0
            let order = n == 0 ? vms : vms.reversed()
            for vm in order {
                while mine[vm] == nil {
                    // With no port free as far as this node knows, the write of any port still tells it the
                    // console's port if another node assigned one.
                    let free = range.first(where: { !used.contains($0) })
                    let port = free ?? range.lowerBound
                    switch pgWrite(stores[n], .upsertAssignment(Assignment(uuid: vm, name: "vm", port: port))) {
                    case nil:
                        mine[vm] = port
                        used.insert(port)
                    case let failure as StoreFailure where failure.kind == .conflict:
                        conflicts += 1
                        if let assigned = failure.assignedPort {
                            mine[vm] = assigned
                            used.insert(assigned)
                        } else if free == nil {
                            return outcomes.set(n, PGOutcome(ports: mine, conflicts: conflicts, error: "no free port left for \(vm)"))
                        } else {
                            used.insert(port)
                        }
                    case let other:
                        return outcomes.set(n, PGOutcome(ports: [:], conflicts: -1, error: "\(String(describing: other))"))
                    }
                }
            }
            outcomes.set(n, PGOutcome(ports: mine, conflicts: conflicts, error: nil))
        }
        let a = try XCTUnwrap(outcomes.get(0) as? PGOutcome)
        let b = try XCTUnwrap(outcomes.get(1) as? PGOutcome)
        XCTAssertNil(a.error, "\(a.ports.count) assigned")
        XCTAssertNil(b.error, "\(b.ports.count) assigned")
        let rows = try stores[0].loadAssignments()
        XCTAssertEqual(rows.count, 500)
        XCTAssertEqual(Set(rows.map(\.port)).count, 500, "no port twice")
        let committed = Dictionary(uniqueKeysWithValues: rows.map { ($0.uuid, $0.port) })
        XCTAssertEqual(a.ports, committed, "node a learned every console's committed port")
        XCTAssertEqual(b.ports, committed, "node b learned every console's committed port")
        XCTAssertGreaterThan(a.conflicts + b.conflicts, 0)
    }
}

struct PGOutcome: Error {
    var ports: [String: Int]
    var conflicts: Int
    var error: String?
}

final class PGResults: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int: Error] = [:]
    func set(_ i: Int, _ e: Error?) { lock.lock(); values[i] = e; lock.unlock() }
    func get(_ i: Int) -> Error? { lock.lock(); defer { lock.unlock() }; return values[i] }
}

/// One write, waited for: its error (nil when committed).
func pgWrite(_ store: any RecordStore, _ op: StoreOp) -> Error? {
    let box = PGResults()
    let done = DispatchSemaphore(value: 0)
    store.enqueue([op]) { box.set(0, $0); done.signal() }
    done.wait()
    return box.get(0)
}

final class PostgresMigrationTests: XCTestCase {
    /// Daemons starting at once: the advisory lock lets one migrate; the others find the schema applied.
    func testConcurrentOpensMigrateOnce() throws {
        let db = try PostgresTestDatabase(self)
        let errors = PGResults()
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            do {
                let store = try RecordBackends.openForDaemon(db.url, node: "n\(i)")
                store.close()
            } catch {
                errors.set(i, error)
            }
        }
        for i in 0..<4 { XCTAssertNil(errors.get(i)) }
        XCTAssertEqual(try db.rows("SELECT name FROM schema_version"), ["0001_initial.sql", "0002_vmotion_source_epoch.sql"])
    }
}
