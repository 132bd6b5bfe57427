import Foundation
import Logging
import XCTest
@testable import VSPCNet
import VSPCCore

/// The cluster agent against in-memory records: each request's outcome comes back as news, off the caller's
/// thread; finds wait for a hint or a poll; a database away is `.unreachable`.
final class ClusterAgentTests: XCTestCase {
    let key = ConsoleKey(uuid: "564d0a0b0c0d0e0f1011121314151617", label: "")
    var records: MemoryClusterRecords!
    var news: Collected<ClusterNews>!
    var agent: ClusterAgent!

    override func setUp() {
        records = MemoryClusterRecords()
        news = Collected()
        let news = self.news!
        agent = ClusterAgent(records: records, config: ClusterConfig(node: "a", leaseTimeout: 10, linkAddress: "127.0.0.2:6781"),
                             logger: Logger(label: "test")) { news.append($0) }
    }

    func shared(sequence: [UInt8] = [1, 2, 3, 4]) -> SharedVMotion {
        SharedVMotion(key: key, name: "web1", port: 20001, sequence: sequence, secret: [9, 8, 7, 6, 5, 4, 3, 2],
                      sourceNode: "b", sourcePeer: "10.0.0.5:443", begunAt: Date(timeIntervalSince1970: 1_800_000_000))
    }

    func testRequestsAreAnsweredAsNews() throws {
        try agent.start()
        news.wait { $0 == .owners([:], full: true) }
        agent.run(.heartbeat(consoles: 3))
        let nodes = news.wait { if case .nodes = $0 { return true }; return false }
        guard case .nodes(let list)? = nodes else { return }
        XCTAssertEqual(list.map(\.name), ["a", "gone"])
        XCTAssertEqual(list.first?.link, "127.0.0.2:6781")
        XCTAssertEqual(list.first?.consoles, 3)

        agent.run(.claim(key))
        news.wait { $0 == .claimed(key, Owner(node: "a", epoch: 1)) }
        agent.run(.claim(key))
        news.wait { $0 == .claimed(key, Owner(node: "a", epoch: 2)) }
        XCTAssertEqual(agent.ownEpoch(key), 2)

        agent.run(.publishVMotion(shared(), generation: 7))
        news.wait { $0 == .vmotionPublished(key, generation: 7) }
        agent.run(.findVMotion(42, cookie: shared().cookie, until: 5))
        news.wait { $0 == .vmotionFound(42, shared()) }
        agent.run(.withdrawVMotion(key, sequence: shared().sequence))
        agent.run(.heartbeat(consoles: 1))
        news.wait { $0 == .nodes((try? records.heartbeat(node: "a", link: "127.0.0.2:6781", consoles: 1, leaseTimeout: 10)) ?? []) }
        XCTAssertEqual(records.withdrawn, [shared().sequence])
        let statistics = agent.statistics
        XCTAssertEqual(statistics.leases, 1)
        XCTAssertEqual(statistics.alive, 1)
        XCTAssertEqual(statistics.dead, 1)
    }

    func testAFindWaitsAndIsAnsweredOnAHint() throws {
        // Polls far apart: only the notification can find the row in this test's time.
        agent.pollInterval = .seconds(3600)
        try agent.start()
        agent.run(.findVMotion(7, cookie: shared().cookie, until: 3600))
        agent.run(.findVMotion(8, cookie: shared(sequence: [5]).cookie, until: 3600))
        agent.run(.heartbeat(consoles: 0))
        // The queue is not held by the waiting finds: the heartbeat is answered.
        news.wait { if case .nodes = $0 { return true }; return false }
        XCTAssertFalse(news.all.contains { if case .vmotionFound = $0 { return true }; return false })
        records.insertQuietly(shared())
        records.notify(.vmotion(sequence: shared().sequence))
        news.wait { $0 == .vmotionFound(7, shared()) }
        records.insertQuietly(shared(sequence: [5]))
        records.notify(.vmotion(sequence: [5]))
        news.wait { $0 == .vmotionFound(8, shared(sequence: [5])) }
    }

    func testAFindPollsAndGivesUpAtItsDeadline() throws {
        agent.pollInterval = .milliseconds(5)
        agent.run(.findVMotion(1, cookie: shared().cookie, until: 60))
        agent.run(.findVMotion(2, cookie: [0, 0, 0, 0, 0, 0, 0, 0, 0], until: 0.05))
        news.wait { $0 == .vmotionFound(2, nil) }
        // Without any notification, the poll finds a row that appears later.
        records.insertQuietly(shared())
        news.wait { $0 == .vmotionFound(1, shared()) }
        XCTAssertEqual(agent.statistics.vmotions["notfound"], 1)
        agent.run(.claim(key))
        news.wait { $0 == .claimed(key, Owner(node: "a", epoch: 1)) }
        XCTAssertEqual(agent.statistics.vmotions["complete"], 1)
    }

    func testADatabaseAwayIsUnreachable() {
        struct ConnectionLost: Error {}
        records.failing = ConnectionLost()
        agent.run(.claim(key))
        let failed = news.wait { if case .failed = $0 { return true }; return false }
        guard case .failed(let request, let failure)? = failed else { return }
        XCTAssertEqual(request, .claim(key))
        XCTAssertEqual(failure.kind, .unreachable)
        // A failure the backend names keeps its kind.
        records.failing = StoreFailure(.fenced, "stale")
        agent.run(.publishVMotion(shared(), generation: 1))
        news.wait { $0 == .failed(.publishVMotion(shared(), generation: 1), StoreFailure(.fenced, "stale")) }
    }

    func testNotificationsBecomeNews() throws {
        let assignment = Assignment(uuid: key.uuid, label: key.label, name: "web1", port: 20001,
                                    createdAt: Date(timeIntervalSince1970: 1_800_000_000), lastSeen: Date(timeIntervalSince1970: 1_800_000_000))
        records.assignments[key] = assignment
        agent.reloadAssignments = { [assignment] }
        try agent.start()
        records.notify(.owner(key, Owner(node: "b", epoch: 4)))
        news.wait { $0 == .owners([key: Owner(node: "b", epoch: 4)], full: false) }
        XCTAssertNil(agent.ownEpoch(key))
        records.notify(.assignment(key, deleted: false))
        news.wait { $0 == .assignments([assignment], removed: []) }
        records.notify(.assignment(key, deleted: true))
        news.wait { $0 == .assignments([], removed: [key]) }
        records.assignments[key] = nil
        records.notify(.assignment(key, deleted: false))
        news.wait { $0 == .assignments([], removed: [key]) }
        _ = try records.claim(key, node: "c")
        records.notify(.reconnected)
        news.wait { $0 == .owners([key: Owner(node: "c", epoch: 1)], full: true) }
        news.wait { $0 == .assignments([assignment], removed: []) }
    }

    func testAFeedWithoutALinkIsClosed() {
        agent.run(.openFeed(-1, key, node: "b", link: "127.0.0.3:6781", sinceEpoch: nil))
        news.wait { if case .feedClosed(-1, _) = $0 { return true }; return false }
    }
}
