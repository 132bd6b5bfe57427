import Foundation
import VSPCCore
import VSPCStore
import XCTest

/// Writes console log files in the on-disk format, as the daemon's writer would.
struct ConsoleLogFixture {
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "vspc-logs-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    /// Writes a data file from pieces that arrived at the given seconds since 1970, and its index (an entry at
    /// each piece whose time is a second or more after the last entry, as the writer does).
    func write(_ name: String, index: String?, _ pieces: [(seconds: Double, text: [UInt8])]) throws {
        var data: [UInt8] = []
        var entries: [ConsoleLogIndex.Entry] = []
        for piece in pieces {
            let ms = Int64(piece.seconds * 1000)
            if ConsoleLogIndex.needsEntry(after: entries.last, at: ms) {
                entries.append(ConsoleLogIndex.Entry(offset: UInt64(data.count), milliseconds: ms))
            }
            data += piece.text
        }
        try Data(data).write(to: URL(fileURLWithPath: directory + "/" + name))
        if let index {
            let bytes = ConsoleLogIndex.header + entries.flatMap(ConsoleLogIndex.encode)
            try Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + index))
        }
    }

    func write(_ name: String, index: String?, _ pieces: [(Double, String)]) throws {
        try write(name, index: index, pieces.map { (seconds: $0.0, text: Array($0.1.utf8)) })
    }
}

final class ConsoleLogReaderTests: XCTestCase {
    let key = ConsoleKey(uuid: "0123456789abcdef0123456789abcdef", label: "")
    var fixture: ConsoleLogFixture!
    var reader: ConsoleLogReader { ConsoleLogReader(directory: fixture.directory) }

    override func setUpWithError() throws {
        fixture = try ConsoleLogFixture()
    }

    override func tearDown() {
        fixture.remove()
    }

    func at(_ seconds: Double) -> Date { Date(timeIntervalSince1970: seconds) }

    func text(_ since: Double?, _ until: Double?, chunkSize: Int = 1 << 20, key: ConsoleKey? = nil) throws -> String {
        var out: [UInt8] = []
        try reader.read(key ?? self.key, since: since.map(at), until: until.map(at), chunkSize: chunkSize) { out += $0.bytes }
        return String(decoding: out, as: UTF8.self)
    }

    /// Three files: .2 (100-102 s), .1 (200-201 s), live (300-302 s).
    func writeRotated() throws {
        try fixture.write(ConsoleLogFiles.rotated(key, 2), index: ConsoleLogFiles.rotatedIndex(key, 2),
                          [(100, "a1\na"), (101, "2\n"), (102, "a3\n")])
        try fixture.write(ConsoleLogFiles.rotated(key, 1), index: ConsoleLogFiles.rotatedIndex(key, 1),
                          [(200, "b1\n"), (201, "b2\n")])
        try fixture.write(ConsoleLogFiles.live(key), index: ConsoleLogFiles.index(key),
                          [(300, "c1\nc2"), (300.5, "\n"), (302, "c3\n")])
    }

    func testSegmentsAreOldestFirstWithTheirIndexes() throws {
        try writeRotated()
        let segments = reader.segments(key)
        XCTAssertEqual(segments.map(\.rotation), [2, 1, nil])
        XCTAssertEqual(segments.map(\.size), [9, 6, 9])
        XCTAssertEqual(segments[0].entries.map(\.offset), [0, 4, 6])
        XCTAssertEqual(segments[2].entries.map(\.offset), [0, 6])
        XCTAssertEqual(segments[0].time(of: 5), at(101))
        XCTAssertEqual(segments[2].time(of: 5), at(300))
    }

    func testEverythingAcrossRotatedFiles() throws {
        try writeRotated()
        XCTAssertEqual(try text(nil, nil), "a1\na2\na3\nb1\nb2\nc1\nc2\nc3\n")
        XCTAssertEqual(try text(nil, nil, chunkSize: 3), "a1\na2\na3\nb1\nb2\nc1\nc2\nc3\n")
    }

    func testAWindowTakesTheLinesWhoseFirstByteIsInIt() throws {
        try writeRotated()
        // "a2" started at 100 s: its first byte is out of [101, ...), its second byte is in.
        XCTAssertEqual(try text(101, nil), "a3\nb1\nb2\nc1\nc2\nc3\n")
        XCTAssertEqual(try text(100, 101), "a1\na2\n")
        XCTAssertEqual(try text(150, 301), "b1\nb2\nc1\nc2\n")
        XCTAssertEqual(try text(nil, 200.5), "a1\na2\na3\nb1\n")
        XCTAssertEqual(try text(201, 201.001), "b2\n")
        XCTAssertEqual(try text(400, nil), "")
        XCTAssertEqual(try text(302, nil, chunkSize: 1), "c3\n")
    }

    func testAFileWithoutAnIndexIsLeftOutOfWindowsOnly() throws {
        try writeRotated()
        try FileManager.default.removeItem(atPath: fixture.directory + "/" + ConsoleLogFiles.rotatedIndex(key, 1))
        try Data("not an index".utf8).write(to: URL(fileURLWithPath: fixture.directory + "/" + ConsoleLogFiles.rotatedIndex(key, 2)))
        XCTAssertEqual(reader.segments(key).map(\.entries.count), [0, 0, 2])
        XCTAssertNil(reader.segments(key)[1].time(of: 0))
        XCTAssertEqual(try text(nil, nil), "a1\na2\na3\nb1\nb2\nc1\nc2\nc3\n")
        XCTAssertEqual(try text(0, nil), "c1\nc2\nc3\n")
    }

    func testBytesAreExact() throws {
        let bytes: [UInt8] = [0, 0xFF, 0x0D, 0x0A, 0x1B, 0x5B, 0x6D, 0xC3]
        try fixture.write(ConsoleLogFiles.live(key), index: ConsoleLogFiles.index(key), [(seconds: 5, text: bytes)])
        var out: [UInt8] = []
        try reader.read(key) { out += $0.bytes }
        XCTAssertEqual(out, bytes)
        out = []
        try reader.read(key, since: at(5)) { out += $0.bytes }
        XCTAssertEqual(out, bytes)
    }

    func testTailReadsTheLiveFile() throws {
        try writeRotated()
        XCTAssertEqual(try reader.tail(key, bytes: nil).map { String(decoding: $0, as: UTF8.self) }, "c1\nc2\nc3\n")
        XCTAssertEqual(try reader.tail(key, bytes: 4).map { String(decoding: $0, as: UTF8.self) }, "\nc3\n")
        XCTAssertEqual(try reader.tail(key, bytes: 100)?.count, 9)
        XCTAssertEqual(try reader.tail(key, bytes: 0), [])
        XCTAssertNil(try reader.tail(ConsoleKey(uuid: String(repeating: "f", count: 32), label: ""), bytes: nil))
    }

    func testLabelsAreConsolesOfTheirOwn() throws {
        try writeRotated()
        let second = ConsoleKey(uuid: key.uuid, label: "serial2/x.y")
        try fixture.write(ConsoleLogFiles.live(second), index: ConsoleLogFiles.index(second), [(400, "second\n")])
        let other = ConsoleKey(uuid: String(repeating: "0", count: 32), label: "")
        try fixture.write(ConsoleLogFiles.rotated(other, 1), index: nil, [(1, "old\n")])
        try Data("x".utf8).write(to: URL(fileURLWithPath: fixture.directory + "/README"))
        XCTAssertEqual(try reader.consoles(), [other, key, second])
        XCTAssertEqual(try text(nil, nil, key: second), "second\n")
        XCTAssertEqual(try text(nil, nil, key: other), "old\n")
        XCTAssertEqual(reader.segments(second).count, 1)
        XCTAssertNil(try reader.tail(other, bytes: nil))
        XCTAssertEqual(try reader.tail(second, bytes: nil), Array("second\n".utf8))
    }

    func testAMissingDirectoryIsAnError() {
        XCTAssertThrowsError(try ConsoleLogReader(directory: fixture.directory + "/nope").consoles())
        XCTAssertEqual(ConsoleLogReader(directory: fixture.directory + "/nope").segments(key), [])
    }

    func testAnIndexWithEntriesPastTheFileIsHarmless() throws {
        try fixture.write(ConsoleLogFiles.live(key), index: nil, [(1, "one\ntwo\n")])
        let entries = [ConsoleLogIndex.Entry(offset: 0, milliseconds: 1000), ConsoleLogIndex.Entry(offset: 4, milliseconds: 2000),
                       ConsoleLogIndex.Entry(offset: 999, milliseconds: 3000)]
        try Data(ConsoleLogIndex.header + entries.flatMap(ConsoleLogIndex.encode))
            .write(to: URL(fileURLWithPath: fixture.directory + "/" + ConsoleLogFiles.index(key)))
        XCTAssertEqual(try text(2, nil), "two\n")
        XCTAssertEqual(try text(3, nil), "")
        XCTAssertEqual(try text(nil, 2), "one\n")
    }
}
