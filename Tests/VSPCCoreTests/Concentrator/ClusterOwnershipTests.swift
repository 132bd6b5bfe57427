import Foundation
import XCTest
@testable import VSPCCore

extension ConcentratorConfig {
    /// The test config as node "a" of a cluster: a heartbeat every 3 s.
    static var clusterTests: ConcentratorConfig {
        var c = ConcentratorConfig.forTests
        c.cluster = ClusterConfig(node: "a", leaseTimeout: 9, linkAddress: "127.0.0.2:6781")
        return c
    }
}

extension ConcentratorHarness {
    /// The cluster requests since the last call, and forgets them.
    @discardableResult
    func takeClusterRequests() -> [ClusterRequest] {
        defer { clusterRequests = [] }
        return clusterRequests
    }

    /// The claims among them (the heartbeats ticking meanwhile left out).
    func takeClaims() -> [ClusterRequest] {
        takeClusterRequests().filter { if case .claim = $0 { return true }; return false }
    }

    @discardableResult
    func news(_ news: ClusterNews) -> [ConcentratorAction] { send(.cluster(news)) }
}

/// Issue 18: a node's heartbeat, its claims, and what it does when another node owns a console it carries.
final class ClusterOwnershipTests: XCTestCase {
    private let keyA = ConsoleKey(uuid: UUIDs.a, label: "")
    private let keyB = ConsoleKey(uuid: UUIDs.b, label: "")

    func testHeartbeatGoesOutAtOnceThenEveryThirdOfTheLease() {
        let h = ConcentratorHarness(config: .clusterTests)
        XCTAssertEqual(h.remaining(.heartbeat), 0)
        h.advance(by: 0)
        XCTAssertEqual(h.takeClusterRequests(), [.heartbeat(consoles: 0)])
        h.advance(by: 2.9)
        XCTAssertEqual(h.takeClusterRequests(), [])
        h.advance(by: 0.1)
        XCTAssertEqual(h.takeClusterRequests(), [.heartbeat(consoles: 0)])
        // A console carried and claimed here counts.
        h.bringUpVM()
        h.news(.claimed(keyA, Owner(node: "a", epoch: 1)))
        h.takeClusterRequests()
        h.advance(by: 3)
        XCTAssertEqual(h.takeClusterRequests(), [.heartbeat(consoles: 1)])
    }

    func testAttachClaimsTheConsoleAndTheClaimSetsItsOwner() {
        let h = ConcentratorHarness(config: .clusterTests)
        h.advance(by: 0)
        h.takeClusterRequests()
        h.bringUpVM()
        XCTAssertEqual(h.takeClaims(), [.claim(keyA)])
        XCTAssertEqual(h.list().map(\.owner), [nil])
        h.news(.claimed(keyA, Owner(node: "a", epoch: 4)))
        XCTAssertEqual(h.list().map(\.owner), ["a"])
        // The takeover path claims again.
        h.bringUpVM(peer: "10.0.0.9:1")
        h.advance(by: h.config.takeoverProbeTimeout)
        XCTAssertEqual(h.takeClaims(), [.claim(keyA)])
    }

    func testAFailedClaimIsLoggedOnceAndRetriedWithBackOffWhileTheConsoleIsServed() {
        let h = ConcentratorHarness(config: .clusterTests)
        h.bringUpVM()
        h.take()
        h.takeClusterRequests()
        let down = StoreFailure(.unreachable, "connection refused")
        h.news(.failed(.claim(keyA), down))
        XCTAssertEqual(h.take().logs.filter { $0.level == .warning }.count, 1)
        XCTAssertEqual(h.remaining(.claimRetry(keyA)), 1_000_000_000)
        h.advance(by: 1)
        XCTAssertEqual(h.takeClaims(), [.claim(keyA)])
        h.news(.failed(.claim(keyA), down))
        XCTAssertEqual(h.take().logs.filter { $0.level == .warning }.count, 0, "once per outage")
        XCTAssertEqual(h.remaining(.claimRetry(keyA)), 2_000_000_000)
        h.advance(by: 2)
        h.news(.claimed(keyA, Owner(node: "a", epoch: 2)))
        XCTAssertEqual(h.list().map(\.owner), ["a"])
        XCTAssertEqual(h.list().map(\.connected), [true])
    }

    func testAnotherNodesNewerClaimClosesTheStaleConnectionAndThePeopleStay() {
        let h = ConcentratorHarness(config: .clusterTests)
        let vm = h.bringUpVM()
        h.news(.claimed(keyA, Owner(node: "a", epoch: 1)))
        let person = h.connectClient(keyA)
        h.take()
        // An older hint changes nothing.
        h.news(.owners([keyA: Owner(node: "b", epoch: 0)], full: false))
        XCTAssertNil(h.closed[vm])
        h.news(.owners([keyA: Owner(node: "b", epoch: 2)], full: false))
        XCTAssertEqual(h.closed[vm], false)
        let disconnects = h.records.filter { $0.kind == .vmDisconnect }
        XCTAssertEqual(disconnects.map(\.detail), ["owned by node b since epoch 2"])
        XCTAssertEqual(disconnects.map(\.reason), [.disconnect(.ownedElsewhere)])
        XCTAssertEqual(h.machine.tallies.vmDisconnects[.ownedElsewhere], 1)
        XCTAssertNil(h.closed[person], "the people stay")
        let listed = h.list()
        XCTAssertEqual(listed.map(\.connected), [false])
        XCTAssertEqual(listed.map(\.owner), ["b"])
        XCTAssertEqual(listed.map(\.clients), [1])
    }

    func testNewsDuringAClaimWaitsForItsAnswerAndAStaleClaimResultIsIgnored() {
        let h = ConcentratorHarness(config: .clusterTests)
        let vm = h.bringUpVM()
        // The claim is on its way: news of node b's claim does not decide yet.
        h.news(.owners([keyA: Owner(node: "b", epoch: 5)], full: false))
        XCTAssertNil(h.closed[vm])
        // This node's claim came first (epoch 4 < 5): ignored, and its connection is the stale one.
        h.take()
        h.news(.claimed(keyA, Owner(node: "a", epoch: 4)))
        XCTAssertEqual(h.closed[vm], false)
        XCTAssertEqual(h.records.filter { $0.kind == .vmDisconnect }.map(\.detail), ["owned by node b since epoch 5"])
        XCTAssertEqual(h.list().map(\.owner), ["b"])
    }

    func testNewsDuringAClaimThatLosesToItKeepsTheConnection() {
        let h = ConcentratorHarness(config: .clusterTests)
        let vm = h.bringUpVM()
        h.news(.owners([keyA: Owner(node: "b", epoch: 5)], full: true))
        h.news(.claimed(keyA, Owner(node: "a", epoch: 6)))
        XCTAssertNil(h.closed[vm])
        XCTAssertEqual(h.list().map(\.owner), ["a"])
        // The echo of this node's own claim, and a full re-read without it (read before the claim), keep it.
        h.news(.owners([keyA: Owner(node: "a", epoch: 6)], full: false))
        h.news(.owners([:], full: true))
        XCTAssertEqual(h.list().map(\.owner), ["a"])
        XCTAssertNil(h.closed[vm])
    }

    func testScrollbackOfOwnedConsolesIsFencedAndOthersAreNotSaved() {
        let h = ConcentratorHarness(config: .clusterTests)
        h.scrollbackReply = { _ in .hold }
        let vm = h.bringUpVM()
        h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        h.news(.claimed(keyA, Owner(node: "a", epoch: 3)))
        h.news(.owners([keyB: Owner(node: "b", epoch: 7)], full: false))
        h.vm(vm, says: Array("hello".utf8))
        h.take()
        h.advance(by: 2)
        let saves = h.take().compactMap { action -> ([StoreOp], WriteToken?)? in
            if case let .persist(ops, token) = action, case .scrollback? = token { return (ops, token) }
            return nil
        }
        XCTAssertEqual(saves.count, 1, "db01 is owned by node b: b saves it")
        XCTAssertEqual(saves.first?.1, .scrollback([keyA]))
        guard case let .fenced(key, owner, inner)? = saves.first?.0.first else { return XCTFail("not fenced") }
        XCTAssertEqual(key, keyA)
        XCTAssertEqual(owner, Owner(node: "a", epoch: 3))
        XCTAssertEqual(inner.count, 1)
        // The database refuses it: another node claimed web01 since. This node is stale for it.
        h.send(.writeCompleted(.scrollback([keyA]), error: StoreFailure(.fenced, "fenced")))
        XCTAssertEqual(h.closed[vm], false)
        let disconnects = h.records.filter { $0.kind == .vmDisconnect }
        XCTAssertEqual(disconnects.map(\.reason), [.disconnect(.ownedElsewhere)])
        XCTAssertEqual(disconnects.map(\.detail), ["owned by another node (a write made under this node's claim was fenced)"])
        h.vm(h.bringUpVM(peer: "10.0.0.4:1"), says: Array("more".utf8))
        h.take()
        h.advance(by: 2)
        XCTAssertEqual(h.take().persistedOps.filter { if case .fenced = $0 { return true }; return false }.count, 0,
                       "no owner known: nothing saved until the new claim is answered")
        h.news(.claimed(keyA, Owner(node: "a", epoch: 5)))
        h.advance(by: 2)
        let fenced = h.take().persistedOps.compactMap { op -> (Owner, [StoreOp])? in
            if case let .fenced(_, owner, inner) = op { return (owner, inner) }
            return nil
        }
        XCTAssertEqual(fenced.map(\.0), [Owner(node: "a", epoch: 5)])
        guard case let .appendScrollback(_, _, data, _, _)? = fenced.first?.1.first else { return XCTFail("no append") }
        XCTAssertEqual(data, Array("more".utf8), "what it printed before its claim was answered is saved")
    }

    /// A save fenced under an older claim of this node, refused after the node claimed the console again (the VM
    /// went to another node and came back): the save was outdated, the connection stays, and the next save
    /// rewrites the ring under the new claim.
    func testASaveUnderAnOlderClaimOfThisNodeIsOutdatedNotStale() {
        let h = ConcentratorHarness(config: .clusterTests)
        h.scrollbackReply = { _ in .hold }
        let vm = h.bringUpVM()
        h.news(.claimed(keyA, Owner(node: "a", epoch: 3)))
        h.vm(vm, says: Array("hello".utf8))
        h.advance(by: 2)
        XCTAssertEqual(h.take().persistedOps.filter { if case .fenced = $0 { return true }; return false }.count, 1)
        h.news(.claimed(keyA, Owner(node: "a", epoch: 5)))
        h.send(.writeCompleted(.scrollback([keyA]), error: StoreFailure(.fenced, "fenced")))
        XCTAssertNil(h.closed[vm])
        XCTAssertFalse(h.take().recordKinds.contains(.vmDisconnect))
        h.advance(by: 2)
        let fenced = h.take().persistedOps.compactMap { op -> (Owner, [StoreOp])? in
            if case let .fenced(_, owner, inner) = op { return (owner, inner) }
            return nil
        }
        XCTAssertEqual(fenced.map(\.0), [Owner(node: "a", epoch: 5)])
        guard case let .saveScrollback(_, _, data, _)? = fenced.first?.1.first else { return XCTFail("no rewrite") }
        XCTAssertEqual(data, Array("hello".utf8))
    }

    func testConsolesOwnedElsewhereDoNotExpireHere() {
        let h = ConcentratorHarness(config: .clusterTests, assignments: [
            Assignment(uuid: UUIDs.a, name: "web01", port: 20000, createdAt: MockClock.originDate, lastSeen: MockClock.originDate),
            Assignment(uuid: UUIDs.b, name: "db01", port: 20001, createdAt: MockClock.originDate, lastSeen: MockClock.originDate),
        ])
        h.news(.owners([keyA: Owner(node: "b", epoch: 1)], full: true))
        h.advance(by: 3600 + 120)
        XCTAssertEqual(h.records.filter { $0.kind == .portExpired }.map(\.uuid), [UUIDs.b])
        XCTAssertEqual(h.list().map(\.name), ["web01"])
    }
}
