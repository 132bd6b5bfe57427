import Foundation
import Logging
import VSPCNet
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A sink that records what it is given and can be held shut, to play a slow stderr.
final class GateSink: @unchecked Sendable {
    let lock = NSCondition()
    var written: [String] = []
    var open = true
    var entered = 0
    var fail = false

    func write(_ data: Data) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        entered += 1
        lock.broadcast()
        while !open { lock.wait() }
        if fail { return false }
        written.append(String(decoding: data, as: UTF8.self))
        return true
    }

    func waitEntered(_ count: Int) {
        lock.lock()
        defer { lock.unlock() }
        while entered < count { lock.wait() }
    }

    func set(open: Bool? = nil, fail: Bool? = nil) {
        lock.lock()
        if let open { self.open = open }
        if let fail { self.fail = fail }
        lock.broadcast()
        lock.unlock()
    }

    var text: String { lock.lock(); defer { lock.unlock() }; return written.joined() }
}

final class LogWriterTests: XCTestCase {
    func testLinesArriveInOrder() {
        let sink = GateSink()
        let writer = LogWriter(capacity: 100, sink: { sink.write($0) })
        defer { writer.close() }
        for i in 0..<50 { XCTAssertTrue(writer.enqueue("line \(i)\n")) }
        XCTAssertTrue(writer.flush(timeout: 30))
        XCTAssertEqual(sink.text, (0..<50).map { "line \($0)\n" }.joined())
        XCTAssertEqual(writer.dropped, 0)
    }

    func testASlowOutputDropsAndCountsAndSaysSoAfterwards() {
        let sink = GateSink()
        let writer = LogWriter(capacity: 3, dropNotice: { "\($0) log lines dropped\n" }, sink: { sink.write($0) })
        defer { writer.close() }
        sink.set(open: false)
        writer.enqueue("first\n")
        sink.waitEntered(1) // the writer holds "first" and is stuck in the sink
        for i in 0..<3 { XCTAssertTrue(writer.enqueue("queued \(i)\n")) }
        for i in 0..<5 { XCTAssertFalse(writer.enqueue("dropped \(i)\n")) } // returns at once: never blocks
        XCTAssertEqual(writer.dropped, 5)
        sink.set(open: true)
        XCTAssertTrue(writer.flush(timeout: 30))
        XCTAssertEqual(sink.text, "first\nqueued 0\nqueued 1\nqueued 2\n5 log lines dropped\n")
        writer.enqueue("later\n")
        writer.flush(timeout: 30)
        XCTAssertTrue(sink.text.hasSuffix("dropped\nlater\n"), "the count is reported once")
    }

    func testAFailingOutputCountsItsLinesAndReportsThemWhenItRecovers() {
        let sink = GateSink()
        sink.set(fail: true)
        let writer = LogWriter(capacity: 10, dropNotice: { "\($0) log lines dropped\n" }, sink: { sink.write($0) })
        defer { writer.close() }
        writer.enqueue("lost 1\n")
        writer.enqueue("lost 2\n")
        writer.flush(timeout: 30)
        XCTAssertEqual(sink.text, "")
        sink.set(fail: false)
        writer.enqueue("back\n")
        writer.flush(timeout: 30)
        XCTAssertEqual(sink.text, "2 log lines dropped\nback\n")
        XCTAssertEqual(writer.dropped, 2)
    }

    func testAClosedPipeIsNoCrashAndEveryLineIsCounted() throws {
        signal(SIGPIPE, SIG_IGN) // as vspcd does
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        close(fds[0])
        let writer = LogWriter(fileDescriptor: fds[1], capacity: 1000)
        for i in 0..<100 { writer.enqueue("line \(i)\n") }
        writer.flush(timeout: 30)
        XCTAssertEqual(writer.dropped, 100)
        writer.close()
        close(fds[1])
    }

    func testAPipeNobodyReadsNeverBlocksTheCaller() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let writer = LogWriter(fileDescriptor: fds[1], capacity: 10, dropNotice: { "\($0) log lines dropped\n" })
        let line = String(repeating: "x", count: 1023) + "\n"
        let total = 400 // 400 KiB: far more than a pipe holds
        var accepted = 0
        for _ in 0..<total where writer.enqueue(line) { accepted += 1 }
        XCTAssertLessThan(accepted, total)
        // Now read: the lines that got through, and notices counting the others, add up to every line.
        var received = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(60)
        func accounted() -> (full: Int, dropped: Int) {
            var full = 0, dropped = 0
            for line in String(decoding: received, as: UTF8.self).split(separator: "\n") {
                if line.count == 1023 { full += 1 } else if line.hasSuffix(" log lines dropped") { dropped += Int(line.split(separator: " ")[0])! }
            }
            return (full, dropped)
        }
        while accounted().full + accounted().dropped < total && Date() < deadline {
            var p = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 1000) > 0 else { continue }
            let n = read(fds[0], &buffer, buffer.count)
            if n > 0 { received.append(contentsOf: buffer[0..<n]) }
        }
        let (full, dropped) = accounted()
        XCTAssertEqual(full + dropped, total)
        XCTAssertEqual(full, accepted)
        XCTAssertEqual(writer.dropped, dropped)
        writer.close(timeout: 0)
        close(fds[0])
        close(fds[1])
    }
}

final class DaemonLogHandlerTests: XCTestCase {
    let time = Date(timeIntervalSince1970: 1_795_594_238.123_9) // 2026-11-25T08:10:38.123Z

    func testTextLineIsTodaysFormatWithControlsEscaped() {
        let f = LogLineFormatter(format: .text, pid: 42)
        XCTAssertEqual(f.line(level: .notice, message: "VM web-0 assigned port 20000", metadata: [:], time: time),
                       "<5>vspcd[42]: NOTICE VM web-0 assigned port 20000\n")
        XCTAssertEqual(f.line(level: .info, message: "VM evil\n<5>vspcd[1]: NOTICE forged\u{1b}[2J\u{202e}", metadata: ["vm": "a\nb", "port": "20000"], time: time),
                       "<6>vspcd[42]: INFO VM evil\\x0a<5>vspcd[1]: NOTICE forged\\x1b[2J\\u{202e} port=20000 vm=a\\x0ab\n")
        XCTAssertEqual(f.line(level: .debug, message: "d", metadata: [:], time: time), "<7>vspcd[42]: DEBUG d\n")
        XCTAssertEqual(f.line(level: .critical, message: "c", metadata: [:], time: time), "<2>vspcd[42]: CRITICAL c\n")
    }

    func testJSONLineHasTimeLevelMessageAndMetadata() throws {
        let f = LogLineFormatter(format: .json, pid: 42)
        let line = f.line(level: .warning, message: "VM \"x\"\nforged", metadata: ["vm": "web-0", "port": "20000", "message": "clash",
                                                                                  "peers": ["a", "b"]], time: time)
        XCTAssertEqual(line, #"{"time":"2026-11-25T08:10:38.123Z","level":"warning","message":"VM \"x\"\nforged","metadata.message":"clash","peers":["a","b"],"port":"20000","vm":"web-0"}"# + "\n")
        XCTAssertEqual(line.filter { $0 == "\n" }.count, 1)
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        XCTAssertEqual(object["message"] as? String, "VM \"x\"\nforged")
        XCTAssertEqual(object["level"] as? String, "warning")
    }

    func testLongMessagesAreCut() {
        let f = LogLineFormatter(format: .text, pid: 1)
        let line = f.line(level: .error, message: String(repeating: "a", count: 100_000), metadata: [:], time: time)
        XCTAssertLessThan(line.utf8.count, LogLineFormatter.maxMessageBytes + 100)
        XCTAssertTrue(line.hasSuffix("... (cut)\n"))
    }

    func testTheSharedLevelChangesEveryLoggerAtOnce() {
        let sink = GateSink()
        let control = LogControl(format: .text, level: .notice,
                                 writer: LogWriter(capacity: 100, sink: { sink.write($0) }))
        defer { control.writer.close() }
        let a = Logger(label: "a") { DaemonLogHandler(label: $0, control: control) }
        var b = Logger(label: "b") { DaemonLogHandler(label: $0, control: control) }
        a.info("hidden")
        a.notice("shown 1")
        control.level = .debug
        a.debug("shown 2")
        b[metadataKey: "vm"] = "web-0"
        b.debug("shown 3")
        b.logLevel = .error // a logger's own level wins over the shared one
        b.warning("hidden")
        control.level = .notice
        a.info("hidden")
        control.writer.flush(timeout: 30)
        let pid = getpid()
        XCTAssertEqual(sink.text, "<5>vspcd[\(pid)]: NOTICE shown 1\n<7>vspcd[\(pid)]: DEBUG shown 2\n<7>vspcd[\(pid)]: DEBUG shown 3 vm=web-0\n")
    }
}
