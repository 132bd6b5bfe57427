import XCTest
@testable import VSPCCore

final class TelnetDecoderTests: XCTestCase {
    private func decodeAll(_ bytes: [UInt8], max: Int = 1024) -> [TelnetEvent] {
        var decoder = TelnetDecoder(maxSubnegotiation: max)
        return decoder.decode(bytes)
    }

    func testPlainDataIsPassedThrough() {
        XCTAssertEqual(decodeAll(Array("hello\r\n".utf8)), [.data(Array("hello\r\n".utf8))])
        XCTAssertEqual(decodeAll([]), [])
    }

    func testNulDC1AndDoubledIACArePreservedInData() {
        let wire: [UInt8] = [0x00, 0x11, 0x0D, 0x00, 0x0D, 0x0A, 0xFF, 0xFF, 0x7F, 0x80, 0xFE, 0x13, 0x00]
        XCTAssertEqual(decodeAll(wire), [.data([0x00, 0x11, 0x0D, 0x00, 0x0D, 0x0A, 0xFF, 0x7F, 0x80, 0xFE, 0x13, 0x00])])
        XCTAssertEqual(decodeAll([0xFF, 0xFF, 0xFF, 0xFF]), [.data([0xFF, 0xFF])])
    }

    func testCommandsInTheMiddleOfData() {
        let wire: [UInt8] = [0x41, 0x42, 0xFF, 0xFB, 0x2C, 0x43, 0xFF, 0xF1, 0x44, 0xFF, 0xFA, 0xE8, 0x52, 0x78, 0xFF, 0xF0, 0x45]
        XCTAssertEqual(decodeAll(wire), [
            .data([0x41, 0x42]),
            .negotiate(.will, 0x2C),
            .data([0x43]),
            .command(0xF1),
            .data([0x44]),
            .subnegotiation(option: 0xE8, payload: [0x52, 0x78]),
            .data([0x45]),
        ])
    }

    func testAllFourVerbs() {
        let wire: [UInt8] = [0xFF, 0xFB, 0x00, 0xFF, 0xFC, 0x01, 0xFF, 0xFD, 0x03, 0xFF, 0xFE, 0xE8]
        XCTAssertEqual(decodeAll(wire), [.negotiate(.will, 0), .negotiate(.wont, 1), .negotiate(.do, 3), .negotiate(.dont, 0xE8)])
    }

    func testNOPAndOtherTwoByteCommands() {
        XCTAssertEqual(decodeAll([0xFF, 0xF1]), [.command(0xF1)])
        // AYT, BRK, GA, and a stray SE outside a subnegotiation are all plain commands.
        XCTAssertEqual(decodeAll([0xFF, 0xF6, 0xFF, 0xF3, 0xFF, 0xF9, 0xFF, 0xF0]),
                       [.command(0xF6), .command(0xF3), .command(0xF9), .command(0xF0)])
    }

    func testSubnegotiationUnescapesDoubledIAC() {
        XCTAssertEqual(decodeAll([0xFF, 0xFA, 0xE8, 0x28, 0x76, 0x19, 0xFF, 0xFF, 0xE9, 0xFF, 0xF0]),
                       [.subnegotiation(option: 0xE8, payload: [0x28, 0x76, 0x19, 0xFF, 0xE9])])
        XCTAssertEqual(decodeAll([0xFF, 0xFA, 0x18, 0xFF, 0xF0]), [.subnegotiation(option: 0x18, payload: [])])
        // SE without IAC is an ordinary payload byte.
        XCTAssertEqual(decodeAll([0xFF, 0xFA, 0xE8, 0xF0, 0x00, 0xFF, 0xF0]),
                       [.subnegotiation(option: 0xE8, payload: [0xF0, 0x00])])
    }

    // MARK: - Splits

    /// A sequence with data, NUL, IAC IAC, WILL, DO, DONT, NOP, and SB...SE with IAC IAC inside.
    static let mixed: [UInt8] = [
        0x61, 0x62,
        0xFF, 0xFB, 0x18,                                   // WILL 24
        0x63, 0x00, 0xFF, 0xFF,                             // "c" NUL IAC-IAC
        0xFF, 0xFD, 0xE8,                                   // DO 232
        0xFF, 0xFA, 0xE8, 0x52, 0x76, 0xFF, 0xFF, 0x6D, 0xFF, 0xF0,  // SB 232 'R' 'v' FF 'm' SE
        0x11, 0x78,
        0xFF, 0xF1,                                         // NOP
        0xFF, 0xFE, 0x01,                                   // DONT 1
        0xFF, 0xFA, 0x18, 0xFF, 0xF0,                       // empty SB 24
        0xFF, 0xFA, 0xE8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF0, // SB 232 FF FF
        0x65, 0x6E, 0x64,
    ]
    static let mixedEvents: [TelnetEvent] = [
        .data([0x61, 0x62]),
        .negotiate(.will, 0x18),
        .data([0x63, 0x00, 0xFF]),
        .negotiate(.do, 0xE8),
        .subnegotiation(option: 0xE8, payload: [0x52, 0x76, 0xFF, 0x6D]),
        .data([0x11, 0x78]),
        .command(0xF1),
        .negotiate(.dont, 0x01),
        .subnegotiation(option: 0x18, payload: []),
        .subnegotiation(option: 0xE8, payload: [0xFF, 0xFF]),
        .data([0x65, 0x6E, 0x64]),
    ]

    func testWholeMixedSequence() {
        XCTAssertEqual(decodeAll(Self.mixed), Self.mixedEvents)
    }

    func testEverySingleSplitPointGivesTheSameEvents() {
        let bytes = Self.mixed
        for k in 0...bytes.count {
            var decoder = TelnetDecoder()
            var events = decoder.decode(bytes[..<k])
            events += decoder.decode(bytes[k...])
            XCTAssertEqual(coalesced(events), Self.mixedEvents, "split at \(k)")
            XCTAssertFalse(decoder.isMidSequence)
        }
    }

    func testEveryPairOfSplitPointsGivesTheSameEvents() {
        let bytes = Self.mixed
        for i in 0...bytes.count {
            for j in i...bytes.count {
                var decoder = TelnetDecoder()
                var events = decoder.decode(bytes[..<i])
                events += decoder.decode(Array(bytes[i..<j]))
                events += decoder.decode(bytes[j...])
                XCTAssertEqual(coalesced(events), Self.mixedEvents, "split at \(i), \(j)")
            }
        }
    }

    func testOneByteAtATime() {
        var decoder = TelnetDecoder()
        var events: [TelnetEvent] = []
        for byte in Self.mixed { events += decoder.decode([byte]) }
        XCTAssertEqual(coalesced(events), Self.mixedEvents)
        // Non-data events come out as soon as their last byte arrives, and never as empty data.
        XCTAssertFalse(events.contains(.data([])))
    }

    func testEmitClosureVariantMatches() {
        var decoder = TelnetDecoder()
        var events: [TelnetEvent] = []
        decoder.decode(Self.mixed) { events.append($0) }
        XCTAssertEqual(events, Self.mixedEvents)
    }

    func testIsMidSequence() {
        var decoder = TelnetDecoder()
        XCTAssertFalse(decoder.isMidSequence)
        for (prefix, mid) in [([0xFF], true), ([0xFB], true), ([0x01], false),
                              ([0xFF, 0xFA], true), ([0xE8], true), ([0x01], true), ([0xFF], true), ([0xF0], false)] as [([UInt8], Bool)] {
            _ = decoder.decode(prefix)
            XCTAssertEqual(decoder.isMidSequence, mid, "after \(Hex.string(prefix))")
        }
    }

    // MARK: - Bounds and malformed input

    func testOversizedSubnegotiationIsReportedAndDecodingContinues() {
        var wire: [UInt8] = [0xFF, 0xFA, 0xE8]
        wire += [UInt8](repeating: 0x41, count: 20)
        wire += [0xFF, 0xFF] // escaped IAC inside the oversized part
        wire += [0xFF, 0xF0]
        wire += [0x6F, 0x6B, 0xFF, 0xFB, 0x01, 0xFF, 0xFA, 0xE8, 0x01, 0x02, 0xFF, 0xF0, 0x21]
        let expected: [TelnetEvent] = [
            .subnegotiationTooLong(option: 0xE8),
            .data([0x6F, 0x6B]),
            .negotiate(.will, 0x01),
            .subnegotiation(option: 0xE8, payload: [0x01, 0x02]),
            .data([0x21]),
        ]
        var decoder = TelnetDecoder(maxSubnegotiation: 8)
        XCTAssertEqual(decoder.decode(wire), expected)
        // Byte by byte too.
        var d2 = TelnetDecoder(maxSubnegotiation: 8)
        var events: [TelnetEvent] = []
        for b in wire { events += d2.decode([b]) }
        XCTAssertEqual(coalesced(events), expected)
    }

    func testSubnegotiationBoundIsInclusive() {
        let eight: [UInt8] = [1, 2, 3, 4, 5, 6, 0xFF, 8]
        var decoder = TelnetDecoder(maxSubnegotiation: 8)
        XCTAssertEqual(decoder.decode(TelnetEncoder.subnegotiation(option: 0xE8, payload: eight)),
                       [.subnegotiation(option: 0xE8, payload: eight)])
        XCTAssertEqual(decoder.decode(TelnetEncoder.subnegotiation(option: 0xE8, payload: eight + [9])),
                       [.subnegotiationTooLong(option: 0xE8)])
        // The next one (after the overflow) is decoded in full again.
        XCTAssertEqual(decoder.decode(TelnetEncoder.subnegotiation(option: 0xE8, payload: [7])),
                       [.subnegotiation(option: 0xE8, payload: [7])])
    }

    func testDefaultBoundIs1024() {
        var decoder = TelnetDecoder()
        let ok = [UInt8](repeating: 0x30, count: 1024)
        XCTAssertEqual(decoder.decode(TelnetEncoder.subnegotiation(option: 0xE8, payload: ok)),
                       [.subnegotiation(option: 0xE8, payload: ok)])
        XCTAssertEqual(decoder.decode(TelnetEncoder.subnegotiation(option: 0xE8, payload: ok + [0x30])),
                       [.subnegotiationTooLong(option: 0xE8)])
    }

    func testIACCommandInsideSBIsMalformedThenTheCommandIsDecoded() {
        XCTAssertEqual(decodeAll([0xFF, 0xFA, 0xE8, 0x01, 0x02, 0xFF, 0xFB, 0x03, 0x78]),
                       [.subnegotiationMalformed(option: 0xE8), .negotiate(.will, 0x03), .data([0x78])])
        XCTAssertEqual(decodeAll([0xFF, 0xFA, 0xE8, 0x01, 0xFF, 0xF1, 0x79]),
                       [.subnegotiationMalformed(option: 0xE8), .command(0xF1), .data([0x79])])
        // A new SB right after a broken one.
        XCTAssertEqual(decodeAll([0xFF, 0xFA, 0x05, 0x01, 0xFF, 0xFA, 0x06, 0x09, 0xFF, 0xF0]),
                       [.subnegotiationMalformed(option: 0x05), .subnegotiation(option: 0x06, payload: [0x09])])
    }

    func testMalformedSubnegotiationSplitAtEveryPoint() {
        let wire: [UInt8] = [0x61, 0xFF, 0xFA, 0xE8, 0x01, 0xFF, 0xFF, 0xFF, 0xFD, 0x2C, 0x62, 0xFF, 0xFA, 0xE8, 0x02, 0xFF, 0xF0]
        let expected: [TelnetEvent] = [.data([0x61]), .subnegotiationMalformed(option: 0xE8), .negotiate(.do, 0x2C),
                                       .data([0x62]), .subnegotiation(option: 0xE8, payload: [0x02])]
        for k in 0...wire.count {
            var decoder = TelnetDecoder()
            let events = decoder.decode(wire[..<k]) + decoder.decode(wire[k...])
            XCTAssertEqual(coalesced(events), expected, "split at \(k)")
        }
    }

    func testRandomGarbageNeverCrashesAndDataIsNeverEmpty() {
        var rng = SplitMix64(seed: 0x7E1E_7E1E)
        var decoder = TelnetDecoder(maxSubnegotiation: 64)
        for _ in 0..<500 {
            let chunk = rng.bytes(Int.random(in: 0...300, using: &rng))
            for event in decoder.decode(chunk) {
                if case .data(let d) = event { XCTAssertFalse(d.isEmpty) }
                if case .subnegotiation(_, let p) = event { XCTAssertLessThanOrEqual(p.count, 64) }
            }
        }
    }
}

final class TelnetEncoderTests: XCTestCase {
    func testEscapedDoublesEveryIAC() {
        XCTAssertEqual(TelnetEncoder.escaped([UInt8]()), [])
        XCTAssertEqual(TelnetEncoder.escaped([0xFF]), [0xFF, 0xFF])
        XCTAssertEqual(TelnetEncoder.escaped([0x01, 0xFF, 0xFF, 0x02, 0xFF]), [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0xFF, 0xFF])
        XCTAssertEqual(TelnetEncoder.escaped([0x00, 0x11, 0xFE]), [0x00, 0x11, 0xFE])
        // Works on slices with non-zero start indices.
        let a: [UInt8] = [0xFF, 0x41, 0xFF, 0x42]
        XCTAssertEqual(TelnetEncoder.escaped(a[1...]), [0x41, 0xFF, 0xFF, 0x42])
        var out: [UInt8] = [0x99]
        TelnetEncoder.appendEscaped([0xFF], to: &out)
        XCTAssertEqual(out, [0x99, 0xFF, 0xFF])
    }

    func testNegotiateAndSubnegotiation() {
        XCTAssertEqual(TelnetEncoder.negotiate(.dont, 0x25), [0xFF, 0xFE, 0x25])
        XCTAssertEqual(TelnetEncoder.negotiate(.will, 0x00), [0xFF, 0xFB, 0x00])
        XCTAssertEqual(TelnetEncoder.negotiate(.wont, 0x01), [0xFF, 0xFC, 0x01])
        XCTAssertEqual(TelnetEncoder.negotiate(.do, 0xE8), [0xFF, 0xFD, 0xE8])
        XCTAssertEqual(TelnetEncoder.subnegotiation(option: 0xE8, payload: [0x29, 0x76, 0x19, 0xFF, 0xE9, 0x55, 0x21, 0x99, 0x8C]),
                       Hex.bytes("FF FA E8 29 76 19 FF FF E9 55 21 99 8C FF F0"))
        XCTAssertEqual(TelnetEncoder.subnegotiation(option: 0xE8, payload: []), [0xFF, 0xFA, 0xE8, 0xFF, 0xF0])
    }

    func testEscapingRoundTripOverRandomData() {
        var rng = SplitMix64(seed: 42)
        for round in 0..<200 {
            // Bias towards 0xFF so runs of IACs are common.
            let count = Int.random(in: 0...2048, using: &rng)
            let data: [UInt8] = (0..<count).map { _ in Bool.random(using: &rng) ? 0xFF : UInt8.random(in: 0...255, using: &rng) }
            let wire = TelnetEncoder.escaped(data)
            XCTAssertEqual(wire.count, data.count + data.filter { $0 == 0xFF }.count)
            var decoder = TelnetDecoder()
            // Feed in random-sized chunks.
            var events: [TelnetEvent] = []
            var i = 0
            while i < wire.count {
                let n = Int.random(in: 1...64, using: &rng)
                events += decoder.decode(wire[i..<min(i + n, wire.count)])
                i += n
            }
            XCTAssertEqual(coalesced(events), data.isEmpty ? [] : [.data(data)], "round \(round)")
            XCTAssertFalse(decoder.isMidSequence)
        }
    }

    func testSubnegotiationRoundTripOverRandomPayloads() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<200 {
            let payload: [UInt8] = (0..<Int.random(in: 0...100, using: &rng)).map { _ in
                Int.random(in: 0..<4, using: &rng) == 0 ? 0xFF : UInt8.random(in: 0...255, using: &rng)
            }
            let option = UInt8.random(in: 0...255, using: &rng)
            var decoder = TelnetDecoder()
            XCTAssertEqual(decoder.decode(TelnetEncoder.subnegotiation(option: option, payload: payload)),
                           [.subnegotiation(option: option, payload: payload)])
        }
    }
}
