import Foundation
import XCTest
@testable import VSPCCore

/// The internal link's frames: `[type u8][length u32 BE][payload <= 64 KiB]`, decoded in any pieces.
final class ClusterLinkCodecTests: XCTestCase {
    func testEncodesEachFrameTypeWithItsHeader() throws {
        XCTAssertEqual(try ClusterLinkCodec.encode(.data([0x41, 0xFF, 0x00])), [3, 0, 0, 0, 3, 0x41, 0xFF, 0x00])
        XCTAssertEqual(try ClusterLinkCodec.encode(.close("not the owner")), [4, 0, 0, 0, 13] + Array("not the owner".utf8))
        let hello = try ClusterLinkCodec.encode(.hello(.init(node: "a", uuid: UUIDs.a, label: "2", sinceEpoch: 7)))
        let json = #"{"label":"2","node":"a","sinceEpoch":7,"uuid":"\#(UUIDs.a)"}"#
        XCTAssertEqual(hello, [1, 0, 0, 0, UInt8(json.utf8.count)] + Array(json.utf8))
        let accept = try ClusterLinkCodec.encode(.accept(.init(node: "b", epoch: 12)))
        XCTAssertEqual(accept, [2, 0, 0, 0, 23] + Array(#"{"epoch":12,"node":"b"}"#.utf8))
        XCTAssertEqual(try ClusterLinkCodec.encode(.data([])), [3, 0, 0, 0, 0])
        XCTAssertEqual(try ClusterLinkCodec.encode(.brk), [5, 0, 0, 0, 0])
        // A BREAK with a payload is a BREAK all the same.
        var decoder = ClusterLinkCodec.Decoder()
        XCTAssertEqual(try decoder.decode([5, 0, 0, 0, 2, 0x41, 0x42]), [.brk])
    }

    func testRoundTripsEveryFrame() throws {
        let frames: [ClusterLinkFrame] = [
            .hello(.init(node: "node-x", uuid: UUIDs.b, label: "", sinceEpoch: nil)),
            .hello(.init(node: "a", uuid: UUIDs.a, label: "com2", sinceEpoch: Int64.max)),
            .accept(.init(node: "b", epoch: 1)),
            .data(Array(0...255)),
            .data([]),
            .close("owner node b is gone"),
            .brk,
        ]
        var decoder = ClusterLinkCodec.Decoder()
        let bytes = try frames.flatMap { try ClusterLinkCodec.encode($0) }
        XCTAssertEqual(try decoder.decode(bytes), frames)
        XCTAssertEqual(decoder.pending, 0)
    }

    func testDecodesFramesSplitAnywhere() throws {
        let frames: [ClusterLinkFrame] = [
            .hello(.init(node: "a", uuid: UUIDs.a, label: "", sinceEpoch: 3)),
            .data(Array("console bytes".utf8)),
            .data([]),
            .close("bye"),
        ]
        let bytes = try frames.flatMap { try ClusterLinkCodec.encode($0) }
        // Every split into two pieces, and byte by byte.
        for cut in 0...bytes.count {
            var decoder = ClusterLinkCodec.Decoder()
            let got = try decoder.decode(Array(bytes[..<cut])) + decoder.decode(Array(bytes[cut...]))
            XCTAssertEqual(got, frames, "cut at \(cut)")
        }
        var decoder = ClusterLinkCodec.Decoder()
        var got: [ClusterLinkFrame] = []
        for byte in bytes { got += try decoder.decode([byte]) }
        XCTAssertEqual(got, frames)
        XCTAssertEqual(decoder.pending, 0)
    }

    func testHoldsOnlyThePartialFrame() throws {
        var decoder = ClusterLinkCodec.Decoder()
        let frame = try ClusterLinkCodec.encode(.data(Array(repeating: 7, count: 100)))
        XCTAssertEqual(try decoder.decode(frame + Array(frame.prefix(10))), [.data(Array(repeating: 7, count: 100))])
        XCTAssertEqual(decoder.pending, 10)
        XCTAssertEqual(try decoder.decode(Array(frame.dropFirst(10))), [.data(Array(repeating: 7, count: 100))])
        XCTAssertEqual(decoder.pending, 0)
    }

    func testMaximalPayloadPassesAndOneMoreIsRefused() throws {
        let largest = Array(repeating: UInt8(0x5A), count: ClusterLinkCodec.maxPayload)
        var decoder = ClusterLinkCodec.Decoder()
        XCTAssertEqual(try decoder.decode(try ClusterLinkCodec.encode(.data(largest))), [.data(largest)])
        XCTAssertThrowsError(try ClusterLinkCodec.encode(.data(largest + [0]))) {
            XCTAssertEqual($0 as? ClusterLinkError, .tooLong(type: 3, length: 65537))
        }
    }

    func testOversizeHeaderFailsAtOnceAndForGood() {
        var decoder = ClusterLinkCodec.Decoder()
        // The header alone (no payload yet) is enough to refuse it.
        XCTAssertThrowsError(try decoder.decode([3, 0, 1, 0, 1])) {
            XCTAssertEqual($0 as? ClusterLinkError, .tooLong(type: 3, length: 65537))
            XCTAssertEqual("\($0)", "frame of type 3 too long: 65537 bytes (at most 65536)")
        }
        XCTAssertThrowsError(try decoder.decode([3, 0, 0, 0, 0])) {
            XCTAssertEqual($0 as? ClusterLinkError, .failed)
        }
        var split = ClusterLinkCodec.Decoder()
        XCTAssertEqual(try split.decode([3, 0xFF]), [])
        XCTAssertThrowsError(try split.decode([0xFF, 0xFF, 0xFF])) {
            XCTAssertEqual($0 as? ClusterLinkError, .tooLong(type: 3, length: Int(UInt32.max)))
        }
        XCTAssertEqual(split.pending, 0)
    }

    func testUnknownTypeFailsOnItsFirstByte() {
        for type: UInt8 in [0, 6, 0xFF] {
            var decoder = ClusterLinkCodec.Decoder()
            XCTAssertThrowsError(try decoder.decode([type])) {
                XCTAssertEqual($0 as? ClusterLinkError, .unknownType(type))
            }
        }
        // After good frames, in the same piece: the good ones are not returned (the link is closed anyway).
        var decoder = ClusterLinkCodec.Decoder()
        XCTAssertThrowsError(try decoder.decode([3, 0, 0, 0, 1, 0x41, 9, 0, 0, 0, 0])) {
            XCTAssertEqual($0 as? ClusterLinkError, .unknownType(9))
            XCTAssertEqual("\($0)", "unknown frame type 9")
        }
    }

    func testBadJSONAndBadTextAreErrors() {
        func decodeOne(_ type: UInt8, _ payload: [UInt8]) -> ClusterLinkError? {
            var decoder = ClusterLinkCodec.Decoder()
            let n = payload.count
            do {
                _ = try decoder.decode([type, 0, 0, UInt8(n >> 8), UInt8(n & 0xFF)] + payload)
                return nil
            } catch {
                return error as? ClusterLinkError
            }
        }
        XCTAssertEqual(decodeOne(1, Array(#"{"node":"a","uuid":"u"}"#.utf8)), .badJSON(type: 1, #"missing "label""#))
        guard case .badJSON(2, _)? = decodeOne(2, Array("not json".utf8)) else { return XCTFail("ACCEPT of garbage") }
        guard case .badJSON(2, _)? = decodeOne(2, Array(#"{"node":"b","epoch":"x"}"#.utf8)) else {
            return XCTFail("ACCEPT with a string epoch")
        }
        XCTAssertEqual(decodeOne(4, [0x61, 0xC3, 0x28]), .badText)
        XCTAssertNil(decodeOne(4, Array("né".utf8)))
        XCTAssertNil(decodeOne(1, Array(#"{"node":"a","uuid":"u","label":"","extra":1}"#.utf8)), "unknown keys are ignored")
    }

    func testDataFramesSplitLongOutput() throws {
        let bytes = (0..<(2 * ClusterLinkCodec.maxPayload + 10)).map { UInt8(truncatingIfNeeded: $0) }
        var decoder = ClusterLinkCodec.Decoder()
        let frames = try decoder.decode(ClusterLinkCodec.dataFrames(bytes))
        XCTAssertEqual(frames.count, 3)
        XCTAssertEqual(frames.flatMap { frame -> [UInt8] in
            if case .data(let d) = frame { return d }
            return []
        }, bytes)
        XCTAssertEqual(ClusterLinkCodec.dataFrames([]), [3, 0, 0, 0, 0])
    }

    func testRandomGarbageNeverTraps() {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<2000 {
            var decoder = ClusterLinkCodec.Decoder()
            let count = Int(rng.next() % 64)
            var bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if !bytes.isEmpty { bytes[0] = UInt8(1 + rng.next() % 4) }
            if bytes.count > 4 { bytes[1] = 0; bytes[2] = 0 }
            _ = try? decoder.decode(bytes)
            XCTAssertLessThanOrEqual(decoder.pending, ClusterLinkCodec.headerLength + ClusterLinkCodec.maxPayload)
        }
    }
}
