import XCTest
@testable import VSPCCore

/// Replays the VM side of the four TCP streams of the public ESXi capture (fixtures extracted from
/// /work/shared/reference/pcap-streams.txt, section B) through VMLinkStateMachine.
final class VMLinkCaptureTests: XCTestCase {
    static let uuid = "0123456789abcdeffedcba9800000000"
    static let identified = VMLinkAction.identified(uuid: uuid, name: "vm-00000", label: "")

    static let opening = Hex.bytes("FF FB 00 FF FB 03 FF FB 01 FF FD 00 FF FD 03 FF FD E8")
    static let dontAuth = Hex.bytes("FF FE 25")
    static let dontComPort = Hex.bytes("FF FE 2C")
    static let knownSuboptions2 = Hex.bytes("FF FA E8 01 00 01 02 03 28 29 2B 2C 2D 2E 30 46 47 49 50 51 52 53 FF F0")
    static let getIdentifiers = Hex.bytes("FF FA E8 51 FF F0 FF FA E8 53 FF F0")
    static let willProxy = Hex.bytes("FF FA E8 47 FF F0")

    static func bytes(_ range: ClosedRange<UInt8>) -> [UInt8] { Array(range) }

    /// The expected (log-free, vmData-merged) actions for the VM->server bytes of each stream.
    static let expected: [Int: [VMLinkAction]] = [
        0: [
            .send(dontAuth), .send(knownSuboptions2), .send(getIdentifiers), .send(willProxy),
            identified, .send(dontComPort),
            .vmData(bytes(0x20...0x38)),
            .vmotionBegin(sequence: [0x44, 0xDA, 0x87, 0xF1]),
        ],
        1: [
            .send(dontAuth), .send(knownSuboptions2), .send(getIdentifiers),
            .vmotionPeer(cookie: [0x44, 0xDA, 0x87, 0xF1, 0x3C, 0xE6, 0x4D, 0xAB]),
            .send(dontComPort), // a destination (PEER, no DO-PROXY) is never identified as a fresh power-on
            .vmotionComplete(sequence: [0x44, 0xDA, 0x87, 0xF1]),
            .vmData(bytes(0x39...0x4D)),
            .vmotionBegin(sequence: [0x98, 0xD9, 0x8D, 0xB4]),
        ],
        2: [
            .send(dontAuth), .send(knownSuboptions2), .send(getIdentifiers),
            .vmotionPeer(cookie: [0x98, 0xD9, 0x8D, 0xB4, 0x64, 0xB4, 0x07, 0xDA]),
            .send(dontComPort), // a destination (PEER, no DO-PROXY) is never identified as a fresh power-on
            .vmotionComplete(sequence: [0x98, 0xD9, 0x8D, 0xB4]),
            .vmData(bytes(0x4E...0x65)),
            .vmotionBegin(sequence: [0xCD, 0x52, 0x67, 0x55]),
            .vmData(bytes(0x66...0x7B)),
            .vmotionBegin(sequence: [0x61, 0xED, 0x26, 0xA2]),
            .vmotionAbort,
            .vmData(bytes(0x7C...0x7E) + bytes(0x20...0x32)),
            .vmotionBegin(sequence: [0x76, 0x19, 0xFF, 0xE9]),
        ],
        3: [
            .send(dontAuth), .send(knownSuboptions2), .send(getIdentifiers),
            .vmotionPeer(cookie: [0x76, 0x19, 0xFF, 0xE9, 0x55, 0x21, 0x99, 0x8C]),
            .send(dontComPort), // a destination (PEER, no DO-PROXY) is never identified as a fresh power-on
            .vmotionComplete(sequence: [0x76, 0x19, 0xFF, 0xE9]),
        ],
    ]

    private func replay(_ chunks: [[UInt8]]) -> (machine: VMLinkStateMachine, actions: [VMLinkAction]) {
        var machine = VMLinkStateMachine()
        var actions: [VMLinkAction] = []
        for chunk in chunks { actions += machine.received(chunk) }
        return (machine, actions)
    }

    func testFixturesLoadFromTheBundle() throws {
        let sizes = [0: (168, 80), 1: (174, 84), 2: (248, 109), 3: (145, 71)]
        for (n, (vm, server)) in sizes {
            XCTAssertEqual(try Fixture.bytes("stream\(n)-vm.hex").count, vm, "stream \(n) VM->server")
            XCTAssertEqual(try Fixture.bytes("stream\(n)-server.hex").count, server, "stream \(n) server->VM")
        }
        XCTAssertEqual(try Fixture.chunks("stream0-vm.hex").first, [0xFF, 0xFB, 0x25])
        XCTAssertNotNil(Bundle.module.url(forResource: "Fixtures/stream0-vm.hex", withExtension: nil))
        // The header line names the source of the vectors.
        let text = try String(contentsOf: try Fixture.url("stream0-vm.hex"), encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("# pcap-streams.txt section B"))
    }

    func testStartSendsExactlyTheOpening() throws {
        let machine = VMLinkStateMachine()
        XCTAssertEqual(machine.start(), [.send(Self.opening)])
        XCTAssertEqual(VMLinkStateMachine.opening, Self.opening)
        // ... which is also the first 18 bytes the capture's server sent on every stream.
        for n in 0...3 {
            XCTAssertEqual(Array(try Fixture.bytes("stream\(n)-server.hex").prefix(18)), Self.opening, "stream \(n)")
        }
    }

    func testStream0AsInTheDumpLines() throws {
        let (machine, actions) = replay(try Fixture.chunks("stream0-vm.hex"))
        XCTAssertEqual(normalized(actions), Self.expected[0])
        XCTAssertEqual(actions.vmDataBytes, Self.bytes(0x20...0x38))
        XCTAssertTrue(machine.isIdentified)
        XCTAssertTrue(machine.hasExtension)
        XCTAssertEqual(machine.vmUUID, Self.uuid)
        XCTAssertEqual(machine.vmName, "vm-00000")
        XCTAssertEqual(machine.serviceLabel, "")
    }

    func testStream0PerMessageAnswers() throws {
        var machine = VMLinkStateMachine()
        XCTAssertEqual(machine.received(Hex.bytes("FF FB 25")).sentBytes, Self.dontAuth)
        XCTAssertEqual(machine.received(Hex.bytes("FF FD 00 FF FD 03 FF FD 01 FF FB 00 FF FB 03 FF FB E8")).withoutLogs, [])
        XCTAssertTrue(machine.hasExtension)
        let k1 = machine.received(Hex.bytes("ff fa e8 00 00 01 02 03 28 29 2b 2c 2d 2e 30 46 47 49 50 51 54 55 56 57 52 53 ff f0"))
        XCTAssertEqual(k1.sentBytes, Self.knownSuboptions2 + Self.getIdentifiers)
        XCTAssertEqual(machine.received(Hex.bytes("ff fa e8 46 53 76 53 50 43 2e 70 79 ff f0")).sentBytes, Self.willProxy)
        let uuid = machine.received(Hex.bytes("FF FA E8 50") + Array("01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00".utf8)
            + Hex.bytes("FF F0"))
        XCTAssertEqual(uuid.withoutLogs, [])
        XCTAssertEqual(machine.received(Hex.bytes("ff fa e8 52 76 6d 2d 30 30 30 30 30 ff f0")).withoutLogs, [Self.identified])
        XCTAssertEqual(machine.received(Hex.bytes("ff fb 2c")).withoutLogs, [.send(Self.dontComPort)])
        XCTAssertEqual(machine.received([0x20]).withoutLogs, [.vmData([0x20])])
        XCTAssertEqual(machine.received(Hex.bytes("ff fa e8 28 44 da 87 f1 ff f0")).withoutLogs,
                       [.vmotionBegin(sequence: [0x44, 0xDA, 0x87, 0xF1])])
    }

    func testAllStreamsAsInTheDumpLines() throws {
        for n in 0...3 {
            let (machine, actions) = replay(try Fixture.chunks("stream\(n)-vm.hex"))
            XCTAssertEqual(normalized(actions), Self.expected[n], "stream \(n)")
            // Only stream 0 (DO-PROXY) is a fresh power-on; 1-3 are vMotion destinations (PEER).
            XCTAssertEqual(machine.isIdentified, n == 0, "stream \(n)")
            XCTAssertFalse(actions.contains { if case .reject = $0 { return true }; if case .close = $0 { return true }; return false })
        }
    }

    func testAllStreamsOneByteAtATime() throws {
        for n in 0...3 {
            let bytes = try Fixture.bytes("stream\(n)-vm.hex")
            let (_, actions) = replay(bytes.map { [$0] })
            XCTAssertEqual(normalized(actions), Self.expected[n], "stream \(n)")
        }
    }

    func testAllStreamsInOneRead() throws {
        for n in 0...3 {
            let (_, actions) = replay([try Fixture.bytes("stream\(n)-vm.hex")])
            XCTAssertEqual(normalized(actions), Self.expected[n], "stream \(n)")
        }
    }

    func testAllStreamsSplitAtEveryOffset() throws {
        for n in 0...3 {
            let bytes = try Fixture.bytes("stream\(n)-vm.hex")
            for k in 0...bytes.count {
                let (_, actions) = replay([Array(bytes[..<k]), Array(bytes[k...])])
                XCTAssertEqual(normalized(actions), Self.expected[n], "stream \(n) split at \(k)")
            }
        }
    }

    func testStream2BeginWithDoubledIACIsUnescaped() {
        var machine = VMLinkStateMachine()
        XCTAssertEqual(machine.received(Hex.bytes("FF FA E8 28 76 19 FF FF E9 FF F0")).withoutLogs,
                       [.vmotionBegin(sequence: [0x76, 0x19, 0xFF, 0xE9])])
    }

    func testStream2AbortHasNoPayload() {
        var machine = VMLinkStateMachine()
        XCTAssertEqual(machine.received(Hex.bytes("FF FA E8 30 FF F0")).withoutLogs, [.vmotionAbort])
    }

    /// What the state machine sends must be, message by message, what the capture's server sent, except the
    /// vMotion answers (GOAHEAD 0x29, NOTNOW 0x2B, PEER-OK 0x2D) that the concentrator makes, not this machine.
    func testServerBytesMatchTheCaptureMessageByMessage() throws {
        let vmotionAnswers: Set<UInt8> = [0x29, 0x2B, 0x2D]
        for n in 0...3 {
            var machine = VMLinkStateMachine()
            var produced = machine.start().sentBytes
            for chunk in try Fixture.chunks("stream\(n)-vm.hex") { produced += machine.received(chunk).sentBytes }
            let captured = wireMessages(try Fixture.bytes("stream\(n)-server.hex")).filter {
                !($0.count > 3 && $0[0] == 0xFF && $0[1] == 0xFA && $0[2] == 0xE8 && vmotionAnswers.contains($0[3]))
            }
            let ours = wireMessages(produced)
            XCTAssertEqual(ours.map(Hex.string), captured.map(Hex.string), "stream \(n)")
            // The per-direction order is exact in the capture, and the machine answers in the VM's order.
            // 6 opening negotiations, DONT 25, K-2, 2 GETs, DONT 2C, and WILL-PROXY on the power-on stream 0.
            XCTAssertEqual(ours.count, n == 0 ? 12 : 11, "stream \(n)")
        }
    }
}

/// The capture's vMotion answers, rebuilt from VMotionStateMachine results and VMwareCommand.message.
final class VMotionCaptureTests: XCTestCase {
    private func vmwareMessages(_ name: String, command: UInt8) throws -> [[UInt8]] {
        wireMessages(try Fixture.bytes(name)).filter { $0.count > 3 && Array($0.prefix(4)) == [0xFF, 0xFA, 0xE8, command] }
    }

    func testReplayOfTheThreeHandoffs() throws {
        var links = (0...3).map { _ in VMLinkStateMachine() }
        var chunks = try (0...3).map { try Fixture.chunks("stream\($0)-vm.hex") }
        var vmotion = VMotionStateMachine()
        var current: ConnectionID? = 0
        var now: UInt64 = 0

        // Feeds stream `n` until (and including) the chunk whose actions satisfy `stop`; returns all actions.
        func feed(_ n: Int, until stop: (VMLinkAction) -> Bool = { _ in false }) -> [VMLinkAction] {
            var out: [VMLinkAction] = []
            while !chunks[n].isEmpty {
                let acts = links[n].received(chunks[n].removeFirst())
                out += acts
                if acts.contains(where: stop) { break }
            }
            return out
        }
        func isBegin(_ a: VMLinkAction) -> Bool { if case .vmotionBegin = a { return true }; return false }
        func isPeer(_ a: VMLinkAction) -> Bool { if case .vmotionPeer = a { return true }; return false }
        func isComplete(_ a: VMLinkAction) -> Bool { if case .vmotionComplete = a { return true }; return false }
        func isAbort(_ a: VMLinkAction) -> Bool { if case .vmotionAbort = a { return true }; return false }
        func payload(_ acts: [VMLinkAction]) -> [UInt8]? {
            for a in acts {
                switch a {
                case .vmotionBegin(let s), .vmotionPeer(let s), .vmotionComplete(let s): return s
                default: continue
                }
            }
            return nil
        }

        let secrets: [[UInt8]] = [[0x3C, 0xE6, 0x4D, 0xAB], [0x64, 0xB4, 0x07, 0xDA], [0xAE, 0xEC, 0x48, 0x3F], [0x55, 0x21, 0x99, 0x8C]]
        let goaheads = try (0...2).flatMap { try vmwareMessages("stream\($0)-server.hex", command: 0x29) }
        XCTAssertEqual(goaheads.count, 4)
        var consoleOutput: [UInt8] = []

        // Handoff #1: stream 0 -> stream 1; the source closes at the instant of COMPLETE (after it here).
        // Handoff #2: stream 1 -> stream 2; the source closes just before COMPLETE.
        for (source, destination, secretIndex, sourceClosesFirst) in [(0, 1, 0, false), (1, 2, 1, true)] {
            let before = feed(source, until: isBegin)
            consoleOutput += before.vmDataBytes
            let seq = try XCTUnwrap(payload(before.filter(isBegin)))
            now += 1_000
            guard case .goahead(let goahead, _) = vmotion.begin(sequence: seq, from: source, currentVM: current,
                                                                secret: secrets[secretIndex], now: now) else {
                return XCTFail("BEGIN on stream \(source) refused")
            }
            XCTAssertEqual(VMwareCommand.message(VMwareCommand.vmotionGoahead, goahead), goaheads[secretIndex])
            XCTAssertEqual(vmotion.clientInput([0x71]), .held)

            let peerActs = feed(destination, until: isPeer)
            consoleOutput += peerActs.vmDataBytes
            let cookie = try XCTUnwrap(payload(peerActs.filter(isPeer)))
            XCTAssertTrue(vmotion.matches(cookie: cookie))
            XCTAssertEqual(vmotion.peer(cookie: cookie, from: destination), .accepted(sequence: seq))
            let peerOK = VMwareCommand.message(VMwareCommand.vmotionPeerOK, seq)
            XCTAssertEqual([peerOK], try vmwareMessages("stream\(destination)-server.hex", command: 0x2D))

            if sourceClosesFirst { vmotion.connectionClosed(source) }
            let completeActs = feed(destination, until: isComplete)
            consoleOutput += completeActs.vmDataBytes
            // The destination answers the uuid and name requests but, without DO-PROXY, is not a new console.
            XCTAssertFalse(completeActs.contains(Self.identifiedAction))
            now += 1_000
            let result = vmotion.complete(sequence: try XCTUnwrap(payload(completeActs.filter(isComplete))), from: destination, now: now)
            XCTAssertEqual(result, .switched(.init(resumeOn: destination, held: [0x71], heldDropped: 0,
                                                   close: sourceClosesFirst ? nil : source, durationNanos: 1_000)))
            current = destination
        }

        // Stream 2: a BEGIN the capture's server refused with NOTNOW (sequence only).
        let refusedActs = feed(2, until: isBegin)
        consoleOutput += refusedActs.vmDataBytes
        let refusedSeq = try XCTUnwrap(payload(refusedActs.filter(isBegin)))
        XCTAssertEqual([VMwareCommand.message(VMwareCommand.vmotionNotNow, refusedSeq)],
                       try vmwareMessages("stream2-server.hex", command: 0x2B))
        // Our machine refuses a BEGIN when one is pending; make one pending from a stale connection to check.
        guard case .notNow = vmotion.begin(sequence: refusedSeq, from: 1, currentVM: current, secret: [1, 2, 3, 4], now: now) else {
            return XCTFail("BEGIN from a connection that is not the VM's current one must get NOTNOW")
        }
        XCTAssertFalse(vmotion.isPending)

        // Stream 2: BEGIN, GOAHEAD, then ABORT.
        let failedActs = feed(2, until: isBegin)
        consoleOutput += failedActs.vmDataBytes
        let failedSeq = try XCTUnwrap(payload(failedActs.filter(isBegin)))
        guard case .goahead(let failedGoahead, _) = vmotion.begin(sequence: failedSeq, from: 2, currentVM: current,
                                                                   secret: secrets[2], now: now) else { return XCTFail() }
        XCTAssertEqual(VMwareCommand.message(VMwareCommand.vmotionGoahead, failedGoahead), goaheads[2])
        let abortActs = feed(2, until: isAbort)
        consoleOutput += abortActs.vmDataBytes
        XCTAssertTrue(abortActs.contains(.vmotionAbort))
        guard case .resumed(let resumed) = vmotion.abort(from: 2, now: now) else { return XCTFail() }
        XCTAssertEqual(resumed.resumeOn, 2)
        XCTAssertNil(resumed.close)

        // Handoff #3: stream 2 -> stream 3, with 0xFF in the sequence.
        let lastActs = feed(2, until: isBegin)
        consoleOutput += lastActs.vmDataBytes
        let lastSeq = try XCTUnwrap(payload(lastActs.filter(isBegin)))
        XCTAssertEqual(lastSeq, [0x76, 0x19, 0xFF, 0xE9])
        guard case .goahead(let lastGoahead, _) = vmotion.begin(sequence: lastSeq, from: 2, currentVM: current,
                                                                 secret: secrets[3], now: now) else { return XCTFail() }
        XCTAssertEqual(VMwareCommand.message(VMwareCommand.vmotionGoahead, lastGoahead),
                       Hex.bytes("FF FA E8 29 76 19 FF FF E9 55 21 99 8C FF F0"))
        XCTAssertEqual(VMwareCommand.message(VMwareCommand.vmotionGoahead, lastGoahead), goaheads[3])
        let peer3 = feed(3, until: isPeer)
        XCTAssertEqual(vmotion.peer(cookie: try XCTUnwrap(payload(peer3.filter(isPeer))), from: 3), .accepted(sequence: lastSeq))
        XCTAssertEqual(VMwareCommand.message(VMwareCommand.vmotionPeerOK, lastSeq), Hex.bytes("FF FA E8 2D 76 19 FF FF E9 FF F0"))
        let complete3 = feed(3)
        guard case .switched(let h3) = vmotion.complete(sequence: try XCTUnwrap(payload(complete3.filter(isComplete))), from: 3, now: now)
        else { return XCTFail() }
        XCTAssertEqual(h3.resumeOn, 3)
        XCTAssertEqual(h3.close, 2)

        for n in 0...3 { XCTAssertTrue(chunks[n].isEmpty, "stream \(n) fully replayed") }
        // The counting console bytes: no gap, no repeat across the handoffs (0x20...0x7E then 0x20...0x32).
        XCTAssertEqual(consoleOutput, Array(0x20...0x7E) + Array(0x20...0x32))
    }

    static let identifiedAction = VMLinkAction.identified(uuid: "0123456789abcdeffedcba9800000000", name: "vm-00000", label: "")
}
