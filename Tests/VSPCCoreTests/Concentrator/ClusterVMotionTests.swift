import Foundation
import XCTest
@testable import VSPCCore

/// The nodes of the tests: their internal links.
enum TestNodes {
    static func link(_ name: String) -> String {
        let host = ["a": "127.0.0.2", "b": "127.0.0.3", "o": "127.0.0.4", "p": "127.0.0.5"][name] ?? "127.0.0.9"
        return "\(host):6781"
    }

    static func status(_ name: String, alive: Bool = true) -> NodeStatus {
        NodeStatus(name: name, link: link(name), startedAt: MockClock.originDate, heartbeat: MockClock.originDate,
                   consoles: 0, alive: alive)
    }
}

extension ConcentratorConfig {
    /// `forTests`, as node `name` of a cluster.
    static func clusterNode(_ name: String) -> ConcentratorConfig {
        var c = ConcentratorConfig.forTests
        c.cluster = ClusterConfig(node: name, linkAddress: TestNodes.link(name))
        return c
    }
}

extension ConcentratorHarness {
    /// Node `name` of a cluster whose nodes a and b are alive.
    static func clusterNode(_ name: String, seed: UInt64 = 0x5EED, assignments: [Assignment] = []) -> ConcentratorHarness {
        let h = ConcentratorHarness(config: .clusterNode(name), seed: seed, assignments: assignments)
        h.news(.nodes([TestNodes.status("a"), TestNodes.status("b")]))
        return h
    }

    /// The cluster requests since the last call (without heartbeats, which tick regardless), and forgets them.
    @discardableResult
    func takeRequests() -> [ClusterRequest] {
        defer { clusterRequests = [] }
        return clusterRequests.filter {
            if case .heartbeat = $0 { return false }
            return true
        }
    }

    /// Another node's feed of the console, as the driver starts it from a HELLO on the internal link.
    @discardableResult
    func feedSession(from node: String, _ key: ConsoleKey, sinceEpoch: Int64?) -> ConnectionID {
        let id = newConnection(.client)
        send(.sessionStarted(id, door: .node, peer: "node \(node) (\(TestNodes.link(node)))",
                             request: SessionRequest(target: .console(key), principal: .node(node), sinceEpoch: sinceEpoch)))
        return id
    }
}

/// vMotion between two nodes, each a machine of its own; the test carries the requests and the news between
/// them (and the internal link's bytes) by hand, as the runners and the link would.
final class ClusterVMotionTests: XCTestCase {
    let key = ConsoleKey(uuid: UUIDs.a, label: "")
    let sequence: [UInt8] = [0x44, 0xFF, 0x87, 0xF1]
    let assignment = Assignment(uuid: UUIDs.a, name: "web01", port: 20000, createdAt: MockClock.originDate,
                                lastSeen: MockClock.originDate)

    func owner(_ node: String, _ epoch: Int64) -> Owner { Owner(node: node, epoch: epoch) }

    /// Node a with web01 on `source` (claimed at epoch 1), both nodes alive.
    func nodeA(seed: UInt64 = 0x5EED) -> (ConcentratorHarness, ConnectionID) {
        let a = ConcentratorHarness.clusterNode("a", seed: seed)
        let source = a.bringUpVM(peer: "10.0.0.1:900")
        a.news(.claimed(key, owner("a", 1)))
        _ = a.takeOutput(source)
        a.take()
        a.takeRequests()
        return (a, source)
    }

    func nodeB(assignments: [Assignment]) -> ConcentratorHarness {
        let b = ConcentratorHarness.clusterNode("b", seed: 99, assignments: assignments)
        b.news(.owners([key: owner("a", 1)], full: false))
        b.take()
        return b
    }

    func shared(_ secret: [UInt8], at date: Date = MockClock.originDate) -> SharedVMotion {
        SharedVMotion(key: key, name: "web01", port: 20000, sequence: sequence, secret: secret, sourceNode: "a",
                      sourcePeer: "10.0.0.1:900", begunAt: date)
    }

    /// BEGIN from `source` on a, and its publication committed (the GOAHEAD goes out).
    func beginPublished(_ a: ConcentratorHarness, _ source: ConnectionID) {
        a.vm(source, says: ESXi.begin(sequence))
        a.news(.vmotionPublished(key, generation: 1))
    }

    /// A destination on b whose PEER the database found (migration `secret`, begun on node `source`), identified,
    /// before its COMPLETE.
    func foundDestination(on b: ConcentratorHarness, secret: [UInt8], from source: String = "a",
                          peer: String = "10.0.0.2:902", sourceEpoch: Int64? = nil) -> ConnectionID {
        let dest = b.connectVM(peer: peer)
        b.negotiate(dest)
        _ = b.takeOutput(dest)
        b.vm(dest, says: ESXi.peer(sequence + secret))
        var found = shared(secret)
        found.sourceNode = source
        found.sourceEpoch = sourceEpoch
        b.news(.vmotionFound(dest, found))
        b.vm(dest, says: ESXi.vcUUID(UUIDs.a))
        b.vm(dest, says: ESXi.name("web01"))
        return dest
    }

    /// A person on each node (b's fed from a), typing during the window on both; the VM moves from a to b;
    /// every byte typed reaches the VM once, and every byte it prints reaches both people once.
    func testCrossNodeVMotionLosesNoByte() {
        let secret = expectedSecret(seed: 0x5EED)
        let (a, source) = nodeA()
        let b = nodeB(assignments: [assignment])
        let bPerson = b.connectClient(key, peer: "192.0.2.8:40002")
        XCTAssertEqual(b.takeRequests(), [.openFeed(-1, key, node: "a", link: "127.0.0.2:6781", sinceEpoch: nil)])
        let aFeedB = a.feedSession(from: "b", key, sinceEpoch: nil)
        XCTAssertEqual(a.takeOutput(aFeedB), [], "nothing asked from a claim, nothing replayed")
        XCTAssertEqual(a.machine.forwardedSessions.incoming, 1)
        XCTAssertEqual(b.machine.forwardedSessions.outgoing, 1)
        b.news(.feedOpened(-1, owner: owner("a", 1)))
        let aPerson = a.connectClient(key, peer: "192.0.2.7:40001")
        XCTAssertEqual(a.takeOutput(aPerson), Wire.clientOpening)
        XCTAssertEqual(b.takeOutput(bPerson), Wire.clientOpening)

        a.vm(source, says: Array("before\r\n".utf8))
        b.news(.feedBytes(-1, a.takeOutput(aFeedB)))

        // BEGIN: the GOAHEAD waits for the migration to be in the database.
        a.vm(source, says: ESXi.begin(sequence))
        XCTAssertEqual(a.takeRequests(), [.publishVMotion(shared(secret), generation: 1)])
        XCTAssertEqual(a.takeOutput(source), [])
        XCTAssertTrue(a.isArmed(.vmotion(key, generation: 1)))
        a.take()
        a.news(.vmotionPublished(key, generation: 1))
        XCTAssertEqual(a.takeOutput(source), Wire.vmware(Wire.goahead, sequence + secret))
        XCTAssertEqual(a.take().recordKinds, [.vmotionGoahead])

        // The window: both people type; a holds it all (b's comes over b's feed).
        a.client(aPerson, types: Array("ls;".utf8))
        b.client(bPerson, types: Array("pwd;".utf8))
        a.client(aFeedB, types: b.takeOutput(-1))
        XCTAssertEqual(a.takeOutput(source), [], "input in the window is held")

        // The destination reaches b, which finds the migration in the database.
        a.advance(by: 0.25)
        b.advance(by: 0.25)
        let dest = b.connectVM(peer: "10.0.0.2:902")
        b.negotiate(dest)
        _ = b.takeOutput(dest)
        b.vm(dest, says: ESXi.peer(sequence + secret))
        XCTAssertEqual(b.takeRequests(), [.findVMotion(dest, cookie: sequence + secret, until: 30)])
        XCTAssertEqual(b.takeOutput(dest), [])
        b.take()
        b.news(.vmotionFound(dest, shared(secret)))
        XCTAssertEqual(b.takeOutput(dest), Wire.vmware(Wire.peerOK, sequence))
        XCTAssertEqual(b.records.map(\.detail), ["source 10.0.0.1:900 on node a, destination 10.0.0.2:902"])
        b.vm(dest, says: ESXi.vcUUID(UUIDs.a))
        b.vm(dest, says: ESXi.name("web01"))
        b.vm(dest, says: Array("early ".utf8))
        a.vm(source, says: Array("tail\r\n".utf8))
        b.news(.feedBytes(-1, a.takeOutput(aFeedB)))
        XCTAssertEqual(b.takeOutput(dest), [])

        // COMPLETE on b: b claims the console; its own feed from a drains (a may still send what the source
        // printed last) until a closes it, and what b's VM prints meanwhile waits.
        a.advance(by: 0.25)
        b.advance(by: 0.25)
        b.take()
        b.vm(dest, says: ESXi.complete(sequence))
        XCTAssertEqual(b.takeRequests(), [.claim(key), .withdrawVMotion(key, sequence: sequence)])
        let actions = b.take()
        XCTAssertFalse(actions.contains(.close(-1, flush: true)), "the old feed drains")
        XCTAssertTrue(b.isArmed(.feedDrain(key)))
        let complete = actions.records.first { $0.kind == .vmotionComplete }
        XCTAssertEqual(complete?.detail, "source 10.0.0.1:900 on node a, destination 10.0.0.2:902 on node b, window 500.0 ms")
        XCTAssertEqual(complete?.window, 500_000_000)
        b.vm(dest, says: Array("hello\r\n".utf8))
        b.news(.claimed(key, owner("b", 2)))
        // What a's source printed last, still on its way over the feed.
        a.vm(source, says: Array("last\r\n".utf8))
        b.news(.feedBytes(-1, a.takeOutput(aFeedB)))

        // a learns the new owner: its migration ends, but the source is still open. What it sent before the
        // COMPLETE may come after the news (another connection): it is read until it closes, still going to
        // b over b's feed, and a's people follow b only then.
        a.news(.owners([key: owner("b", 2)], full: false))
        XCTAssertNil(a.closed[source])
        XCTAssertNil(a.closed[aFeedB])
        XCTAssertTrue(a.isArmed(.departure(key)))
        XCTAssertEqual(a.takeRequests(), [])
        XCTAssertFalse(a.take().recordKinds.contains(.vmotionSourceClosed))
        a.vm(source, says: Array("late\r\n".utf8))
        b.news(.feedBytes(-1, a.takeOutput(aFeedB)))
        a.client(aPerson, types: Array("cd;".utf8))
        a.send(.vmClosed(source))
        let moved = a.take()
        XCTAssertFalse(a.isArmed(.departure(key)))
        XCTAssertEqual(a.closed[aFeedB], true, "b reads the console from itself now")
        b.news(.feedClosed(-1, reason: "closed"))
        XCTAssertFalse(b.isArmed(.feedDrain(key)))
        XCTAssertFalse(a.isArmed(.vmotion(key, generation: 1)))
        XCTAssertEqual(moved.records.filter { $0.kind == .vmotionSourceClosed }.map(\.detail),
                       ["moved to node b at epoch 2, window 500.0 ms"])
        XCTAssertFalse(moved.recordKinds.contains(.vmDisconnect))
        XCTAssertEqual(a.takeRequests(), [.openFeed(-1, key, node: "b", link: "127.0.0.3:6781", sinceEpoch: 2)])
        a.news(.feedOpened(-1, owner: owner("b", 2)))
        let held = a.takeOutput(-1)
        XCTAssertEqual(held, Array("ls;pwd;cd;".utf8))

        // On b, a's feed gets what the VM printed since b's claim, then the held input goes to the VM.
        let bFeedA = b.feedSession(from: "a", key, sinceEpoch: 2)
        a.news(.feedBytes(-1, b.takeOutput(bFeedA)))
        b.client(bFeedA, types: held)
        b.vm(dest, says: Array("more".utf8))
        a.news(.feedBytes(-1, b.takeOutput(bFeedA)))

        XCTAssertEqual(b.takeOutput(dest), Array("ls;pwd;cd;".utf8), "typed in the window, delivered once")
        XCTAssertEqual(a.takeOutput(source), [])
        let printed = Array("before\r\ntail\r\nlast\r\nlate\r\nearly hello\r\nmore".utf8)
        XCTAssertEqual(a.takeOutput(aPerson), printed)
        XCTAssertEqual(b.takeOutput(bPerson), printed)
        XCTAssertNil(a.consoleOutput[key], "keepsOutput is off in these tests")
    }

    /// ESXi closes the source as the destination completes: a keeps the migration (and its held input) until
    /// the owners news comes.
    func testSourceClosedBeforeTheOwnersNewsKeepsTheHeldInput() {
        let secret = expectedSecret(seed: 0x5EED)
        let (a, source) = nodeA()
        let aPerson = a.connectClient(key)
        beginPublished(a, source)
        a.client(aPerson, types: Array("typed".utf8))
        a.take()
        a.send(.vmClosed(source))
        XCTAssertEqual(a.take().recordKinds, [.vmotionSourceClosed])
        XCTAssertTrue(a.isArmed(.vmotion(key, generation: 1)), "the destination may be on another node")
        a.takeRequests()
        a.news(.owners([key: owner("b", 2)], full: false))
        XCTAssertFalse(a.isArmed(.vmotion(key, generation: 1)))
        XCTAssertEqual(a.takeRequests(), [.openFeed(-1, key, node: "b", link: "127.0.0.3:6781", sinceEpoch: 2)])
        a.news(.feedOpened(-1, owner: owner("b", 2)))
        XCTAssertEqual(a.takeOutput(-1), Array("typed".utf8))
        _ = secret
    }

    /// The order ESXi and the nodes give in practice: the source closes, the destination's node closes its feed
    /// of the source's node (it carries the VM now), and only then comes the owners news. What the people on
    /// both nodes typed in the window still goes to the new owner, once.
    func testSourceAndTheOtherNodesFeedCloseBeforeTheOwnersNews() {
        let (a, source) = nodeA()
        let aPerson = a.connectClient(key)
        let bFeed = a.feedSession(from: "b", key, sinceEpoch: nil)
        beginPublished(a, source)
        a.client(aPerson, types: Array("on-a;".utf8))
        a.client(bFeed, types: Array("on-b;".utf8))
        a.send(.vmClosed(source))
        a.send(.clientClosed(bFeed))
        a.takeRequests()
        a.take()
        a.news(.owners([key: owner("b", 2)], full: false))
        XCTAssertEqual(a.takeRequests(), [.openFeed(-1, key, node: "b", link: "127.0.0.3:6781", sinceEpoch: 2)])
        a.take()
        a.news(.feedOpened(-1, owner: owner("b", 2)))
        XCTAssertEqual(a.take().io, [.send(-1, Array("on-a;on-b;".utf8))])
    }

    /// The new owner's node started after this node's last heartbeat: the held input waits, a heartbeat goes at
    /// once, and the feed that opens when the nodes are known carries it.
    func testHeldInputForANodeNotKnownYetWaitsForTheNodes() {
        let (a, source) = nodeA()
        let aPerson = a.connectClient(key)
        beginPublished(a, source)
        a.client(aPerson, types: Array("typed;".utf8))
        a.send(.vmClosed(source))
        a.takeRequests()
        a.take()
        a.news(.owners([key: owner("c", 2)], full: false))
        XCTAssertEqual(a.takeRequests(), [], "no feed to a node whose link is unknown")
        XCTAssertTrue(a.clusterRequests.isEmpty)
        XCTAssertTrue(a.take().contains(.cluster(.heartbeat(consoles: 0))), "the nodes are asked for at once")
        a.news(.nodes([TestNodes.status("a"), TestNodes.status("b"), TestNodes.status("c")]))
        XCTAssertEqual(a.takeRequests(), [.openFeed(-1, key, node: "c", link: TestNodes.link("c"), sinceEpoch: 2)])
        a.take()
        a.news(.feedOpened(-1, owner: owner("c", 2)))
        XCTAssertEqual(a.take().io, [.send(-1, Array("typed;".utf8))])
    }

    /// A migration whose held input has no person left here still hands it over, then the feed closes.
    func testHeldInputWithNobodyLeftIsHandedOverThenTheFeedCloses() {
        let (a, source) = nodeA()
        let aPerson = a.connectClient(key)
        beginPublished(a, source)
        a.client(aPerson, types: Array("bye".utf8))
        a.send(.clientClosed(aPerson))
        a.takeRequests()
        a.news(.owners([key: owner("b", 2)], full: false))
        // The source never closes: it is closed when its time to send its last bytes is up.
        XCTAssertEqual(a.takeRequests(), [], "the source departs first")
        a.advance(by: ConcentratorStateMachine.feedDrainSeconds)
        XCTAssertEqual(a.closed[source], false)
        XCTAssertEqual(a.take().records.filter { $0.kind == .vmotionSourceClosed }.count, 1)
        XCTAssertEqual(a.takeRequests(), [.openFeed(-1, key, node: "b", link: "127.0.0.3:6781", sinceEpoch: 2)])
        a.take()
        a.news(.feedOpened(-1, owner: owner("b", 2)))
        XCTAssertEqual(a.take().io, [.send(-1, Array("bye".utf8)), .close(-1, flush: true)])
    }

    func testPublicationFailureSaysNotNowAndReleasesTheHeldInput() {
        let secret = expectedSecret(seed: 0x5EED)
        let (a, source) = nodeA()
        let aPerson = a.connectClient(key)
        a.vm(source, says: ESXi.begin(sequence))
        a.client(aPerson, types: Array("x".utf8))
        XCTAssertEqual(a.takeOutput(source), [])
        a.take()
        a.news(.failed(.publishVMotion(shared(secret), generation: 1), StoreFailure(.unreachable, "connection refused")))
        XCTAssertEqual(a.takeOutput(source), Wire.vmware(Wire.notNow, sequence) + Array("x".utf8))
        let actions = a.take()
        XCTAssertEqual(actions.records.map(\.kind), [.vmotionNotNow])
        XCTAssertEqual(actions.records.first?.detail, "the migration could not be shared with the other nodes: connection refused")
        XCTAssertFalse(a.isArmed(.vmotion(key, generation: 1)))
        XCTAssertEqual(a.status()["migrating"], "0")
        // A late publication of it sends nothing; input goes straight to the VM again.
        a.news(.vmotionPublished(key, generation: 1))
        a.client(aPerson, types: Array("y".utf8))
        XCTAssertEqual(a.takeOutput(source), Array("y".utf8))
    }

    /// The VM comes back to a node whose owners map is behind: the claim made on COMPLETE is in flight when an
    /// older owner's notification arrives, and that notification must not close the new connection as stale.
    func testAnOlderOwnersNotificationDuringTheCompletesClaimLeavesTheConnection() {
        let secret: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        let b = nodeB(assignments: [assignment])
        let dest = foundDestination(on: b, secret: secret)
        b.takeRequests()
        b.vm(dest, says: ESXi.complete(sequence))
        XCTAssertEqual(b.takeRequests(), [.claim(key), .withdrawVMotion(key, sequence: sequence)])
        b.take()
        b.news(.owners([key: owner("a", 1)], full: false))
        XCTAssertNil(b.closed[dest], "the claim in flight decides")
        b.news(.claimed(key, owner("b", 2)))
        XCTAssertNil(b.closed[dest])
        XCTAssertFalse(b.take().recordKinds.contains(.vmDisconnect))
    }

    /// The console moves on (back to a) while this node still drains a's feed after a COMPLETE here: the drain
    /// goes on until a ends that feed (a sends what it printed under its old claim first); then what the VM
    /// printed here reaches the person, and the person is fed from a, from a's new claim on.
    func testATakeoverWhileTheOldFeedDrainsKeepsTheOrderAndFollowsTheNewOwner() {
        let secret: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        let b = nodeB(assignments: [assignment])
        let person = b.connectClient(key)
        XCTAssertEqual(b.takeRequests(), [.openFeed(-1, key, node: "a", link: "127.0.0.2:6781", sinceEpoch: nil)])
        b.news(.feedOpened(-1, owner: owner("a", 1)))
        let dest = foundDestination(on: b, secret: secret)
        b.vm(dest, says: ESXi.complete(sequence))
        b.news(.claimed(key, owner("b", 2)))
        _ = b.takeOutput(person)
        b.vm(dest, says: Array("printed here".utf8))
        XCTAssertEqual(b.takeOutput(person), [], "held while a's feed drains")
        b.takeRequests()
        b.news(.owners([key: owner("a", 3)], full: false))
        XCTAssertEqual(b.takeOutput(person), [], "a's last bytes under epoch 1 may still come")
        XCTAssertTrue(b.isArmed(.feedDrain(key)))
        XCTAssertEqual(b.takeRequests(), [])
        b.news(.feedBytes(-1, Array("a's last ".utf8)))
        b.news(.feedClosed(-1, reason: "closed"))
        XCTAssertEqual(b.takeOutput(person), Array("a's last printed here".utf8))
        XCTAssertFalse(b.isArmed(.feedDrain(key)))
        XCTAssertEqual(b.takeRequests(), [.openFeed(-2, key, node: "a", link: "127.0.0.2:6781", sinceEpoch: 3)])
    }

    /// The owner's node answers feed `id` on b with `text`, then ends it.
    func answer(_ b: ConcentratorHarness, feed id: ConnectionID, _ text: String) {
        b.news(.feedBytes(id, Array(text.utf8)))
        b.news(.feedClosed(id, reason: "closed"))
    }

    /// Node b (knowing node c too) with a person fed from a (the feed, -1, has not even opened: a slow link); the
    /// VM comes from a (b claims epoch 2) and prints `under2`, moves on (BEGIN here, `inWindow`, and the source
    /// closes; `heard`: the news of that node's claim comes), and comes here again from a (b claims `back`).
    /// Nothing has reached the person yet, and nothing is asked of a but the first feed.
    func backHereWhileTheFirstFeedDrains(under2: [UInt8], inWindow: [UInt8] = [], heard: Owner?, back: Int64 = 4)
        -> (b: ConcentratorHarness, person: ConnectionID, second: ConnectionID) {
        let b = nodeB(assignments: [assignment])
        b.news(.nodes([TestNodes.status("a"), TestNodes.status("b"), TestNodes.status("c")]))
        let person = b.connectClient(key)
        XCTAssertEqual(b.takeRequests(), [.openFeed(-1, key, node: "a", link: "127.0.0.2:6781", sinceEpoch: nil)])
        let first = foundDestination(on: b, secret: [1, 2, 3, 4, 5, 6, 7, 8])
        b.vm(first, says: ESXi.complete(sequence))
        b.news(.claimed(key, owner("b", 2)))
        _ = b.takeOutput(person)
        b.vm(first, says: under2)
        beginPublished(b, first)
        b.vm(first, says: inWindow)
        b.send(.vmClosed(first))
        if let heard { b.news(.owners([key: heard], full: false)) }
        let second = foundDestination(on: b, secret: [9, 9, 9, 9, 9, 9, 9, 9], peer: "10.0.0.2:903")
        XCTAssertFalse(b.takeRequests().contains { if case .openFeed = $0 { return true }; return false },
                       "only the first feed is asked of a yet")
        b.vm(second, says: ESXi.complete(sequence))
        b.news(.claimed(key, owner("b", back)))
        XCTAssertEqual(b.takeRequests(), [.claim(key), .withdrawVMotion(key, sequence: sequence)])
        XCTAssertEqual(b.takeOutput(person), [], "a's bytes under epoch 1 first")
        return (b, person, second)
    }

    /// The console goes back to a and comes here again while a's first feed still drains: b's person gets a's
    /// bytes under epoch 1, b's own under 2, a's under 3 (asked once the first feed ended), then b's under 4,
    /// each once, in order; and b's tenures are where those bytes went.
    func testAClaimOfTheSourceWhileTheOldFeedDrainsIsAskedForNext() {
        let (b, person, second) = backHereWhileTheFirstFeedDrains(under2: Array("b under 2\r\n".utf8),
                                                                   inWindow: Array("in window\r\n".utf8),
                                                                   heard: owner("a", 3))
        b.vm(second, says: Array("b under 4\r\n".utf8))
        XCTAssertEqual(b.takeOutput(person), [])

        // a answers the first feed with what it printed under epoch 1, then ends it: a's claim 3 is asked next.
        answer(b, feed: -1, "a under 1\r\n")
        XCTAssertEqual(b.takeOutput(person), Array("a under 1\r\nb under 2\r\nin window\r\n".utf8))
        XCTAssertEqual(b.takeRequests(), [.openFeed(-2, key, node: "a", link: "127.0.0.2:6781", sinceEpoch: 3)])
        XCTAssertTrue(b.isArmed(.feedDrain(key)))
        b.vm(second, says: Array("more\r\n".utf8))
        answer(b, feed: -2, "a under 3\r\n")
        XCTAssertEqual(b.takeOutput(person), Array("a under 3\r\nb under 4\r\nmore\r\n".utf8))
        XCTAssertFalse(b.isArmed(.feedDrain(key)))
        XCTAssertEqual(b.takeRequests(), [], "b owns the console")
        b.vm(second, says: Array("live\r\n".utf8))
        XCTAssertEqual(b.takeOutput(person), Array("live\r\n".utf8))

        // Another node asking for b's claims gets b's bytes of each.
        XCTAssertEqual(b.takeOutput(b.feedSession(from: "a", key, sinceEpoch: 2)), Array("b under 2\r\nin window\r\n".utf8))
        XCTAssertEqual(b.takeOutput(b.feedSession(from: "a", key, sinceEpoch: 4)), Array("b under 4\r\nmore\r\nlive\r\n".utf8))
    }

    /// What a drain holds is bounded in all its steps: past the early-output limit, the held output goes out at
    /// once, in order, and the claims still owed are not asked for.
    func testTheDrainsHoldsAreBoundedTogether() {
        let limit = ConcentratorConfig.clusterNode("b").earlyOutputLimit
        let under2 = [UInt8](repeating: 0x32, count: limit / 2 + 10)
        let (b, person, second) = backHereWhileTheFirstFeedDrains(under2: under2, heard: owner("a", 3))
        let under4 = [UInt8](repeating: 0x34, count: limit / 2)
        b.vm(second, says: under4)
        XCTAssertEqual(b.takeOutput(person), under2 + under4)
        XCTAssertEqual(b.closed[-1], true, "the first feed is closed")
        XCTAssertEqual(b.takeRequests(), [], "a's claim 3 is not asked for")
        XCTAssertFalse(b.isArmed(.feedDrain(key)))
        b.vm(second, says: Array("live".utf8))
        XCTAssertEqual(b.takeOutput(person), Array("live".utf8))
    }

    /// As above, but the news of a's claim 3 never came before the second COMPLETE: b asks a, after the first
    /// feed, for what it printed since its latest claim.
    func testAClaimOfTheSourceNotHeardOfWhileTheOldFeedDrainsIsAskedForNext() {
        let (b, person, second) = backHereWhileTheFirstFeedDrains(under2: Array("b under 2\r\n".utf8), heard: nil)
        b.vm(second, says: Array("b under 4\r\n".utf8))
        answer(b, feed: -1, "a under 1\r\n")
        XCTAssertEqual(b.takeOutput(person), Array("a under 1\r\nb under 2\r\n".utf8))
        XCTAssertEqual(b.takeRequests(), [.openFeed(-2, key, node: "a", link: "127.0.0.2:6781",
                                                    sinceEpoch: SessionRequest.sinceLastClaim)])
        answer(b, feed: -2, "a under 3\r\n")
        XCTAssertEqual(b.takeOutput(person), Array("a under 3\r\nb under 4\r\n".utf8))
        XCTAssertFalse(b.isArmed(.feedDrain(key)))
        XCTAssertEqual(b.takeOutput(b.feedSession(from: "a", key, sinceEpoch: 2)), Array("b under 2\r\n".utf8))
        XCTAssertEqual(b.takeOutput(b.feedSession(from: "a", key, sinceEpoch: 4)), Array("b under 4\r\n".utf8))
    }

    /// Three nodes: the console goes from b to c, c to a (b has not heard of a's claim) and a to b, all while
    /// a's first feed drains on b. b asks c for its claim 3, then a for its latest claim: every node's bytes
    /// reach b's person, in order.
    func testClaimsOfTwoOtherNodesWhileTheOldFeedDrainsAreAskedForInTurn() {
        let (b, person, second) = backHereWhileTheFirstFeedDrains(under2: Array("b under 2\r\n".utf8),
                                                                   heard: owner("c", 3), back: 5)
        b.vm(second, says: Array("b under 5\r\n".utf8))
        answer(b, feed: -1, "a under 1\r\n")
        XCTAssertEqual(b.takeOutput(person), Array("a under 1\r\nb under 2\r\n".utf8))
        XCTAssertEqual(b.takeRequests(), [.openFeed(-2, key, node: "c", link: TestNodes.link("c"), sinceEpoch: 3)])
        answer(b, feed: -2, "c under 3\r\n")
        XCTAssertEqual(b.takeOutput(person), Array("c under 3\r\n".utf8))
        XCTAssertEqual(b.takeRequests(), [.openFeed(-3, key, node: "a", link: "127.0.0.2:6781",
                                                    sinceEpoch: SessionRequest.sinceLastClaim)])
        answer(b, feed: -3, "a under 4\r\n")
        XCTAssertEqual(b.takeOutput(person), Array("a under 4\r\nb under 5\r\n".utf8))
        XCTAssertFalse(b.isArmed(.feedDrain(key)))
    }

    /// The VM comes from a to b before b heard of a's claim (b still names itself owner, so its person has no
    /// feed): b asks a for what the VM printed since a's latest claim, and holds its own VM's output until a's
    /// feed ends. The person sees both, once, in order.
    func testACompleteBeforeTheNewsOfTheSourcesClaimAsksTheSourceForWhatItPrinted() {
        let secret = expectedSecret(seed: 0x5EED)
        let (a, source) = nodeA()
        // b held the console at epoch 2, then a claimed it at 3; b has not heard of a's claim.
        a.news(.claimed(key, owner("a", 3)))
        a.vm(source, says: Array("on a\r\n".utf8))
        let b = nodeB(assignments: [assignment])
        b.news(.owners([key: owner("b", 2)], full: false))
        let person = b.connectClient(key)
        XCTAssertEqual(b.takeRequests(), [], "b thinks it holds the console")
        _ = b.takeOutput(person)

        beginPublished(a, source)
        a.vm(source, says: Array("in window\r\n".utf8))
        let dest = foundDestination(on: b, secret: secret)
        b.takeRequests()
        b.vm(dest, says: ESXi.complete(sequence))
        XCTAssertEqual(b.takeRequests(), [.claim(key), .withdrawVMotion(key, sequence: sequence),
                                          .openFeed(-1, key, node: "a", link: "127.0.0.2:6781",
                                                    sinceEpoch: SessionRequest.sinceLastClaim)])
        XCTAssertTrue(b.isArmed(.feedDrain(key)))
        b.vm(dest, says: Array("on b\r\n".utf8))
        XCTAssertEqual(b.takeOutput(person), [], "held until a's feed ends")

        // a still carries the source: it accepts, and replays what it printed since its claim.
        let feed = a.feedSession(from: "b", key, sinceEpoch: SessionRequest.sinceLastClaim)
        b.news(.feedOpened(-1, owner: owner("a", 3)))
        b.news(.feedBytes(-1, a.takeOutput(feed)))
        a.send(.vmClosed(source))
        a.news(.owners([key: owner("b", 4)], full: false))
        XCTAssertEqual(a.closed[feed], true)
        b.news(.feedClosed(-1, reason: "closed"))
        XCTAssertEqual(b.takeOutput(person), Array("on a\r\nin window\r\non b\r\n".utf8))
        XCTAssertFalse(b.isArmed(.feedDrain(key)))
    }

    /// The VM comes from a, whose claim 3 the shared migration names, before b heard of that claim; by the time
    /// b's request reaches a, a holds the console again under a later claim (5). b asks for claim 3 itself, and a
    /// answers with what it printed under it, then ends the feed (its latest claim would have been the wrong one).
    func testACompleteAsksTheSourceForTheClaimTheMigrationNames() {
        let secret = expectedSecret(seed: 0x5EED)
        let (a, source) = nodeA()
        a.news(.claimed(key, owner("a", 3)))
        a.vm(source, says: Array("under 3\r\n".utf8))
        let b = nodeB(assignments: [assignment])
        b.news(.owners([key: owner("b", 2)], full: false))
        let person = b.connectClient(key)
        _ = b.takeOutput(person)
        beginPublished(a, source)
        a.vm(source, says: Array("in window\r\n".utf8))
        let dest = foundDestination(on: b, secret: secret, sourceEpoch: 3)
        b.takeRequests()
        b.vm(dest, says: ESXi.complete(sequence))
        XCTAssertEqual(b.takeRequests(), [.claim(key), .withdrawVMotion(key, sequence: sequence),
                                          .openFeed(-1, key, node: "a", link: "127.0.0.2:6781", sinceEpoch: 3)])

        // Before b's request reaches a, the VM went back to a: b claimed 4, a claimed 5.
        a.send(.vmClosed(source))
        a.news(.owners([key: owner("b", 4)], full: false))
        let again = a.bringUpVM(peer: "10.0.0.1:905")
        a.news(.claimed(key, owner("a", 5)))
        a.vm(again, says: Array("under 5\r\n".utf8))
        let feed = a.feedSession(from: "b", key, sinceEpoch: 3)
        XCTAssertEqual(a.takeOutput(feed), Array("under 3\r\nin window\r\n".utf8))
        XCTAssertEqual(a.closed[feed], true)

        // a's ACCEPT names its claim now (5). On b: its claim 4 is answered, the VM leaves for a, and comes back
        // (the migration names a's claim 5) before a's answer for claim 3 arrives. Claim 5 is still owed after
        // claim 3: b asks for it next.
        b.news(.claimed(key, owner("b", 4)))
        b.news(.feedOpened(-1, owner: owner("a", 5)))
        beginPublished(b, dest)
        b.send(.vmClosed(dest))
        let back = foundDestination(on: b, secret: [7, 7, 7, 7, 7, 7, 7, 7], peer: "10.0.0.2:907", sourceEpoch: 5)
        b.vm(back, says: ESXi.complete(sequence))
        b.takeRequests()
        answer(b, feed: -1, "under 3\r\nin window\r\n")
        XCTAssertEqual(b.takeOutput(person), Array("under 3\r\nin window\r\n".utf8))
        XCTAssertEqual(b.takeRequests(), [.openFeed(-2, key, node: "a", link: "127.0.0.2:6781", sinceEpoch: 5)])
    }

    /// A node that no longer holds the console answers "since your latest claim" with what it printed then,
    /// and ends the feed; a node that never held it refuses.
    func testSinceTheLatestClaimFromANodeThatMovedOn() {
        let (a, source) = nodeA()
        a.vm(source, says: Array("printed\r\n".utf8))
        a.send(.vmClosed(source))
        a.news(.owners([key: owner("b", 2)], full: false))
        a.take()
        let feed = a.feedSession(from: "b", key, sinceEpoch: SessionRequest.sinceLastClaim)
        XCTAssertEqual(a.takeOutput(feed), Array("printed\r\n".utf8))
        XCTAssertEqual(a.closed[feed], true)

        let b = nodeB(assignments: [assignment])
        let asked = b.feedSession(from: "a", key, sinceEpoch: SessionRequest.sinceLastClaim)
        XCTAssertEqual(b.takeOutput(asked), [])
        XCTAssertNotNil(b.closed[asked])
    }

    /// b's COMPLETE brings the VM back to a while a still reads the source it migrated from (its last bytes not
    /// in yet): that source closes, and what was typed on a meanwhile goes to the new connection.
    func testTheVMComingBackEndsADepartureAndTakesItsInput() {
        let secret = expectedSecret(seed: 0x5EED)
        let (a, source) = nodeA()
        let person = a.connectClient(key)
        beginPublished(a, source)
        a.news(.owners([key: owner("b", 2)], full: false))
        XCTAssertTrue(a.isArmed(.departure(key)))
        a.client(person, types: Array("typed".utf8))
        let back = foundDestination(on: a, secret: secret, from: "b", peer: "10.0.0.2:903")
        a.take()
        _ = a.takeOutput(back)
        a.vm(back, says: ESXi.complete(sequence))
        XCTAssertEqual(a.closed[source], false)
        XCTAssertFalse(a.isArmed(.departure(key)))
        XCTAssertEqual(a.takeOutput(back), Array("typed".utf8))
        XCTAssertEqual(a.take().records.filter { $0.kind == .vmotionSourceClosed }.count, 1)
    }

    /// The VM connects to a anew (not by vMotion) while its old source still departs to b: once a's claim is
    /// answered, the source goes, and what was typed for b goes to the VM here; the console stays here.
    func testAFreshConnectionWhileTheSourceDepartsTakesTheInput() {
        let (a, source) = nodeA()
        let person = a.connectClient(key)
        beginPublished(a, source)
        a.news(.owners([key: owner("b", 2)], full: false))
        a.client(person, types: Array("typed".utf8))
        let again = a.bringUpVM(peer: "10.0.0.3:904")
        _ = a.takeOutput(again)
        a.take()
        a.news(.claimed(key, owner("a", 3)))
        XCTAssertEqual(a.closed[source], false)
        XCTAssertEqual(a.takeOutput(again), Array("typed".utf8))
        XCTAssertFalse(a.isArmed(.departure(key)))
        a.vm(again, says: Array("here".utf8))
        XCTAssertEqual(a.takeOutput(person).suffix(4), Array("here".utf8))
        XCTAssertEqual(a.takeRequests().filter { if case .openFeed = $0 { return true }; return false }, [])
    }

    /// The VM comes back to a (from b) before a heard that b had claimed it: the feed a served to b under its
    /// earlier claim ends (b drains it, then follows a's new claim), and that claim's bytes stay apart from the
    /// new ones for a feed that asks for them late.
    func testAComebackEndsTheFeedsServedUnderTheEarlierClaim() {
        let secret: [UInt8] = [9, 8, 7, 6, 5, 4, 3, 2]
        let (a, source) = nodeA()
        let bFeed = a.feedSession(from: "b", key, sinceEpoch: nil)
        a.vm(source, says: Array("under one ".utf8))
        a.send(.vmClosed(source))
        a.take()
        let back = foundDestination(on: a, secret: secret, from: "b", peer: "10.0.0.2:904")
        a.vm(back, says: ESXi.complete(sequence))
        XCTAssertEqual(a.closed[bFeed], true, "served under claim 1: it ends")
        a.news(.claimed(key, owner("a", 3)))
        a.vm(back, says: Array("under three".utf8))
        let late = a.feedSession(from: "b", key, sinceEpoch: 1)
        XCTAssertEqual(a.takeOutput(late), Array("under one ".utf8))
        XCTAssertEqual(a.closed[late], true)
        let current = a.feedSession(from: "b", key, sinceEpoch: 3)
        XCTAssertEqual(a.takeOutput(current), Array("under three".utf8))
    }

    func testFindMissIsRejectedLikeAnUnknownCookie() {
        let b = nodeB(assignments: [assignment])
        let dest = b.connectVM(peer: "10.0.0.2:902")
        b.negotiate(dest)
        _ = b.takeOutput(dest)
        let cookie = sequence + [1, 2, 3, 4, 5, 6, 7, 8]
        b.vm(dest, says: ESXi.peer(cookie))
        XCTAssertEqual(b.takeRequests(), [.findVMotion(dest, cookie: cookie, until: 30)])
        XCTAssertTrue(b.isArmed(.identify(dest)), "the connection waits, its identify timer running")
        b.news(.vmotionFound(dest, nil))
        XCTAssertEqual(b.takeOutput(dest), Wire.peerRefused)
        b.take()
        b.vm(dest, says: ESXi.vcUUID(UUIDs.a))
        XCTAssertEqual(b.records.map(\.detail), ["unknown cookie"])
        XCTAssertEqual(b.records.map(\.kind), [.vmotionPeerRejected])

        // A failed look-up, and a row for another cookie, are refused the same way.
        let second = b.connectVM(peer: "10.0.0.2:903")
        b.negotiate(second)
        _ = b.takeOutput(second)
        b.vm(second, says: ESXi.peer(cookie))
        b.news(.failed(.findVMotion(second, cookie: cookie, until: 30), StoreFailure(.unreachable, "down")))
        XCTAssertEqual(b.takeOutput(second), Wire.peerRefused)
        let third = b.connectVM(peer: "10.0.0.2:904")
        b.negotiate(third)
        _ = b.takeOutput(third)
        b.vm(third, says: ESXi.peer(cookie))
        b.news(.vmotionFound(third, shared([9, 9, 9, 9, 9, 9, 9, 9])))
        XCTAssertEqual(b.takeOutput(third), Wire.peerRefused)
        b.advance(by: 15)
        XCTAssertEqual(b.closed[third], false, "closed by its identify timer")
    }

    func testDestinationOnANodeThatDidNotKnowTheConsoleBindsItsPort() {
        let secret = expectedSecret(seed: 0x5EED)
        let b = ConcentratorHarness(config: .clusterNode("b"), seed: 99)
        let dest = b.connectVM(peer: "10.0.0.2:902")
        b.negotiate(dest)
        b.vm(dest, says: ESXi.peer(sequence + secret))
        b.take()
        b.news(.vmotionFound(dest, shared(secret)))
        XCTAssertEqual(b.listeners[key]?.port, 20000)
        XCTAssertEqual(b.list().map(\.name), ["web01"])
        // The port is the console's: a new VM gets another one.
        b.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        XCTAssertEqual(b.listeners[ConsoleKey(uuid: UUIDs.b, label: "")]?.port, 20001)
    }

    func testAbortAndExpiryWithdrawTheSharedMigration() {
        let (a, source) = nodeA()
        beginPublished(a, source)
        a.takeRequests()
        a.vm(source, says: ESXi.abort)
        XCTAssertEqual(a.takeRequests(), [.withdrawVMotion(key, sequence: sequence)])

        let second: [UInt8] = [0x45, 0x01, 0x02, 0x03]
        a.vm(source, says: ESXi.begin(second))
        guard case .publishVMotion(_, let generation)? = a.takeRequests().first else { return XCTFail("not published") }
        a.news(.vmotionPublished(key, generation: generation))
        a.advance(by: 30)
        XCTAssertEqual(a.takeRequests(), [.withdrawVMotion(key, sequence: second)])
        XCTAssertEqual(a.status()["migrating"], "0")
    }

    /// Source and destination on the same node of a cluster: the migration is shared first, and withdrawn on
    /// COMPLETE; no feed.
    func testLocalVMotionInAClusterIsSharedThenWithdrawn() {
        let secret = expectedSecret(seed: 0x5EED)
        let (a, source) = nodeA()
        let person = a.connectClient(key)
        beginPublished(a, source)
        XCTAssertEqual(a.takeOutput(source), Wire.vmware(Wire.goahead, sequence + secret))
        a.client(person, types: Array("x".utf8))
        let dest = a.connectDestination(cookie: sequence + secret)
        a.takeRequests()
        a.vm(dest, says: ESXi.complete(sequence))
        XCTAssertEqual(a.takeRequests().filter {
            if case .withdrawVMotion = $0 { return true }
            return false
        }, [.withdrawVMotion(key, sequence: sequence)])
        XCTAssertEqual(a.takeOutput(dest).suffix(1), Array("x".utf8))
        XCTAssertEqual(a.machine.forwardedSessions.outgoing, 0)
    }

    /// One daemon: no request, no waiting, and the cluster's news and feeds do nothing.
    func testNothingOfItWithoutACluster() {
        let h = ConcentratorHarness()
        let source = h.bringUpVM()
        _ = h.takeOutput(source)
        let person = h.connectClient(key)
        h.vm(source, says: ESXi.begin(sequence))
        XCTAssertEqual(h.takeOutput(source), Wire.vmware(Wire.goahead, sequence + expectedSecret(seed: 0x5EED)))
        let dest = h.connectVM(peer: "10.0.0.2:902")
        h.negotiate(dest)
        _ = h.takeOutput(dest)
        h.vm(dest, says: ESXi.peer(sequence + [0, 0, 0, 0, 0, 0, 0, 0]))
        XCTAssertEqual(h.takeOutput(dest), Wire.peerRefused)
        h.take()
        h.news(.owners([key: Owner(node: "b", epoch: 9)], full: false))
        h.news(.nodes([TestNodes.status("b")]))
        h.news(.feedBytes(-1, Array("x".utf8)))
        h.send(.vmClosed(source))
        XCTAssertEqual(h.clusterRequests, [])
        let node = h.feedSession(from: "b", key, sinceEpoch: 1)
        XCTAssertEqual(h.closed[node], false, "no feeds without a cluster")
        _ = person
    }
}
