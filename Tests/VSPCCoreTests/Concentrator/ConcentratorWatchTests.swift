import Foundation
import XCTest
@testable import VSPCCore

/// Console output for the log files and watch patterns (`keepsOutput`), and what a watch match does: counted
/// always, recorded as `console-match` within the console's allowance, with a summary of the rest.
final class ConcentratorWatchTests: XCTestCase {
    let key = ConsoleKey(uuid: UUIDs.a, label: "")

    func testOutputGoesToTheLogsOnlyWhenKept() {
        let off = ConcentratorHarness()
        let vm = off.bringUpVM()
        off.take()
        XCTAssertFalse(off.vm(vm, says: Array("boot\r\n".utf8)).contains { if case .consoleOutput = $0 { return true }; return false })

        var config = ConcentratorConfig.forTests
        config.keepsOutput = true
        let on = ConcentratorHarness(config: config)
        let id = on.bringUpVM()
        // Bytes as the VM printed them after telnet decoding: a doubled IAC is one 0xFF, NUL stays.
        on.vm(id, says: [0x41, 0xFF, 0xFF, 0x00, 0x0D, 0x0A])
        on.vm(id, says: Array("login: ".utf8))
        XCTAssertEqual(on.consoleOutput[key], [0x41, 0xFF, 0x00, 0x0D, 0x0A] + Array("login: ".utf8))
    }

    func testMatchesAreRecordedWithinTheAllowanceAndSummarised() {
        var config = ConcentratorConfig.forTests
        config.matchesPerConsolePerMinute = 2
        let h = ConcentratorHarness(config: config)
        h.bringUpVM(name: "web01")
        h.take()
        let line = Array("[  12.3] Kernel panic - not syncing: VFS\u{1B}[0m\r".utf8)
        for _ in 0..<5 { h.send(.consoleLineMatched(key, pattern: "panic", line: line)) }
        XCTAssertEqual(h.records.map(\.kind), [.consoleMatch, .consoleMatch])
        XCTAssertEqual(h.records.first?.detail, #"panic: [  12.3] Kernel panic - not syncing: VFS\x1b[0m"#)
        XCTAssertEqual(h.records.first?.name, "web01")
        XCTAssertEqual(EventKind.consoleMatch.logLevel, .notice)
        XCTAssertEqual(h.machine.tallies.consoleMatches, ["panic": 5])
        h.take()
        // The next minute's first match reports what the last one left out.
        h.advance(by: 61)
        h.send(.consoleLineMatched(key, pattern: "oops", line: Array("Oops: 0000".utf8)))
        XCTAssertEqual(h.records.map(\.detail), ["… 3 more matches suppressed", "oops: Oops: 0000"])
        XCTAssertEqual(h.machine.tallies.consoleMatches, ["panic": 5, "oops": 1])
    }

    func testAMatchedLineIsCutAtTheLimitOnACharacterBoundary() {
        XCTAssertEqual(ConcentratorStateMachine.trimmedLine(Array("abc\r\n".utf8), limit: 200), Array("abc".utf8))
        let long = Array(String(repeating: "x", count: 199).utf8) + Array("é".utf8) + Array("tail".utf8)
        XCTAssertEqual(ConcentratorStateMachine.trimmedLine(long, limit: 200), Array(String(repeating: "x", count: 199).utf8))
        XCTAssertEqual(ConcentratorStateMachine.trimmedLine([0xFF, 0x00, 0x41], limit: 200), [0xFF, 0x00, 0x41])
    }

    func testAMatchForAConsoleThatIsGoneIsOnlyCounted() {
        let h = ConcentratorHarness()
        h.send(.consoleLineMatched(ConsoleKey(uuid: UUIDs.b, label: ""), pattern: "panic", line: [0x41]))
        XCTAssertEqual(h.records, [])
        XCTAssertEqual(h.machine.tallies.consoleMatches, ["panic": 1])
    }

    func testWatchPatternsParse() {
        XCTAssertEqual(WatchPattern.parse("panic=Kernel panic - not syncing").pattern,
                       WatchPattern(name: "panic", regex: "Kernel panic - not syncing"))
        XCTAssertEqual(WatchPattern.parse("oops=Oops:|BUG:|a=b").pattern, WatchPattern(name: "oops", regex: "Oops:|BUG:|a=b"))
        XCTAssertNotNil(WatchPattern.parse("no-equals").problem)
        XCTAssertNotNil(WatchPattern.parse("=regex").problem)
        XCTAssertNotNil(WatchPattern.parse("bad name=x").problem)
        XCTAssertNotNil(WatchPattern.parse("empty=").problem)
        XCTAssertEqual(WatchPattern.parse("broken=a(").problem?.hasPrefix("has a REGEX that does not compile: "), true)
        guard case .failure(let twice) = WatchPattern.parseAll(["a=x", "a=y"]) else { return XCTFail("a name used twice") }
        XCTAssertEqual(twice.description, "--watch: the name a is used twice")
    }
}
