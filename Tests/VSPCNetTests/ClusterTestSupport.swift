import Foundation
import NIOConcurrencyHelpers
import NIOCore
import XCTest
@testable import VSPCNet
import VSPCCore

/// The cluster's shared records in memory, for the agent's tests: what PostgreSQL would hold, and its
/// notifications sent by hand.
final class MemoryClusterRecords: ClusterRecords, @unchecked Sendable {
    private let lock = NIOLock()
    private var ownerTable: [ConsoleKey: Owner] = [:]
    private var vmotions: [SharedVMotion] = []
    var assignments: [ConsoleKey: Assignment] = [:]
    /// Every call throws this while set (the database is away).
    var failing: Error?
    private var listener: (@Sendable (ClusterNotice) -> Void)?
    private(set) var withdrawn: [[UInt8]] = []

    private func check() throws {
        if let failing { throw failing }
    }

    func heartbeat(node: String, link: String, consoles: Int, leaseTimeout: Double) throws -> [NodeStatus] {
        try lock.withLock {
            try check()
            let now = Date(timeIntervalSince1970: 1_800_000_000)
            return [NodeStatus(name: node, link: link, startedAt: now, heartbeat: now, consoles: consoles, alive: true),
                    NodeStatus(name: "gone", link: "127.0.0.9:6781", startedAt: now, heartbeat: now, consoles: 0, alive: false)]
        }
    }

    func claim(_ key: ConsoleKey, node: String) throws -> Owner {
        try lock.withLock {
            try check()
            let owner = Owner(node: node, epoch: (ownerTable[key]?.epoch ?? 0) + 1)
            ownerTable[key] = owner
            return owner
        }
    }

    func owners() throws -> [ConsoleKey: Owner] {
        try lock.withLock {
            try check()
            return ownerTable
        }
    }

    func assignment(_ key: ConsoleKey) throws -> Assignment? {
        try lock.withLock {
            try check()
            return assignments[key]
        }
    }

    func holds(_ key: ConsoleKey, _ owner: Owner) throws -> Bool {
        try lock.withLock { try check(); return ownerTable[key] == owner }
    }

    func publish(_ vmotion: SharedVMotion) throws {
        try lock.withLock {
            try check()
            vmotions.append(vmotion)
        }
    }

    func findVMotion(cookie: [UInt8], secretLength: Int) throws -> SharedVMotion? {
        try lock.withLock {
            try check()
            return vmotions.first { $0.cookie == cookie }
        }
    }

    func withdrawVMotion(_ key: ConsoleKey, sequence: [UInt8]) throws {
        try lock.withLock {
            try check()
            vmotions.removeAll { $0.key == key && $0.sequence == sequence }
            withdrawn.append(sequence)
        }
    }

    func listen(_ body: @escaping @Sendable (ClusterNotice) -> Void) throws {
        lock.withLock { listener = body }
    }

    /// Sends a notification, as PostgreSQL's NOTIFY would.
    func notify(_ notice: ClusterNotice) {
        let listener = lock.withLock { self.listener }
        listener?(notice)
    }

    /// Stores a row without a notification (another node's write whose NOTIFY is late).
    func insertQuietly(_ vmotion: SharedVMotion) {
        lock.withLock { vmotions.append(vmotion) }
    }
}

/// Things arriving from other threads, collected; a test waits until one shows up.
final class Collected<T>: @unchecked Sendable {
    private let lock = NIOLock()
    private var items: [T] = []

    func append(_ item: T) { lock.withLock { items.append(item) } }
    var all: [T] { lock.withLock { items } }

    /// Waits (up to 10 s) until an item matches; returns it, or fails the test.
    @discardableResult
    func wait(file: StaticString = #filePath, line: UInt = #line, _ match: (T) -> Bool) -> T? {
        for _ in 0..<1000 {
            if let item = all.first(where: match) { return item }
            usleep(10_000)
        }
        XCTFail("nothing matched; got \(all)", file: file, line: line)
        return nil
    }
}

/// The driver as the internal link sees it: ids, sinks, and the events handed in, recorded. `onSession`
/// plays the core for a new session (write, or close it).
final class FakeLinkHost: ClusterLinkHost, @unchecked Sendable {
    let loop: EventLoop
    private var next: ConnectionID = 100
    var sinks: [ConnectionID: ConnectionSink] = [:]
    let events = Collected<ConcentratorEvent>()
    var onSession: ((ConnectionID, ConnectionSink) -> Void)?

    init(loop: EventLoop) { self.loop = loop }

    func makeID() -> ConnectionID {
        next += 1
        return next
    }

    func register(_ id: ConnectionID, _ sink: ConnectionSink) { sinks[id] = sink }
    func unregister(_ id: ConnectionID) { sinks[id] = nil }

    func handle(_ event: ConcentratorEvent) {
        events.append(event)
        if case .sessionStarted(let id, _, _, _) = event, let sink = sinks[id] { onSession?(id, sink) }
    }

    /// Runs `body` on the loop with this connection's sink.
    func withSink(_ id: ConnectionID, _ body: @escaping (ConnectionSink) -> Void) {
        loop.execute { [self] in
            if let sink = sinks[id] { body(sink) }
        }
    }
}
