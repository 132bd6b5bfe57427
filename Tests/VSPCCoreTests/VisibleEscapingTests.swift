import Foundation
import VSPCCore
import XCTest

final class VisibleEscapingTests: XCTestCase {
    func testPlainTextIsUnchanged() {
        for text in ["web-01", "", "Grüße 日本 🙂", "a\\b \"q\" ~"] {
            XCTAssertEqual(VisibleEscaping.escape(text), text)
        }
    }

    func testC0AndDELBecomeHexEscapes() {
        XCTAssertEqual(VisibleEscaping.escape("evil\nvspcd[1]: forged"), "evil\\x0avspcd[1]: forged")
        XCTAssertEqual(VisibleEscaping.escape("\u{1b}]52;c;aGk=\u{07}"), "\\x1b]52;c;aGk=\\x07")
        XCTAssertEqual(VisibleEscaping.escape("\0\t\r\u{7f}"), "\\x00\\x09\\x0d\\x7f")
        XCTAssertEqual(VisibleEscaping.escape("\u{1f} "), "\\x1f ")
    }

    func testC1AndBidiBecomeUnicodeEscapes() {
        XCTAssertEqual(VisibleEscaping.escape("a\u{9b}31mb"), "a\\u{9b}31mb")
        XCTAssertEqual(VisibleEscaping.escape("\u{80}\u{9f}\u{a0}"), "\\u{80}\\u{9f}\u{a0}")
        XCTAssertEqual(VisibleEscaping.escape("x\u{202e}gpj.exe"), "x\\u{202e}gpj.exe")
        XCTAssertEqual(VisibleEscaping.escape("\u{202a}\u{2066}\u{2069}\u{2029}\u{206a}"), "\\u{202a}\\u{2066}\\u{2069}\u{2029}\u{206a}")
    }

    func testEveryEscapedScalarIsOnTheList() {
        var escaped: [UInt32] = []
        for v in UInt32(0)...0x2100 {
            guard let scalar = Unicode.Scalar(v) else { continue }
            if VisibleEscaping.escape(String(Character(scalar))) != String(Character(scalar)) { escaped.append(v) }
        }
        let expected = Array(0...0x1F) + Array(0x7F...0x9F) + Array(0x202A...0x202E) + Array(0x2066...0x2069)
        XCTAssertEqual(escaped, expected.map(UInt32.init))
    }

    func testBackslashEscapingIsOptIn() {
        XCTAssertEqual(VisibleEscaping.escape("a\\x1b"), "a\\x1b")
        XCTAssertEqual(VisibleEscaping.escape("a\\x1b\u{1b}", escapeBackslash: true), "a\\\\x1b\\x1b")
    }

    func testJSONTextIsOneLineAndDecodesExactly() throws {
        let samples = ["plain", "quote \" and \\ backslash", "new\nline\r\ttab", "\u{1b}[31m\u{9b}\u{202e}\u{7f}\0", "日本 🙂"]
        for text in samples {
            let literal = JSONText.quoted(text)
            XCTAssertFalse(literal.unicodeScalars.contains { VisibleEscaping.needsEscape($0) }, literal)
            let decoded = try JSONDecoder().decode([String].self, from: Data("[\(literal)]".utf8))
            XCTAssertEqual(decoded, [text])
        }
        XCTAssertEqual(JSONText.quoted("a\n\u{1b}\u{202e}\"\\"), "\"a\\n\\u001b\\u202e\\\"\\\\\"")
    }
}
