import Foundation
import VSPCCore
import VSPCStore
import XCTest

final class GrepScannerTests: XCTestCase {
    let key = ConsoleKey(uuid: "0123456789abcdef0123456789abcdef", label: "")
    var fixture: ConsoleLogFixture!
    var written: [UInt8]?

    override func setUpWithError() throws {
        fixture = try ConsoleLogFixture()
    }

    override func tearDown() {
        fixture.remove()
    }

    struct Printed: Equatable, CustomStringConvertible {
        var offset: UInt64
        var text: String
        var isMatch: Bool
        var startsGroup: Bool
        var description: String { "\(startsGroup ? "-- " : "")\(offset)\(isMatch ? ":" : "-")\(text)" }
    }

    /// What the scanner prints for `data` searched in `chunkSize` pieces.
    func scan(_ data: [UInt8], _ pattern: String, context: Int, chunkSize: Int, maxLine: Int = 1 << 20) throws -> [Printed] {
        if data != written {
            try fixture.write(ConsoleLogFiles.live(key), index: nil, [(seconds: 0, text: data)])
            written = data
        }
        let segment = try XCTUnwrap(ConsoleLogReader(directory: fixture.directory).segments(key).first)
        var out: [Printed] = []
        let scanner = GrepScanner(matcher: try LineMatcher(pattern: pattern), context: context, chunkSize: chunkSize,
                                  maxLine: maxLine) { line in
            out.append(Printed(offset: line.offset, text: String(decoding: line.bytes, as: UTF8.self),
                               isMatch: line.isMatch, startsGroup: line.startsGroup))
        }
        try scanner.scan(key, segment, try LogFile(path: segment.path), 0..<segment.size)
        XCTAssertEqual(scanner.matches, out.filter(\.isMatch).count)
        return out
    }

    /// grep's answer, line by line: every match and the `context` lines around each.
    func expected(_ data: [UInt8], _ pattern: String, context: Int) throws -> [Printed] {
        let matcher = try LineMatcher(pattern: pattern)
        var lines: [(offset: UInt64, bytes: [UInt8])] = []
        var start = 0
        for (i, byte) in data.enumerated() where byte == 0x0A {
            lines.append((UInt64(start), Array(data[start..<i])))
            start = i + 1
        }
        if start < data.count { lines.append((UInt64(start), Array(data[start...]))) }
        let hits = lines.indices.filter { matcher.matches(lines[$0].bytes) }
        var shown = Set<Int>()
        for h in hits { for i in max(0, h - context)...min(lines.count - 1, h + context) { shown.insert(i) } }
        var out: [Printed] = []
        var last: Int?
        for i in shown.sorted() {
            out.append(Printed(offset: lines[i].offset, text: String(decoding: lines[i].bytes, as: UTF8.self),
                               isMatch: hits.contains(i), startsGroup: last.map { $0 != i - 1 } ?? false))
            last = i
        }
        return out
    }

    func testMatchesAndContextAreGrepsAtEveryChunkSize() throws {
        var random = SplitMix(seed: 16)
        let words = ["ok", "error 1", "panic", "", "x", "warning: disk", "error 22 panic", "boot"]
        for round in 0..<30 {
            var text = ""
            for _ in 0..<Int.random(in: 0...40, using: &random) {
                text += words.randomElement(using: &random)! + "\n"
            }
            if Bool.random(using: &random) { text += words.randomElement(using: &random)! }
            let data = Array(text.utf8)
            for pattern in ["error [0-9]+", "panic$", "^$", "^x"] {
                for context in [0, 1, 2] {
                    let want = try expected(data, pattern, context: context)
                    for chunkSize in [1, 3, 7, 64, 1 << 20] {
                        let got = try scan(data, pattern, context: context, chunkSize: chunkSize, maxLine: 64)
                        XCTAssertEqual(got, want, "round \(round) /\(pattern)/ -C \(context) chunk \(chunkSize):\n\(text.debugDescription)")
                        if got != want { return }
                    }
                }
            }
        }
    }

    func testAHitAtTheEndOfAFileWithoutANewline() throws {
        let got = try scan(Array("a\nb\npanic".utf8), "panic", context: 1, chunkSize: 4)
        XCTAssertEqual(got.map(\.description), ["2-b", "4:panic"])
    }

    func testALineLongerThanMaxLineIsSearchedInPieces() throws {
        let long = String(repeating: "a", count: 100) + "needle" + String(repeating: "b", count: 100)
        let got = try scan(Array("x\n\(long)\ny\n".utf8), "needle", context: 0, chunkSize: 16, maxLine: 32)
        XCTAssertEqual(got.filter(\.isMatch).count, 1)
        XCTAssertTrue(got.first?.text.contains("needle") ?? false, "\(got)")
    }
}

/// A seeded generator, so that a failing round can be run again.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
