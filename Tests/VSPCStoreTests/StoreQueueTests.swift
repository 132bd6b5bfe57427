import Foundation
import XCTest
import VSPCCore
@testable import VSPCStore

/// The writer's queue is bounded for events: a slow disk costs counted events, never memory without bound,
/// and never an assignment.
final class StoreQueueTests: XCTestCase {
    func testEventsBeyondTheBoundAreCountedAndSummarisedAssignmentsNeverDropped() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vspcd-queue-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try Store(path: dir.appendingPathComponent("q.db").path, maxQueuedEvents: 3)
        // Hold the writer: a unit whose completion waits, as a disk that stalls would.
        let stalled = DispatchSemaphore(value: 0)
        let inWriter = DispatchSemaphore(value: 0)
        store.enqueue([.event(ConsoleEvent(kind: "first"))]) { _ in
            inWriter.signal()
            stalled.wait()
        }
        inWriter.wait()
        final class Outcomes: @unchecked Sendable {
            let lock = NSLock()
            var full = 0
            func add(_ e: Error?) { lock.lock(); if (e as? StoreError) == .queueFull { full += 1 }; lock.unlock() }
        }
        let outcomes = Outcomes()
        for i in 0..<10 { store.enqueue([.event(ConsoleEvent(kind: EventKind(rawValue: "e\(i)")))]) { outcomes.add($0) } }
        let uuid = "0123456789abcdef0123456789abcdef"
        store.enqueue([.upsertAssignment(Assignment(uuid: uuid, name: "kept", port: 20000))], completion: nil)
        stalled.signal()
        store.flush()
        store.flush()
        XCTAssertEqual(outcomes.full, 7)
        let kinds = try store.events(uuid: nil).map(\.kind)
        XCTAssertEqual(kinds, ["first", "e0", "e1", "e2", "events-suppressed"])
        XCTAssertEqual(try store.events(uuid: nil).last?.detail, "… 7 more suppressed while the database was slow")
        XCTAssertEqual(try store.loadAssignments().map(\.name), ["kept"])
    }
}
