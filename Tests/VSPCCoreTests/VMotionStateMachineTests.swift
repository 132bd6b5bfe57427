import XCTest
@testable import VSPCCore

final class VMotionStateMachineTests: XCTestCase {
    typealias SM = VMotionStateMachine
    let seq: [UInt8] = [0x44, 0xDA, 0x87, 0xF1]
    let secret: [UInt8] = [0x3C, 0xE6, 0x4D, 0xAB]
    var cookie: [UInt8] { seq + secret }
    let source: ConnectionID = 10
    let destination: ConnectionID = 20

    /// A machine with a pending migration from `source`; returns its generation.
    private func begun(_ sm: inout SM, now: UInt64 = 1_000) -> Int {
        guard case .goahead(let payload, let generation) = sm.begin(sequence: seq, from: source, currentVM: source,
                                                                   secret: secret, now: now) else {
            XCTFail("begin refused")
            return -1
        }
        XCTAssertEqual(payload, cookie)
        return generation
    }

    private func isNotNow(_ r: SM.BeginResult) -> Bool { if case .notNow = r { return true }; return false }
    private func isRejected(_ r: SM.PeerResult) -> Bool { if case .rejected = r { return true }; return false }
    private func isRejected(_ r: SM.CompleteResult) -> Bool { if case .rejected = r { return true }; return false }
    private func isIgnored(_ r: SM.AbortResult) -> Bool { if case .ignored = r { return true }; return false }

    func testBeginAnswersGoaheadWithSequencePlusSecret() {
        var sm = SM()
        XCTAssertFalse(sm.isPending)
        let r = sm.begin(sequence: [0x76, 0x19, 0xFF, 0xE9], from: source, currentVM: source, secret: [0x55, 0x21, 0x99, 0x8C], now: 5)
        guard case .goahead(let payload, let generation) = r else { return XCTFail("\(r)") }
        XCTAssertEqual(payload, [0x76, 0x19, 0xFF, 0xE9, 0x55, 0x21, 0x99, 0x8C], "un-escaped")
        XCTAssertTrue(sm.isPending)
        XCTAssertEqual(sm.pending?.generation, generation)
        XCTAssertEqual(sm.pending?.source, source)
        XCTAssertEqual(sm.pending?.sourceOpen, true)
        XCTAssertNil(sm.pending?.destination)
        XCTAssertEqual(sm.pending?.startedAt, 5)
    }

    func testSecondBeginWhilePendingIsNotNow() {
        var sm = SM()
        _ = begun(&sm)
        XCTAssertTrue(isNotNow(sm.begin(sequence: [1, 2, 3, 4], from: source, currentVM: source, secret: [9, 9, 9, 9], now: 2_000)))
        XCTAssertTrue(isNotNow(sm.begin(sequence: seq, from: source, currentVM: source, secret: secret, now: 2_000)))
        // The first migration is untouched.
        XCTAssertEqual(sm.pending?.sequence, seq)
        XCTAssertEqual(sm.pending?.secret, secret)
        XCTAssertTrue(sm.matches(cookie: cookie))
    }

    func testBeginFromAConnectionThatIsNotTheCurrentVMIsNotNow() {
        var sm = SM()
        XCTAssertTrue(isNotNow(sm.begin(sequence: seq, from: 11, currentVM: source, secret: secret, now: 0)))
        XCTAssertTrue(isNotNow(sm.begin(sequence: seq, from: source, currentVM: nil, secret: secret, now: 0)))
        XCTAssertFalse(sm.isPending)
    }

    func testPeerWithTheRightCookieIsAcceptedWithTheSequenceOnly() {
        var sm = SM()
        _ = begun(&sm)
        XCTAssertTrue(sm.matches(cookie: cookie))
        XCTAssertEqual(sm.peer(cookie: cookie, from: destination), .accepted(sequence: seq))
        XCTAssertEqual(sm.pending?.destination, destination)
        // The same destination repeating its PEER is fine; another one is not.
        XCTAssertEqual(sm.peer(cookie: cookie, from: destination), .accepted(sequence: seq))
        XCTAssertTrue(isRejected(sm.peer(cookie: cookie, from: 30)))
        XCTAssertEqual(sm.pending?.destination, destination)
    }

    func testPeerWithAWrongCookieIsRejected() {
        var sm = SM()
        XCTAssertTrue(isRejected(sm.peer(cookie: cookie, from: destination)), "nothing pending")
        XCTAssertFalse(sm.matches(cookie: cookie))
        _ = begun(&sm)
        for wrong in [seq, seq + [0x3C, 0xE6, 0x4D, 0xAC], seq + secret + [0], [UInt8](), secret + seq] {
            XCTAssertFalse(sm.matches(cookie: wrong))
            XCTAssertTrue(isRejected(sm.peer(cookie: wrong, from: destination)), Hex.string(wrong))
        }
        XCTAssertNil(sm.pending?.destination)
    }

    func testReplayedCookieAfterCompleteIsRejected() {
        var sm = SM()
        _ = begun(&sm)
        _ = sm.peer(cookie: cookie, from: destination)
        guard case .switched = sm.complete(sequence: seq, from: destination, now: 2_000) else { return XCTFail() }
        XCTAssertTrue(isRejected(sm.peer(cookie: cookie, from: 30)))
        XCTAssertTrue(isRejected(sm.complete(sequence: seq, from: destination, now: 3_000)))
    }

    func testCompleteWithoutPeerIsRejected() {
        var sm = SM()
        XCTAssertTrue(isRejected(sm.complete(sequence: seq, from: destination, now: 0)), "nothing pending")
        _ = begun(&sm)
        XCTAssertTrue(isRejected(sm.complete(sequence: seq, from: destination, now: 2_000)))
        XCTAssertTrue(isRejected(sm.complete(sequence: seq, from: source, now: 2_000)))
        XCTAssertTrue(sm.isPending, "a refused COMPLETE leaves the migration pending")
    }

    func testCompleteFromAnotherConnectionOrWithAnotherSequenceIsRejected() {
        var sm = SM()
        _ = begun(&sm)
        _ = sm.peer(cookie: cookie, from: destination)
        XCTAssertTrue(isRejected(sm.complete(sequence: seq, from: 30, now: 2_000)))
        XCTAssertTrue(isRejected(sm.complete(sequence: [0x44, 0xDA, 0x87, 0xF2], from: destination, now: 2_000)))
        XCTAssertTrue(isRejected(sm.complete(sequence: cookie, from: destination, now: 2_000)))
        XCTAssertTrue(sm.isPending)
    }

    func testCompleteFromThePeeredDestinationSwitchesAndDeliversHeldInput() {
        var sm = SM()
        _ = begun(&sm, now: 1_000)
        XCTAssertEqual(sm.clientInput([0x61]), .held)
        _ = sm.peer(cookie: cookie, from: destination)
        XCTAssertEqual(sm.clientInput([0x62, 0x00, 0xFF]), .held)
        XCTAssertEqual(sm.clientInput([]), .held)
        XCTAssertEqual(sm.clientInput([0x63]), .held)
        let r = sm.complete(sequence: seq, from: destination, now: 3_500)
        XCTAssertEqual(r, .switched(SM.Handoff(resumeOn: destination, held: [0x61, 0x62, 0x00, 0xFF, 0x63], heldDropped: 0,
                                               close: source, durationNanos: 2_500)))
        XCTAssertFalse(sm.isPending)
        XCTAssertEqual(sm.clientInput([0x64]), .forward)
    }

    func testAbortResumesOnTheSourceAndClosesThePeeredDestination() {
        var sm = SM()
        _ = begun(&sm, now: 100)
        XCTAssertEqual(sm.clientInput([1, 2]), .held)
        _ = sm.peer(cookie: cookie, from: destination)
        XCTAssertEqual(sm.clientInput([3]), .held)
        XCTAssertTrue(isIgnored(sm.abort(from: destination, now: 200)), "ABORT is only valid on the source")
        XCTAssertEqual(sm.abort(from: source, now: 1_112),
                       .resumed(SM.Handoff(resumeOn: source, held: [1, 2, 3], heldDropped: 0, close: destination, durationNanos: 1_012)))
        XCTAssertFalse(sm.isPending)
        XCTAssertTrue(isIgnored(sm.abort(from: source, now: 1_200)), "nothing pending any more")
    }

    func testAbortWithoutDestinationClosesNothing() {
        var sm = SM()
        _ = begun(&sm, now: 0)
        guard case .resumed(let h) = sm.abort(from: source, now: 10) else { return XCTFail() }
        XCTAssertEqual(h.resumeOn, source)
        XCTAssertNil(h.close)
        XCTAssertEqual(h.held, [])
    }

    func testClientInputIsForwardedWhenNothingIsPending() {
        var sm = SM()
        XCTAssertEqual(sm.clientInput([1, 2, 3]), .forward)
    }

    func testClientInputBeyondTheHoldLimitIsDropped() {
        var sm = SM(maxHeldBytes: 8)
        _ = begun(&sm, now: 0)
        XCTAssertEqual(sm.clientInput([1, 2, 3, 4, 5]), .held)
        XCTAssertEqual(sm.clientInput([6, 7, 8]), .held, "exactly full")
        XCTAssertEqual(sm.clientInput([9]), .dropped(1))
        XCTAssertEqual(sm.clientInput([10, 11]), .dropped(2))
        var sm2 = SM(maxHeldBytes: 8)
        _ = begun(&sm2, now: 0)
        XCTAssertEqual(sm2.clientInput([1, 2, 3, 4, 5, 6]), .held)
        XCTAssertEqual(sm2.clientInput([7, 8, 9, 10]), .dropped(2), "the part that fits is kept")
        _ = sm2.peer(cookie: cookie, from: destination)
        guard case .switched(let h) = sm2.complete(sequence: seq, from: destination, now: 1) else { return XCTFail() }
        XCTAssertEqual(h.held, [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(h.heldDropped, 2)
        guard case .switched(let full) = {
            var s = sm
            _ = s.peer(cookie: cookie, from: destination)
            return s.complete(sequence: seq, from: destination, now: 1)
        }() else { return XCTFail() }
        XCTAssertEqual(full.held, [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(full.heldDropped, 3)
    }

    func testDefaultHoldLimit() {
        XCTAssertEqual(SM().maxHeldBytes, 256 * 1024)
    }

    func testSourceCloseKeepsItPendingAndTheDestinationCanStillComplete() {
        var sm = SM()
        _ = begun(&sm, now: 0)
        _ = sm.peer(cookie: cookie, from: destination)
        XCTAssertEqual(sm.clientInput([0x41]), .held)
        sm.connectionClosed(source)
        XCTAssertTrue(sm.isPending)
        XCTAssertEqual(sm.pending?.sourceOpen, false)
        XCTAssertEqual(sm.complete(sequence: seq, from: destination, now: 7),
                       .switched(SM.Handoff(resumeOn: destination, held: [0x41], heldDropped: 0, close: nil, durationNanos: 7)))
    }

    func testSourceCloseBeforePeerThenPeerAndComplete() {
        var sm = SM()
        _ = begun(&sm, now: 0)
        sm.connectionClosed(source)
        XCTAssertEqual(sm.peer(cookie: cookie, from: destination), .accepted(sequence: seq))
        guard case .switched(let h) = sm.complete(sequence: seq, from: destination, now: 1) else { return XCTFail() }
        XCTAssertNil(h.close)
        XCTAssertEqual(h.resumeOn, destination)
    }

    func testDestinationCloseFreesTheSlotForAnotherPeer() {
        var sm = SM()
        _ = begun(&sm, now: 0)
        _ = sm.peer(cookie: cookie, from: destination)
        sm.connectionClosed(destination)
        XCTAssertNil(sm.pending?.destination)
        XCTAssertTrue(isRejected(sm.complete(sequence: seq, from: destination, now: 1)))
        XCTAssertEqual(sm.peer(cookie: cookie, from: 30), .accepted(sequence: seq))
        sm.connectionClosed(99) // unrelated
        XCTAssertEqual(sm.pending?.destination, 30)
        XCTAssertEqual(sm.pending?.sourceOpen, true)
    }

    func testExpireResumesOnTheSourceIfOpen() {
        var sm = SM()
        let generation = begun(&sm, now: 1_000)
        XCTAssertEqual(sm.clientInput([7]), .held)
        _ = sm.peer(cookie: cookie, from: destination)
        XCTAssertEqual(sm.expire(generation: generation, now: 6_000),
                       SM.Handoff(resumeOn: source, held: [7], heldDropped: 0, close: destination, durationNanos: 5_000))
        XCTAssertFalse(sm.isPending)
        XCTAssertNil(sm.expire(generation: generation, now: 7_000), "already expired")
    }

    func testExpireWithTheSourceClosedResumesNowhere() {
        var sm = SM()
        let generation = begun(&sm, now: 0)
        sm.connectionClosed(source)
        let h = sm.expire(generation: generation, now: 5)
        XCTAssertEqual(h, SM.Handoff(resumeOn: nil, held: [], heldDropped: 0, close: nil, durationNanos: 5))
    }

    func testAnOldGenerationsExpireDoesNothing() {
        var sm = SM()
        let g1 = begun(&sm, now: 0)
        _ = sm.abort(from: source, now: 1)
        let g2 = begun(&sm, now: 2)
        XCTAssertNotEqual(g1, g2)
        XCTAssertNil(sm.expire(generation: g1, now: 3))
        XCTAssertTrue(sm.isPending)
        XCTAssertEqual(sm.pending?.generation, g2)
        XCTAssertNotNil(sm.expire(generation: g2, now: 4))
    }

    func testANewBeginSucceedsAfterCompleteAbortOrExpire() {
        var sm = SM()
        var generations: Set<Int> = []
        // complete
        generations.insert(begun(&sm))
        _ = sm.peer(cookie: cookie, from: destination)
        guard case .switched = sm.complete(sequence: seq, from: destination, now: 2_000) else { return XCTFail() }
        // The destination is now the VM's connection.
        guard case .goahead(_, let g2) = sm.begin(sequence: [5, 6, 7, 8], from: destination, currentVM: destination,
                                                 secret: [1, 1, 1, 1], now: 3_000) else { return XCTFail() }
        generations.insert(g2)
        // abort
        guard case .resumed = sm.abort(from: destination, now: 3_100) else { return XCTFail() }
        guard case .goahead(_, let g3) = sm.begin(sequence: [9, 9, 9, 9], from: destination, currentVM: destination,
                                                 secret: [2, 2, 2, 2], now: 3_200) else { return XCTFail() }
        generations.insert(g3)
        // expire
        XCTAssertNotNil(sm.expire(generation: g3, now: 9_000))
        guard case .goahead(_, let g4) = sm.begin(sequence: [9, 9, 9, 9], from: destination, currentVM: destination,
                                                 secret: [3, 3, 3, 3], now: 9_100) else { return XCTFail() }
        generations.insert(g4)
        XCTAssertEqual(generations.count, 4, "every migration gets a fresh generation")
        // reset
        XCTAssertEqual(sm.reset(now: 9_200), SM.Handoff(resumeOn: nil, held: [], heldDropped: 0, close: nil, durationNanos: 100))
        XCTAssertNil(sm.reset(now: 9_300))
        XCTAssertFalse(sm.isPending)
    }

    func testResetClosesAPeeredDestinationAndReturnsHeldInput() {
        var sm = SM()
        _ = begun(&sm, now: 0)
        _ = sm.peer(cookie: cookie, from: destination)
        _ = sm.clientInput([0x0D])
        XCTAssertEqual(sm.reset(now: 10), SM.Handoff(resumeOn: nil, held: [0x0D], heldDropped: 0, close: destination, durationNanos: 10))
    }

    func testDurationDoesNotTrapOnClockGoingBackwards() {
        var sm = SM()
        _ = begun(&sm, now: 10)
        guard case .resumed(let h) = sm.abort(from: source, now: 5) else { return XCTFail() }
        XCTAssertEqual(h.durationNanos, UInt64(5) &- 10)
    }

    func testConstantTimeEqual() {
        XCTAssertTrue(constantTimeEqual([], []))
        XCTAssertTrue(constantTimeEqual([1, 2, 0xFF], [1, 2, 0xFF]))
        XCTAssertFalse(constantTimeEqual([1, 2, 3], [1, 2, 4]))
        XCTAssertFalse(constantTimeEqual([0x80], [0x00]))
        XCTAssertFalse(constantTimeEqual([1, 2, 3], [1, 2]))
        XCTAssertFalse(constantTimeEqual([], [0]))
        var rng = SplitMix64(seed: 99)
        for _ in 0..<200 {
            let a = rng.bytes(Int.random(in: 0...16, using: &rng))
            var b = a
            if !b.isEmpty, Bool.random(using: &rng) { b[Int.random(in: 0..<b.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng) }
            XCTAssertEqual(constantTimeEqual(a, b), a == b)
        }
    }
}
