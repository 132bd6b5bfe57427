import Foundation
import VSPCCore
import XCTest

final class DisplayTextTests: XCTestCase {
    func testOrdinaryTextIsUnchanged() {
        for text in ["", "web-0", "web-1#com2", "Grüße, 日本語, עברית, emoji 🙂", "a b\u{a0}c", "quote \" and 'single'"] {
            XCTAssertEqual(DisplayText.escape(text), text)
        }
    }

    func testControlsAreEscapedVisibly() {
        XCTAssertEqual(DisplayText.escape("a\u{1b}[31mred"), #"a\x1b[31mred"#)
        XCTAssertEqual(DisplayText.escape("\u{00}\u{07}\u{08}\u{09}\u{0a}\u{0d}\u{1f}"), #"\x00\x07\x08\x09\x0a\x0d\x1f"#)
        XCTAssertEqual(DisplayText.escape("del\u{7f}"), #"del\x7f"#)
        XCTAssertEqual(DisplayText.escape("\u{80}\u{85}\u{9b}\u{9d}\u{9f}"), #"\u{80}\u{85}\u{9b}\u{9d}\u{9f}"#)
        XCTAssertEqual(DisplayText.escape("\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}"),
                       #"\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}"#)
        XCTAssertEqual(DisplayText.escape("\u{2066}\u{2067}\u{2068}\u{2069}"), #"\u{2066}\u{2067}\u{2068}\u{2069}"#)
        // An OSC 52 (clipboard write) sequence, both in 7-bit and in 8-bit (C1) form.
        XCTAssertEqual(DisplayText.escape("x\u{1b}]52;c;aGk=\u{07}y"), #"x\x1b]52;c;aGk=\x07y"#)
        XCTAssertEqual(DisplayText.escape("x\u{9d}52;c;aGk=\u{9c}y"), #"x\u{9d}52;c;aGk=\u{9c}y"#)
        // A "Trojan Source" file name: shown with the override visible.
        XCTAssertEqual(DisplayText.escape("invoice\u{202e}fdp.exe"), #"invoice\u{202e}fdp.exe"#)
    }

    func testNeighboursOfTheEscapedRangesPassThrough() {
        for scalar: UInt32 in [0x20, 0x7E, 0xA0, 0xA1, 0x2029, 0x2029, 0x202F, 0x2065, 0x206A, 0xFEFF, 0xFFFD] {
            let text = String(Unicode.Scalar(scalar)!)
            XCTAssertEqual(DisplayText.escape(text), text, String(scalar, radix: 16))
        }
    }

    func testBackslashIsEscapedSoEscapesAreUnambiguous() {
        XCTAssertEqual(DisplayText.escape(#"a\b"#), #"a\\b"#)
        // A name that spells an escape is not confused with the control it spells.
        XCTAssertEqual(DisplayText.escape(#"\x1b"#), #"\\x1b"#)
        XCTAssertNotEqual(DisplayText.escape(#"\x1b"#), DisplayText.escape("\u{1b}"))
        XCTAssertEqual(DisplayText.escape(#"\u{9b}"#), #"\\u{9b}"#)
    }

    func testEveryBMPScalarComesOutSafeAndReadsBack() {
        for value in UInt32(0)...0xFFFF {
            guard let scalar = Unicode.Scalar(value) else { continue } // surrogates are not scalars
            let text = "a" + String(scalar) + "z"
            let shown = DisplayText.escape(text)
            XCTAssertFalse(shown.unicodeScalars.contains(where: DisplayText.isUnsafe), String(value, radix: 16))
            XCTAssertEqual(unescape(shown), text, String(value, radix: 16))
        }
    }

    func testEscapingIsInjectiveOnMixedText() {
        // Deterministic pseudo-random strings over an alphabet of awkward scalars.
        let alphabet: [Unicode.Scalar] = ["\\", "x", "u", "{", "}", "1", "b", "\u{1b}", "\u{07}", "\u{7f}", "\u{9b}",
                                          "\u{202e}", "\u{2069}", "é", "🙂", "\n"]
        var seed: UInt64 = 0x1234_5678
        var seen: [String: String] = [:]
        for _ in 0..<5000 {
            var text = String.UnicodeScalarView()
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            for i in 0..<Int(seed >> 60) {
                text.append(alphabet[Int((seed >> UInt64(4 * (i % 15))) & 0xF)])
            }
            let original = String(text)
            let shown = DisplayText.escape(original)
            XCTAssertEqual(unescape(shown), original)
            if let other = seen[shown] { XCTAssertEqual(other, original) }
            seen[shown] = original
        }
    }

    func testBytesThatAreNotUTF8AreEscapedByte() {
        XCTAssertEqual(DisplayText.escape(utf8: Array("web-0 é".utf8)), "web-0 é")
        XCTAssertEqual(DisplayText.escape(utf8: [0x61, 0xFF, 0x62]), #"a\xffb"#)
        // A UTF-8-encoded lone surrogate (U+D800) is not UTF-8.
        XCTAssertEqual(DisplayText.escape(utf8: [0xED, 0xA0, 0x80]), #"\xed\xa0\x80"#)
        // Overlong NUL, a truncated sequence at the end, a continuation byte alone.
        XCTAssertEqual(DisplayText.escape(utf8: [0xC0, 0x80]), #"\xc0\x80"#)
        XCTAssertEqual(DisplayText.escape(utf8: [0x61, 0xE2, 0x80]), #"a\xe2\x80"#)
        XCTAssertEqual(DisplayText.escape(utf8: [0x80, 0x61]), #"\x80a"#)
        // Valid sequences between invalid bytes are decoded, and escaped as text.
        XCTAssertEqual(DisplayText.escape(utf8: [0xFF] + Array("\u{9b}\u{1b}\\".utf8) + [0xFE]), #"\xff\u{9b}\x1b\\\xfe"#)
        XCTAssertEqual(DisplayText.escape(utf8: []), "")
    }

    func testTerminalSafeJSONKeepsTheExactValue() throws {
        let name = "a\u{1b}]52;c;aGk=\u{07}\u{9b}\u{7f}\u{202e}\u{2066}\\b é"
        let raw = String(decoding: try JSONEncoder().encode(["name": name]), as: UTF8.self)
        let safe = DisplayText.terminalSafeJSON(raw)
        XCTAssertFalse(safe.unicodeScalars.contains(where: DisplayText.isUnsafe), safe)
        XCTAssertTrue(safe.contains(#"\u009b"#), safe)
        XCTAssertTrue(safe.contains(#"\u202e"#), safe)
        let decoded = try JSONDecoder().decode([String: String].self, from: Data(safe.utf8))
        XCTAssertEqual(decoded["name"], name)
        XCTAssertEqual(DisplayText.terminalSafeJSON(#"{"a":"plain"}"#), #"{"a":"plain"}"#)
    }

    /// The inverse of `escape`, to show that no two texts are shown alike.
    private func unescape(_ shown: String) -> String? {
        var out = String.UnicodeScalarView()
        var scalars = Array(shown.unicodeScalars)[...]
        while let c = scalars.popFirst() {
            guard c == "\\" else { out.append(c); continue }
            switch scalars.popFirst() {
            case "\\": out.append("\\")
            case "x":
                guard scalars.count >= 2, let v = UInt32(String(String.UnicodeScalarView(scalars.prefix(2))), radix: 16),
                      let s = Unicode.Scalar(v) else { return nil }
                out.append(s)
                scalars = scalars.dropFirst(2)
            case "u":
                guard scalars.popFirst() == "{", let end = scalars.firstIndex(of: "}"),
                      let v = UInt32(String(String.UnicodeScalarView(scalars[..<end])), radix: 16),
                      let s = Unicode.Scalar(v) else { return nil }
                out.append(s)
                scalars = scalars[(end + 1)...]
            default: return nil
            }
        }
        return String(out)
    }
}
