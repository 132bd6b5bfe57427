import Foundation
import VSPCCore
import VSPCStore
import XCTest

/// `vspc log` and `vspc grep` over a console log folder and a database made here, without a daemon.
final class ConsoleLogCommandTests: XCTestCase {
    let web = "0123456789abcdef0123456789abcdef"
    let db2 = "fedcba9876543210fedcba9876543210"
    /// A VM the database does not know.
    let stranger = "00000000000000001111111111111111"
    /// 2025-12-02 14:00:00 UTC.
    let t0: Double = 1_764_684_000
    var directory: URL!
    var dbPath: String { directory.appendingPathComponent("vspcd.db").path }
    var logs: String { directory.appendingPathComponent("consoles").path }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vspc-logcmd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let store = try Store(path: dbPath)
        store.enqueue([
            .upsertAssignment(Assignment(uuid: web, name: "web-01", port: 20000)),
            .upsertAssignment(Assignment(uuid: web, label: "com2", name: "web-01", port: 20001)),
            .upsertAssignment(Assignment(uuid: db2, name: "db-02", port: 20002)),
        ])
        store.flush()
        store.close()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Writes a data file from pieces arriving at t0 + seconds, and its index as the writer keeps it.
    func write(_ key: ConsoleKey, rotation: Int? = nil, _ pieces: [(Double, [UInt8])], index: Bool = true) throws {
        var data: [UInt8] = []
        var entries: [ConsoleLogIndex.Entry] = []
        for (seconds, bytes) in pieces {
            let ms = Int64((t0 + seconds) * 1000)
            if ConsoleLogIndex.needsEntry(after: entries.last, at: ms) {
                entries.append(ConsoleLogIndex.Entry(offset: UInt64(data.count), milliseconds: ms))
            }
            data += bytes
        }
        let name = rotation.map { ConsoleLogFiles.rotated(key, $0) } ?? ConsoleLogFiles.live(key)
        let indexName = rotation.map { ConsoleLogFiles.rotatedIndex(key, $0) } ?? ConsoleLogFiles.index(key)
        try Data(data).write(to: URL(fileURLWithPath: logs + "/" + name))
        if index {
            try Data(ConsoleLogIndex.header + entries.flatMap(ConsoleLogIndex.encode))
                .write(to: URL(fileURLWithPath: logs + "/" + indexName))
        }
    }

    func write(_ key: ConsoleKey, rotation: Int? = nil, _ pieces: [(Double, String)]) throws {
        try write(key, rotation: rotation, pieces.map { ($0.0, Array($0.1.utf8)) })
    }

    func key(_ uuid: String, _ label: String = "") -> ConsoleKey { ConsoleKey(uuid: uuid, label: label) }

    func iso(_ seconds: Double) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: t0 + seconds))
    }

    func local(_ seconds: Double, _ format: String) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = .current
        f.dateFormat = format
        return f.string(from: Date(timeIntervalSince1970: t0 + seconds))
    }

    func run(_ arguments: [String]) throws -> ToolResult {
        try vspc(arguments + ["--db", dbPath])
    }

    /// web-01: .1 holds 0-2 s, the live file 10-12 s.
    func writeRotatedWeb() throws {
        try write(key(web), rotation: 1, [(0, "boot 1\n"), (1, "kernel: ok\n"), (2, "login: ")])
        try write(key(web), [(10, "boot 2\n"), (11, "kernel: panic\n"), (12, "reboot\n")])
    }

    func testLogPrintsTheBytesExactly() throws {
        let bytes: [UInt8] = [0x00, 0xFF, 0x1B, 0x5B, 0x32, 0x4A, 0x0D, 0x0A, 0xC3, 0x28, 0x00]
        try write(key(web), [(0, bytes)])
        let r = try run(["log", "web-01"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual([UInt8](r.out), bytes)
        // --safe strips the terminal controls.
        let safe = try run(["log", "web-01", "--safe"])
        XCTAssertEqual([UInt8](safe.out), [0xFF, 0x0D, 0x0A, 0xC3, 0x28])
    }

    func testLogReadsAcrossARotationAndInWindows() throws {
        try writeRotatedWeb()
        XCTAssertEqual(try run(["log", "web-01"]).text, "boot 1\nkernel: ok\nlogin: boot 2\nkernel: panic\nreboot\n")
        XCTAssertEqual(try run(["log", "web-01", "--since", iso(1)]).text, "kernel: ok\nlogin: boot 2\nkernel: panic\nreboot\n")
        XCTAssertEqual(try run(["log", "web-01", "--since", iso(1), "--until", iso(11)]).text, "kernel: ok\nlogin: boot 2\n")
        XCTAssertEqual(try run(["log", "web-01", "--until", iso(1)]).text, "boot 1\n")
        XCTAssertEqual(try run(["log", "web-01", "--since", iso(20)]).text, "")
        // By uuid in another spelling, and by a prefix.
        XCTAssertEqual(try run(["log", "01234567-89ab-cdef-0123-456789abcdef", "--since", iso(12)]).text, "reboot\n")
        XCTAssertEqual(try run(["log", "0123", "--since", iso(12)]).text, "reboot\n")
    }

    func testLogFindsLabelsAndVMsTheDatabaseDoesNotKnow() throws {
        try write(key(web, "com2"), [(0, "second port\n")])
        try write(key(stranger), [(0, "unknown vm\n")])
        XCTAssertEqual(try run(["log", "web-01#com2"]).text, "second port\n")
        XCTAssertEqual(try run(["log", "web-01", "--label", "com2"]).text, "second port\n")
        XCTAssertEqual(try run(["log", stranger]).text, "unknown vm\n")
        // Without a database at all, with the folder given.
        let r = try vspc(["log", "0000000000000000", "--db", directory.appendingPathComponent("none.db").path, "--console-log-dir", logs])
        XCTAssertEqual(r.text, "unknown vm\n", r.err)
        let missing = try run(["log", "nosuchvm"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.contains("no VM matches \"nosuchvm\""), missing.err)
        let noLog = try run(["log", "db-02"])
        XCTAssertEqual(noLog.status, 1)
        XCTAssertTrue(noLog.err.contains("no console log"), noLog.err)
    }

    func testLogTimestampsEachLine() throws {
        try write(key(web), [(0, "one\ntw"), (3, "o\nthree\n"), (5, "four")])
        let r = try run(["log", "web-01", "--timestamps"])
        XCTAssertEqual(r.status, 0, r.err)
        let f = "MMM dd HH:mm:ss"
        XCTAssertEqual(r.text, "\(local(0, f)) one\n\(local(0, f)) two\n\(local(3, f)) three\n\(local(5, f)) four")
    }

    func testLogFollowsTheLiveFileAcrossARotation() async throws {
        try write(key(web), [(0, "first\n")])
        let follower = try Follower(["log", "web-01", "-f", "--db", dbPath])
        defer { follower.stop() }
        try await follower.waitFor(count: 6)
        let live = logs + "/" + ConsoleLogFiles.live(key(web))
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: live))
        handle.seekToEndOfFile()
        handle.write(Data("second\n".utf8))
        try handle.close()
        try await follower.waitFor(count: 13)
        try FileManager.default.moveItem(atPath: live, toPath: logs + "/" + ConsoleLogFiles.rotated(key(web), 1))
        try Data("third\n".utf8).write(to: URL(fileURLWithPath: live))
        try await follower.waitFor(count: 19)
        XCTAssertEqual(String(decoding: follower.data, as: UTF8.self), "first\nsecond\nthird\n")
    }

    func testGrepPrintsNameTimeAndTheEscapedLine() throws {
        try writeRotatedWeb()
        try write(key(web, "com2"), [(5, "PANIC on com2\r\n")])
        try write(key(stranger), [(7, [UInt8]("panic \u{1b}[31mred\u{1b}[0m ".utf8) + [0xFF, 0x0A])])
        let f = "yyyy-MM-dd HH:mm:ss"
        let r = try run(["grep", "-i", "pan+ic"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(r.text, """
            \(stranger)  \(local(7, f))  panic \\x1b[31mred\\x1b[0m \\xff
            web-01  \(local(11, f))  kernel: panic
            web-01#com2  \(local(5, f))  PANIC on com2

            """)
        let fixed = try run(["grep", "-F", "n+", "web-01"])
        XCTAssertEqual(fixed.status, 1, fixed.err)
        XCTAssertEqual(fixed.text, "")
        let named = try run(["grep", "-F", "kernel:", "web-01", "--since", iso(5)])
        XCTAssertEqual(named.text, "web-01  \(local(11, f))  kernel: panic\n")
        let caseSensitive = try run(["grep", "PANIC", "web-01#com2"])
        XCTAssertEqual(caseSensitive.text, "web-01#com2  \(local(5, f))  PANIC on com2\n")
    }

    func testGrepContextIsGrepStyle() throws {
        let lines = (1...12).map { "line \($0)\n" }
        try write(key(web), lines.enumerated().map { (Double($0.offset), $0.element) })
        let r = try run(["grep", "-C", "1", "line (2|3|9)$"])
        XCTAssertEqual(r.status, 0, r.err)
        let f = "yyyy-MM-dd HH:mm:ss"
        func l(_ n: Int, _ mark: String) -> String { "web-01  \(local(Double(n - 1), f))\(mark) line \(n)\n" }
        XCTAssertEqual(r.text, l(1, "-") + l(2, ":") + l(3, ":") + l(4, "-") + "--\n" + l(8, "-") + l(9, ":") + l(10, "-"))
    }

    func testGrepJSONAndErrors() throws {
        try writeRotatedWeb()
        let r = try run(["grep", "--json", "-C", "1", "panic"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(r.lines.count, 1, r.text)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.lines[0].utf8)) as? [String: Any])
        XCTAssertEqual(object["vm"] as? String, "web-01")
        XCTAssertEqual(object["uuid"] as? String, web)
        XCTAssertEqual(object["label"] as? String, "")
        XCTAssertEqual(object["time"] as? String, iso(11))
        XCTAssertEqual(object["line"] as? String, "kernel: panic")
        XCTAssertEqual((object["before"] as? [[String: Any]])?.compactMap { $0["line"] as? String }, ["boot 2"])
        XCTAssertEqual((object["after"] as? [[String: Any]])?.compactMap { $0["line"] as? String }, ["reboot"])

        let bad = try run(["grep", "a(b"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.err.contains("bad regular expression"), bad.err)
        XCTAssertEqual(try run(["grep", "x", "nosuchvm"]).status, 2)
        XCTAssertEqual(try run(["grep", "no such text"]).status, 1)
    }
}
