import XCTest
@testable import VSPCCore

/// The bounded backlog of one slow reader (issue 13): skip-ahead doors drop the oldest unsent bytes and get a
/// marker with the count; disconnect doors are told they are over the bound, and nothing is dropped.
final class ReaderBacklogTests: XCTestCase {
    func testUnderTheBoundEverythingComesOutInOrder() {
        var b = ReaderBacklog(limit: 10, policy: .skipAhead)
        XCTAssertEqual(b.append(Array("abc".utf8)), .queued)
        XCTAssertEqual(b.append(Array("defg".utf8)), .queued)
        XCTAssertEqual(b.count, 7)
        XCTAssertEqual(b.take(), Array("abcdefg".utf8))
        XCTAssertNil(b.take())
        XCTAssertTrue(b.isEmpty)
    }

    func testSkipAheadDropsTheOldestAndMarksTheGapOnce() {
        var b = ReaderBacklog(limit: 8, policy: .skipAhead)
        XCTAssertEqual(b.append(Array("12345".utf8)), .queued)
        XCTAssertEqual(b.append(Array("6789".utf8)), .skipped(1))
        XCTAssertEqual(b.append(Array("AB".utf8)), .skipped(2))
        XCTAssertEqual(b.count, 8)
        XCTAssertEqual(b.unreportedSkip, 3)
        XCTAssertEqual(b.take(), Door.skippedMarker(3) + Array("456789AB".utf8))
        XCTAssertEqual(Door.skippedMarker(3), Array("\r\n[vspcd: 3 bytes skipped, you fell behind]\r\n".utf8))
        XCTAssertNil(b.take())
    }

    func testAChunkLargerThanTheBoundKeepsItsNewestBytes() {
        var b = ReaderBacklog(limit: 4, policy: .skipAhead)
        XCTAssertEqual(b.append(Array("xy".utf8)), .queued)
        XCTAssertEqual(b.append(Array("abcdefgh".utf8)), .skipped(6))
        XCTAssertEqual(b.take(), Door.skippedMarker(6) + Array("efgh".utf8))
    }

    func testDisconnectDoorsAreToldTheyAreOverAndLoseNothing() {
        var b = ReaderBacklog(limit: 4, policy: .disconnect)
        XCTAssertEqual(b.append(Array("abc".utf8)), .queued)
        XCTAssertEqual(b.append(Array("de".utf8)), .over)
        XCTAssertEqual(b.take(), Array("abc".utf8))
    }

    func testTakeHandsOutBoundedPieces() {
        var b = ReaderBacklog(limit: 1 << 20, policy: .skipAhead)
        for _ in 0..<100 { _ = b.append([UInt8](repeating: 7, count: 1000)) }
        var total = 0
        while let piece = b.take(max: 4096) {
            XCTAssertLessThanOrEqual(piece.count, 4096)
            total += piece.count
        }
        XCTAssertEqual(total, 100_000)
    }

    func testByteCountsReadLikeAPerson() {
        XCTAssertEqual(ByteCount.text(1), "1 byte")
        XCTAssertEqual(ByteCount.text(999), "999 bytes")
        XCTAssertEqual(ByteCount.text(1_234), "1.2 KB")
        XCTAssertEqual(ByteCount.text(1_250_000), "1.3 MB")
        XCTAssertEqual(ByteCount.text(999_999), "1.0 MB")
    }
}
