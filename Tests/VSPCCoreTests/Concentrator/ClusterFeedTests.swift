import Foundation
import XCTest
@testable import VSPCCore

/// Feeds: people on node a reading web01, which node o (or p) owns; and the owner's side of a feed.
final class ClusterFeedTests: XCTestCase {
    let key = ConsoleKey(uuid: UUIDs.a, label: "")
    let assignment = Assignment(uuid: UUIDs.a, name: "web01", port: 20000, createdAt: MockClock.originDate,
                                lastSeen: MockClock.originDate)

    /// Node a, knowing web01 from the shared assignment, owned by o at epoch 3; a, o and p alive.
    func nodeA(_ tweak: (inout ConcentratorConfig) -> Void = { _ in }) -> ConcentratorHarness {
        var config = ConcentratorConfig.clusterNode("a")
        tweak(&config)
        let a = ConcentratorHarness(config: config, assignments: [assignment])
        a.news(.nodes([TestNodes.status("a"), TestNodes.status("o"), TestNodes.status("p")]))
        a.news(.owners([key: Owner(node: "o", epoch: 3)], full: false))
        a.take()
        a.takeRequests()
        return a
    }

    func openFeed(_ id: ConnectionID, _ node: String, since: Int64?) -> ClusterRequest {
        .openFeed(id, key, node: node, link: TestNodes.link(node), sinceEpoch: since)
    }

    /// A person on the SSH door (which shows notices), on the console's port.
    func sshPerson(_ h: ConcentratorHarness) -> ConnectionID {
        let id = h.newConnection(.client)
        guard let listener = h.listeners[key] else {
            XCTFail("no listener")
            return id
        }
        h.send(.sessionStarted(id, door: .ssh, peer: "192.0.2.9:50000",
                               request: SessionRequest(target: .listener(listener.ref), principal: .anonymous)))
        XCTAssertEqual(h.takeOutput(id), Array("\r\n[vspcd: connected to web01 (up on node o); Ctrl-] ? for the menu]\r\n".utf8))
        return id
    }

    func testFeedOpensWithTheFirstPersonAndClosesWithTheLast() {
        let a = nodeA()
        let first = a.connectClient(key)
        XCTAssertEqual(a.takeRequests(), [openFeed(-1, "o", since: nil)])
        let second = a.connectClient(key, peer: "192.0.2.7:40002")
        XCTAssertEqual(a.takeRequests(), [])
        a.take()
        a.send(.clientClosed(first))
        XCTAssertFalse(a.take().contains(.close(-1, flush: true)))
        a.send(.clientClosed(second))
        XCTAssertTrue(a.take().contains(.close(-1, flush: true)))
        // Bytes of the closed feed are nobody's.
        a.news(.feedBytes(-1, Array("late".utf8)))
        XCTAssertEqual(a.take().io, [])
        a.connectClient(key)
        XCTAssertEqual(a.takeRequests(), [openFeed(-2, "o", since: nil)])
    }

    func testNoFeedForAConsoleOwnedHereOrByADeadNode() {
        let a = nodeA()
        a.news(.nodes([TestNodes.status("a"), TestNodes.status("o", alive: false)]))
        a.connectClient(key)
        XCTAssertEqual(a.takeRequests(), [])
        let b = nodeA()
        b.news(.owners([key: Owner(node: "a", epoch: 4)], full: false))
        b.connectClient(key)
        XCTAssertEqual(b.takeRequests(), [])
    }

    func testBytesReachThePeopleAndTheirInputGoesToTheOwner() {
        let a = nodeA {
            $0.keepsOutput = true
            $0.vmotionHoldLimit = 6
        }
        let person = a.connectClient(key)
        _ = a.takeOutput(person)
        // Before the owner accepts, input waits (bounded like the vMotion hold buffer).
        a.client(person, types: Array("abcd".utf8))
        a.client(person, types: Array("efgh".utf8))
        XCTAssertEqual(a.takeOutput(-1), [])
        a.take()
        a.news(.feedOpened(-1, owner: Owner(node: "o", epoch: 3)))
        XCTAssertEqual(a.takeOutput(-1), Array("abcdef".utf8))
        XCTAssertEqual(a.take().logs.map(\.message),
                       ["feed of web01: 2 bytes of client input for it exceeded the hold buffer before it opened, and were discarded"])
        a.client(person, types: [0x78, 0xFF, 0xFF])
        XCTAssertEqual(a.takeOutput(-1), [0x78, 0xFF], "raw on the feed: the link frames it")

        a.news(.feedBytes(-1, [0x41, 0xFF, 0x42]))
        XCTAssertEqual(a.takeOutput(person), [0x41, 0xFF, 0xFF, 0x42])
        XCTAssertNil(a.consoleOutput[key], "only the owner logs the console's output")
        a.take()
        a.advance(by: 2)
        XCTAssertEqual(a.take().persistedOps, [], "only the owner saves the scrollback")
    }

    func testOwnerGoneNoticeThenTheFeedFollowsTheNewOwner() {
        let a = nodeA()
        let person = sshPerson(a)
        XCTAssertEqual(a.takeRequests(), [openFeed(-1, "o", since: nil)])
        a.news(.feedOpened(-1, owner: Owner(node: "o", epoch: 3)))
        a.news(.feedClosed(-1, reason: "connection reset"))
        let notice = { (node: String) in Array("\r\n[vspcd: console owner node \(node) is gone; waiting for the VM]\r\n".utf8) }
        XCTAssertEqual(a.takeOutput(person), notice("o"))
        XCTAssertEqual(a.takeRequests(), [], "reopened only when an owner is named")
        a.client(person, types: Array("lost".utf8))
        XCTAssertEqual(a.takeOutput(-1), [])

        // The VM reconnected to p, which claimed it: the people here read it from p, from that claim on.
        a.news(.owners([key: Owner(node: "p", epoch: 4)], full: false))
        XCTAssertEqual(a.takeRequests(), [openFeed(-2, "p", since: 4)])
        a.news(.feedOpened(-2, owner: Owner(node: "p", epoch: 4)))

        // p's lease runs out: the feed is closed here and the people told; p alive again: reopened.
        a.take()
        a.news(.nodes([TestNodes.status("a"), TestNodes.status("p", alive: false)]))
        XCTAssertTrue(a.take().contains(.close(-2, flush: true)))
        XCTAssertEqual(a.takeOutput(person), notice("p"))
        a.news(.nodes([TestNodes.status("a"), TestNodes.status("p")]))
        XCTAssertEqual(a.takeRequests(), [openFeed(-3, "p", since: 4)])
        // A late close of the old feed changes nothing.
        a.news(.feedClosed(-2, reason: "closed"))
        XCTAssertEqual(a.takeOutput(person), [])
    }

    func testFeedFollowsTheOwnerAndEndsWhenTheVMIsHere() {
        let a = nodeA()
        a.connectClient(key)
        a.news(.feedOpened(-1, owner: Owner(node: "o", epoch: 3)))
        a.takeRequests()
        a.take()
        a.news(.owners([key: Owner(node: "p", epoch: 5)], full: false))
        XCTAssertTrue(a.take().contains(.close(-1, flush: true)))
        XCTAssertEqual(a.takeRequests(), [openFeed(-2, "p", since: 5)])
        // A claim on the same node (a vMotion within p) keeps the feed; an older claim arriving late is ignored.
        a.news(.owners([key: Owner(node: "p", epoch: 6)], full: false))
        a.news(.owners([key: Owner(node: "o", epoch: 4)], full: false))
        XCTAssertEqual(a.takeRequests(), [])
        XCTAssertEqual(a.take().io, [])
        // The VM connects here: the feed ends at once.
        a.bringUpVM(peer: "10.0.0.7:900")
        XCTAssertTrue(a.take().contains(.close(-2, flush: true)))
        a.takeRequests()
        a.news(.claimed(key, Owner(node: "a", epoch: 7)))
        XCTAssertEqual(a.takeRequests(), [])
    }

    /// This node holds the console again (epoch 11) when a feed asks for its earlier claim (9), which another
    /// node's (10) followed: the feed gets what was printed under 9 only, then ends; its asker (draining after a
    /// COMPLETE under 10) then follows claim 11, whose feed gets what was printed since.
    func testAFeedFromAClaimAnotherNodeFollowedGetsThatClaimsBytesThenEnds() {
        let a = ConcentratorHarness.clusterNode("a")
        let first = a.bringUpVM(peer: "10.0.0.1:900")
        a.vm(first, says: Array("nine ".utf8))
        a.news(.claimed(key, Owner(node: "a", epoch: 9)))
        a.send(.vmClosed(first))
        a.news(.owners([key: Owner(node: "b", epoch: 10)], full: false))
        let again = a.bringUpVM(peer: "10.0.0.1:901")
        _ = a.takeOutput(again)
        a.vm(again, says: Array("eleven ".utf8))
        a.news(.claimed(key, Owner(node: "a", epoch: 11)))
        a.take()
        let late = a.feedSession(from: "b", key, sinceEpoch: 9)
        XCTAssertEqual(a.takeOutput(late), Array("nine ".utf8))
        XCTAssertEqual(a.closed[late], true)
        let current = a.feedSession(from: "b", key, sinceEpoch: 11)
        XCTAssertEqual(a.takeOutput(current), Array("eleven ".utf8))
        XCTAssertNil(a.closed[current])
        a.vm(again, says: Array("live".utf8))
        XCTAssertEqual(a.takeOutput(current), Array("live".utf8))
    }

    /// The escape menu's BREAK on a node whose VM is elsewhere goes over the feed: the owner sends the VM a
    /// telnet BREAK, and each node records it (the person's node with the key, the owner's as the node's).
    func testABreakAsksTheOwnerOverTheFeed() {
        let b = ConcentratorHarness.clusterNode("b", assignments: [
            Assignment(uuid: UUIDs.a, name: "web01", port: 20000, createdAt: MockClock.originDate, lastSeen: MockClock.originDate),
        ])
        b.news(.owners([key: Owner(node: "a", epoch: 1)], full: false))
        let alice = AuthorizedKey(keyType: "ssh-ed25519", blob: Array("alice".utf8), comment: "alice", vms: nil, readOnly: false)
        let person = b.newConnection(.client)
        b.send(.sshSessionStarted(person, user: "web01", key: alice, fingerprint: "SHA256:alice", peer: "198.51.100.7:5000"))
        XCTAssertEqual(b.takeRequests(), [.openFeed(-1, key, node: "a", link: TestNodes.link("a"), sinceEpoch: nil)])
        b.client(person, types: [0x1D, UInt8(ascii: "b")])
        XCTAssertEqual(b.takeRequests(), [], "not before the feed is open")
        b.news(.feedOpened(-1, owner: Owner(node: "a", epoch: 1)))
        b.take()
        b.client(person, types: [0x1D, UInt8(ascii: "b")])
        XCTAssertEqual(b.takeRequests(), [.sendBreak(-1)])
        XCTAssertEqual(b.take().records.map(\.detail), ["door=ssh mode=read-write key=alice SHA256:alice via node a"])

        let a = ConcentratorHarness.clusterNode("a")
        let vm = a.bringUpVM(peer: "10.0.0.1:900")
        a.news(.claimed(key, Owner(node: "a", epoch: 1)))
        let feed = a.feedSession(from: "b", key, sinceEpoch: nil)
        _ = a.takeOutput(vm)
        a.take()
        a.news(.breakAsked(feed))
        XCTAssertEqual(a.takeOutput(vm), [255, 243], "IAC BRK")
        XCTAssertEqual(a.take().records.map(\.kind), [.clientBreak])
    }

    func testOwnerSideReplaysWhatWasPrintedSinceTheClaimAskedFor() {
        let b = ConcentratorHarness.clusterNode("b")
        let first = b.bringUpVM(peer: "10.0.0.1:900")
        b.vm(first, says: Array("zero".utf8))
        b.news(.claimed(key, Owner(node: "b", epoch: 1)))
        XCTAssertEqual(b.takeOutput(b.feedSession(from: "a", key, sinceEpoch: 1)), Array("zero".utf8))

        // The VM reconnects (claimed again at epoch 2); before the claim's answer, its epoch is asked for.
        b.send(.vmClosed(first))
        let vm = b.bringUpVM(peer: "10.0.0.1:901")
        _ = b.takeOutput(vm)
        b.vm(vm, says: Array("one".utf8))
        XCTAssertEqual(b.takeOutput(b.feedSession(from: "a", key, sinceEpoch: 2)), Array("one".utf8))
        XCTAssertEqual(b.machine.feedAcceptEpoch(key), 1)
        b.news(.claimed(key, Owner(node: "b", epoch: 2)))
        XCTAssertEqual(b.machine.feedAcceptEpoch(key), 2)
        let current = b.feedSession(from: "a", key, sinceEpoch: 2)
        let fromNow = b.feedSession(from: "a", key, sinceEpoch: nil)
        let stale = b.feedSession(from: "a", key, sinceEpoch: 1)
        XCTAssertEqual(b.takeOutput(current), Array("one".utf8))
        XCTAssertEqual(b.takeOutput(fromNow), [])
        XCTAssertEqual(b.takeOutput(stale), Array("zeroone".utf8), "since claim 1: both of this node's claims")
        b.vm(vm, says: [0x74, 0xFF, 0xFF])
        for id in [current, fromNow, stale] { XCTAssertEqual(b.takeOutput(id), [0x74, 0xFF], "raw console bytes") }
        b.client(current, types: [0x41, 0xFF])
        XCTAssertEqual(b.takeOutput(vm), [0x41, 0xFF, 0xFF], "to the VM, telnet-escaped")
    }

    func testANodeThatDoesNotOwnTheConsoleRefusesItsFeed() {
        let a = nodeA()
        let session = a.feedSession(from: "p", key, sinceEpoch: nil)
        XCTAssertEqual(a.closed[session], false)
        XCTAssertFalse(a.take().recordKinds.contains(.clientAttach))
    }
}
