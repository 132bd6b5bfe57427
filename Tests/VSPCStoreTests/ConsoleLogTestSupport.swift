import Foundation
import Logging
import XCTest
@testable import VSPCStore
import VSPCCore

/// A temporary console log folder and helpers to read what the writer left in it.
class ConsoleLogTestCase: XCTestCase {
    var dir: String!
    var writers: [ConsoleLogWriter] = []

    let vm = ConsoleKey(uuid: "0123456789abcdef0123456789abcdef", label: "")
    let other = ConsoleKey(uuid: "fedcba9876543210fedcba9876543210", label: "")
    /// A fixed time, so that index entries are known.
    let t0 = Date(timeIntervalSince1970: 1_700_000_000)

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vspc-consolelogs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        for writer in writers { writer.close() }
        writers = []
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// What the writers of a test logged.
    let log = CapturedLog()

    func makeWriter(maxBytes: Int = ConsoleLogSettings.defaultMaxBytes, keep: Int = ConsoleLogSettings.defaultKeep,
                    maxAgeDays: Int = 0, groupID: UInt32? = nil, directory: String? = nil,
                    tuning: ConsoleLogWriter.Tuning = ConsoleLogWriter.Tuning()) throws -> ConsoleLogWriter {
        let settings = ConsoleLogSettings(directory: directory ?? dir, maxBytes: maxBytes, keep: keep,
                                          maxAgeDays: maxAgeDays, groupID: groupID)
        let writer = try ConsoleLogWriter(settings: settings, logger: Logger(label: "test.consolelogs") { _ in CapturedLogHandler(log: self.log) }, tuning: tuning)
        writers.append(writer)
        return writer
    }

    func path(_ name: String) -> String { dir + "/" + name }

    func contents(_ name: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path(name)).map { [UInt8]($0) }
    }

    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: path(name)) }

    func entries(_ name: String) -> [ConsoleLogIndex.Entry]? {
        contents(name).flatMap(ConsoleLogIndex.decode)
    }

    func entry(_ offset: UInt64, _ date: Date) -> ConsoleLogIndex.Entry {
        ConsoleLogIndex.Entry(offset: offset, date: date)
    }

    func mode(_ name: String) -> String {
        PrivateFiles.mode(path(name)).map(PrivateFiles.octal) ?? "missing"
    }

    func names() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }

    /// Deterministic bytes covering every value, 0x00 and 0xFF included.
    func sampleBytes(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
        var state = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    func createFileOrFail(atPath path: String, contents: Data?, attributes: [FileAttributeKey: Any]? = nil,
                          file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: contents, attributes: attributes),
                      "cannot create \(path)", file: file, line: line)
    }

    /// Waits (up to a generous bound) for the writer thread to bring about `condition` on its own.
    func waitUntil(_ what: String, file: StaticString = #filePath, line: UInt = #line, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(20)
        while !condition() {
            guard Date() < deadline else { return XCTFail("timed out waiting until \(what)", file: file, line: line) }
            usleep(5_000)
        }
    }

    /// Sets a file's access and modification times.
    func setModified(_ name: String, _ date: Date) throws {
        try FileManager.default.setAttributes([.modificationDate: date], ofItemAtPath: path(name))
    }

    /// The process's open descriptors that point into the test folder.
    func openDescriptorsInFolder() -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.filter { fd in
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? ""
            return target.hasPrefix(dir + "/")
        }.count
    }
}

/// Log lines kept for assertions.
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var kept: [(level: Logger.Level, message: String)] = []

    func add(_ level: Logger.Level, _ message: String) {
        lock.lock()
        kept.append((level, message))
        lock.unlock()
    }

    var lines: [(level: Logger.Level, message: String)] {
        lock.lock()
        defer { lock.unlock() }
        return kept
    }
}

struct CapturedLogHandler: LogHandler {
    let log: CapturedLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        log.add(event.level, event.message.description)
    }
}
