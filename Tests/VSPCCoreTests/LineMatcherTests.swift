import Foundation
import VSPCCore
import XCTest

final class LineMatcherTests: XCTestCase {
    private func find(_ pattern: String, _ text: [UInt8], ignoreCase: Bool = false, fixed: Bool = false,
                      file: StaticString = #filePath, line: UInt = #line) -> Range<Int>? {
        do {
            let matcher = try LineMatcher(pattern: pattern, ignoreCase: ignoreCase, fixed: fixed)
            return text.withUnsafeBytes { matcher.firstMatch(in: $0) }
        } catch {
            XCTFail("\(error)", file: file, line: line)
            return nil
        }
    }

    private func find(_ pattern: String, _ text: String, ignoreCase: Bool = false, fixed: Bool = false) -> Range<Int>? {
        find(pattern, Array(text.utf8), ignoreCase: ignoreCase, fixed: fixed)
    }

    func testExtendedRegexFindsTheLeftmostMatch() {
        XCTAssertEqual(find("b+", "aabbbcbb"), 2..<5)
        XCTAssertEqual(find("panic|Oops", "ok\nOops: 0000 panic"), 3..<7)
        XCTAssertEqual(find("(ab){2}", "ababab"), 0..<4)
        XCTAssertNil(find("zz", "abc"))
    }

    func testAnchorsWorkPerLine() {
        XCTAssertEqual(find("^x", "axb\nxy"), 4..<5)
        XCTAssertEqual(find("c$", "abc\nd"), 2..<3)
        XCTAssertEqual(find("d$", "abc\nd"), 4..<5)
        XCTAssertEqual(find("^$", "ab\n\ncd"), 3..<3)
    }

    func testAMatchNeverSpansANewline() {
        XCTAssertNil(find("a.b", "a\nb"))
        XCTAssertNil(find("a[^x]b", "a\nb"))
        // A bracket may name the newline; the match is still searched for within lines only.
        XCTAssertNil(find("a[[:space:]]b", "a\nb"))
        XCTAssertEqual(find("a[[:space:]]b", "a\nb a b"), 4..<7)
        XCTAssertEqual(find("x[[:space:]]*y", "x\ny x  y"), 4..<8)
    }

    func testNulAnd0xFFBytesAreOrdinaryBytes() {
        let bytes: [UInt8] = [0, 0xFF, 0x41, 0, 0x42, 0xFF, 0x43]
        XCTAssertEqual(find("B.C", bytes), 4..<7)
        XCTAssertEqual(find("A[^x]B", bytes), 2..<5)
        XCTAssertEqual(find("B", bytes, fixed: true), 4..<5)
        XCTAssertEqual(find("\u{0}", bytes, fixed: true), 0..<1)
        // Bytes after a NUL are searched: REG_STARTEND, not C strings.
        XCTAssertEqual(find("C", bytes), 6..<7)
    }

    func testIgnoreCase() {
        XCTAssertEqual(find("KERNEL panic", "x: Kernel PANIC - not syncing", ignoreCase: true), 3..<15)
        XCTAssertEqual(find("KERNEL panic", "x: Kernel PANIC - not syncing", ignoreCase: true, fixed: true), 3..<15)
        XCTAssertNil(find("KERNEL panic", "x: Kernel PANIC", fixed: true))
        XCTAssertNil(find("kernel", "KERNEL"))
    }

    func testFixedStringsAreNotRegexes() {
        XCTAssertEqual(find("a.b", "axb a.b", fixed: true), 4..<7)
        XCTAssertEqual(find("(", "f(x)", fixed: true), 1..<2)
        XCTAssertEqual(find("[1]", "systemd[1]:", fixed: true), 7..<10)
    }

    func testFoldedSearchFindsHitsFarAndAtTheEnd() {
        var text = [UInt8](repeating: UInt8(ascii: "a"), count: 200_000)
        text += Array("ZzQ".utf8)
        XCTAssertEqual(find("zzq", text, ignoreCase: true, fixed: true), 200_000..<200_003)
        XCTAssertNil(find("zzqq", text, ignoreCase: true, fixed: true))
        // Hits across the scan's internal windows (256, 512, ... bytes).
        for at in [250, 254, 255, 256, 767, 768, 1790] {
            var t = [UInt8](repeating: UInt8(ascii: "b"), count: 2000)
            t.replaceSubrange(at..<(at + 4), with: Array("WARN".utf8))
            XCTAssertEqual(find("warn", t, ignoreCase: true, fixed: true), at..<(at + 4), "at \(at)")
        }
    }

    func testEmptyPatternsAndBuffers() {
        XCTAssertEqual(find("", "abc"), 0..<0)
        XCTAssertEqual(find("", "abc", fixed: true), 0..<0)
        XCTAssertEqual(find("^$", ""), 0..<0)
        XCTAssertNil(find("a", ""))
        XCTAssertNil(find("a", "", fixed: true))
        let matcher = try? LineMatcher(pattern: "x")
        XCTAssertEqual(matcher?.firstMatch(in: UnsafeRawBufferPointer(start: nil, count: 0)), nil)
    }

    func testMatchesALine() throws {
        let matcher = try LineMatcher(pattern: "error [0-9]+", ignoreCase: true)
        XCTAssertTrue(matcher.matches(Array("disk ERROR 42".utf8)))
        XCTAssertFalse(matcher.matches(Array("disk error x".utf8)))
    }

    func testBadPatternsAreRefusedWithAMessage() {
        XCTAssertThrowsError(try LineMatcher(pattern: "a(b")) { error in
            XCTAssertTrue("\(error)".hasPrefix("bad regular expression: "), "\(error)")
            XCTAssertGreaterThan("\(error)".count, "bad regular expression: ".count)
        }
        XCTAssertThrowsError(try LineMatcher(pattern: "[z-a]"))
        XCTAssertThrowsError(try LineMatcher(pattern: "a\nb")) { error in
            XCTAssertEqual("\(error)", "a pattern cannot contain a newline")
        }
        XCTAssertThrowsError(try LineMatcher(pattern: "a\nb", fixed: true))
        XCTAssertNoThrow(try LineMatcher(pattern: "a(b", fixed: true))
    }

    func testSharedMatcherAcrossThreads() {
        let matcher = try? LineMatcher(pattern: "needle[0-9]")
        let text = Array((String(repeating: "hay ", count: 5000) + "\nneedle7").utf8)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            let hit = text.withUnsafeBytes { matcher?.firstMatch(in: $0) }
            XCTAssertEqual(hit, 20_001..<20_008)
        }
    }
}
