import XCTest
@testable import VSPCCore

final class EscapeMenuTests: XCTestCase {
    private let esc = EscapeMenu.escapeByte

    private func feed(_ chunks: [[UInt8]]) -> [EscapeEvent] {
        var menu = EscapeMenu()
        return merged(chunks.flatMap { menu.feed($0) })
    }

    /// Joins adjacent `.forward`s, so results of different splits compare equal.
    private func merged(_ events: [EscapeEvent]) -> [EscapeEvent] {
        var out: [EscapeEvent] = []
        for event in events {
            if case .forward(let more) = event, case .forward(let bytes)? = out.last {
                out[out.count - 1] = .forward(bytes + more)
            } else {
                out.append(event)
            }
        }
        return out
    }

    func testCommands() {
        let keys: [(Character, EscapeCommand)] = [
            (".", .disconnect), ("?", .help), ("w", .who), ("b", .sendBreak), ("r", .replay), ("f", .toggleExclusiveWrite),
        ]
        for (key, command) in keys {
            var menu = EscapeMenu()
            XCTAssertEqual(menu.feed([esc, key.asciiValue!]), [.command(command)])
            XCTAssertFalse(menu.awaitingCommand)
            XCTAssertEqual(command.key, key.asciiValue!)
            XCTAssertEqual(EscapeCommand(key: key.asciiValue!), command)
        }
        XCTAssertNil(EscapeCommand(key: UInt8(ascii: "W")))
    }

    func testPassThroughAndOrder() {
        var menu = EscapeMenu()
        let input: [UInt8] = Array("ls\r".utf8) + [esc, UInt8(ascii: "w")] + [0, 0xFF] + [esc, UInt8(ascii: "b"), esc, UInt8(ascii: ".")]
        XCTAssertEqual(menu.feed(input), [
            .forward(Array("ls\r".utf8)), .command(.who), .forward([0, 0xFF]), .command(.sendBreak), .command(.disconnect),
        ])
        XCTAssertEqual(menu.feed([]), [])
        XCTAssertEqual(menu.feed(Array(0...0x1C)), [.forward(Array(0...0x1C))])
    }

    func testDoubleEscapeSendsOne() {
        var menu = EscapeMenu()
        XCTAssertEqual(menu.feed([esc, esc]), [.forward([esc])])
        XCTAssertEqual(menu.feed([esc, esc, esc, esc]), [.forward([esc, esc])])
        XCTAssertEqual(menu.feed([esc, esc, esc]), [.forward([esc])])
        XCTAssertTrue(menu.awaitingCommand)
        XCTAssertEqual(menu.feed([UInt8(ascii: "?")]), [.command(.help)])
    }

    /// Issue 15 item 8: an unknown key after the escape shows the help, and neither byte reaches the VM.
    func testOtherByteAfterEscapeShowsTheHelp() {
        var menu = EscapeMenu()
        XCTAssertEqual(menu.feed([UInt8(ascii: "a"), esc, UInt8(ascii: "x"), UInt8(ascii: "b")]),
                       [.forward([UInt8(ascii: "a")]), .command(.help), .forward([UInt8(ascii: "b")])])
        XCTAssertEqual(menu.feed([esc, 0]), [.command(.help)])
        XCTAssertEqual(menu.feed([esc, UInt8(ascii: "W")]), [.command(.help)])
    }

    func testEscapeAtTheEndWaits() {
        var menu = EscapeMenu()
        XCTAssertEqual(menu.feed([UInt8(ascii: "a"), esc]), [.forward([UInt8(ascii: "a")])])
        XCTAssertTrue(menu.awaitingCommand)
        XCTAssertEqual(menu.feed([UInt8(ascii: "r"), UInt8(ascii: "z")]), [.command(.replay), .forward([UInt8(ascii: "z")])])
        XCTAssertEqual(menu.feed([esc]), [])
        XCTAssertEqual(menu.feed([UInt8(ascii: "q")]), [.command(.help)])
    }

    /// Every way of cutting the input in two or three pieces, and byte by byte, gives the same events.
    func testEverySplit() {
        let input: [UInt8] = [0x41, esc, UInt8(ascii: "."), esc, esc, 0x42, esc, UInt8(ascii: "x"), esc, UInt8(ascii: "f"),
                              0xFF, 0x00, esc, esc, esc, UInt8(ascii: "w"), esc]
        let whole = feed([input])
        XCTAssertEqual(whole, [
            .forward([0x41]), .command(.disconnect), .forward([esc, 0x42]), .command(.help), .command(.toggleExclusiveWrite),
            .forward([0xFF, 0x00, esc]), .command(.who),
        ])
        for i in 0...input.count {
            XCTAssertEqual(feed([Array(input[..<i]), Array(input[i...])]), whole, "split at \(i)")
            for j in i...input.count {
                XCTAssertEqual(feed([Array(input[..<i]), Array(input[i..<j]), Array(input[j...])]), whole, "split at \(i), \(j)")
            }
        }
        XCTAssertEqual(feed(input.map { [$0] }), whole)
    }

    /// Random input dense in Ctrl-], random splits, against a byte-at-a-time reference.
    func testRandomAgainstReference() {
        func reference(_ input: [UInt8]) -> [EscapeEvent] {
            var out: [EscapeEvent] = []
            var pending = false
            for b in input {
                if pending {
                    pending = false
                    if b == esc { out.append(.forward([esc])) }
                    else if let c = EscapeCommand(key: b) { out.append(.command(c)) }
                    else { out.append(.command(.help)) }
                } else if b == esc {
                    pending = true
                } else {
                    out.append(.forward([b]))
                }
            }
            return merged(out)
        }
        var rng = SplitMix64(seed: 7)
        let alphabet: [UInt8] = [esc, esc, esc, 0, 0xFF, 0x0D, 0x0A] + Array(".?wbrfWx".utf8)
        for _ in 0..<2000 {
            let input = (0..<Int.random(in: 0...40, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            var chunks: [[UInt8]] = []
            var rest = input[...]
            while !rest.isEmpty {
                let n = Int.random(in: 0...min(5, rest.count), using: &rng)
                chunks.append(Array(rest.prefix(n)))
                rest = rest.dropFirst(n)
            }
            XCTAssertEqual(feed(chunks), reference(input))
        }
    }

    func testHelpText() {
        XCTAssertTrue(EscapeMenu.helpText.hasSuffix("\r\n"))
        XCTAssertFalse(EscapeMenu.helpText.replacingOccurrences(of: "\r\n", with: "").contains("\n"))
        for key in [".", "?", "w", "b", "r", "f"] { XCTAssertTrue(EscapeMenu.helpText.contains("  \(key)  ")) }
    }
}
