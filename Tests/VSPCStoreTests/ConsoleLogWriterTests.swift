import Foundation
import XCTest
@testable import VSPCStore
import VSPCCore

/// The console log writer: bytes exact, names, the time index, rotation, modes, retention and logrotate.
final class ConsoleLogWriterTests: ConsoleLogTestCase {
    func testEveryByteIsWrittenExactlyAcrossManyAppends() throws {
        let writer = try makeWriter()
        let input = [0x00, 0xFF, 0x0D, 0x0A, 0xFF, 0xFF, 0x00] + sampleBytes(300_000)
        var at = 0, size = 1
        while at < input.count {
            let end = min(input.count, at + size)
            writer.append(vm, Array(input[at..<end]), at: t0)
            at = end
            size = size % 997 + 13
        }
        writer.flush()
        XCTAssertEqual(contents(vm.uuid), input)
        let stats = writer.statistics()
        XCTAssertEqual(stats.writtenBytes, UInt64(input.count))
        XCTAssertEqual(stats.queuedBytes, 0)
        XCTAssertEqual(stats.lostBytes, 0)
        XCTAssertEqual(stats.writeErrors, 0)
        XCTAssertEqual(stats.rotations, 0)
        XCTAssertEqual(entries(vm.uuid + ".idx"), [entry(0, t0)])
    }

    func testEachConsoleHasItsOwnFileNamedByUUIDAndLabel() throws {
        let writer = try makeWriter()
        let labelled = ConsoleKey(uuid: vm.uuid, label: "com/2")
        writer.append(vm, Array("first port".utf8), at: t0)
        writer.append(other, Array("another vm".utf8), at: t0)
        writer.append(labelled, Array("second port".utf8), at: t0)
        writer.append(vm, Array(" again".utf8), at: t0)
        writer.flush()
        XCTAssertEqual(names(), [
            "0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef.com%2F2",
            "0123456789abcdef0123456789abcdef.com%2F2.idx", "0123456789abcdef0123456789abcdef.idx",
            "fedcba9876543210fedcba9876543210", "fedcba9876543210fedcba9876543210.idx",
        ])
        XCTAssertEqual(contents(vm.uuid), Array("first port again".utf8))
        XCTAssertEqual(contents(other.uuid), Array("another vm".utf8))
        XCTAssertEqual(contents(ConsoleLogFiles.live(labelled)), Array("second port".utf8))
    }

    func testARestartedWriterAppendsToTheFileAndIndex() throws {
        let first = try makeWriter()
        first.append(vm, Array("before restart\n".utf8), at: t0)
        first.close()
        let second = try makeWriter()
        second.append(vm, Array("after restart\n".utf8), at: t0 + 60)
        second.flush()
        XCTAssertEqual(contents(vm.uuid), Array("before restart\nafter restart\n".utf8))
        XCTAssertEqual(entries(vm.uuid + ".idx"), [entry(0, t0), entry(15, t0 + 60)])
    }

    func testIndexGainsAnEntryWhenOutputComesASecondOrMoreAfterTheLast() throws {
        let writer = try makeWriter()
        writer.append(vm, Array("aaaa".utf8), at: t0)
        writer.append(vm, Array("bb".utf8), at: t0 + 0.5) // within the second: no entry
        writer.append(vm, Array("cc".utf8), at: t0 + 0.999)
        writer.flush()
        writer.append(vm, Array("ddd".utf8), at: t0 + 1) // a second after the entry
        writer.append(vm, Array("e".utf8), at: t0 + 1.2)
        writer.append(vm, Array("ff".utf8), at: t0 + 5)
        writer.append(vm, Array("g".utf8), at: t0 + 5)
        writer.flush()
        XCTAssertEqual(contents(vm.uuid), Array("aaaabbccdddeffg".utf8))
        XCTAssertEqual(entries(vm.uuid + ".idx"), [entry(0, t0), entry(8, t0 + 1), entry(12, t0 + 5)])
        XCTAssertEqual(contents(vm.uuid + ".idx")?.count, ConsoleLogIndex.headerSize + 3 * ConsoleLogIndex.entrySize)
    }

    func testRotationAtTheLimitKeepsTheNewestFiles() throws {
        let writer = try makeWriter(maxBytes: 100, keep: 2)
        let input = sampleBytes(450, seed: 7)
        for (i, start) in stride(from: 0, to: input.count, by: 7).enumerated() {
            writer.append(vm, Array(input[start..<min(input.count, start + 7)]), at: t0 + Double(i))
        }
        writer.flush()
        XCTAssertEqual(names(), [vm.uuid, vm.uuid + ".1", vm.uuid + ".1.idx", vm.uuid + ".2", vm.uuid + ".2.idx",
                                 vm.uuid + ".idx"])
        XCTAssertEqual(contents(vm.uuid + ".2")?.count, 100)
        XCTAssertEqual(contents(vm.uuid + ".1")?.count, 100)
        XCTAssertEqual(contents(vm.uuid)?.count, 50)
        let kept = (contents(vm.uuid + ".2") ?? []) + (contents(vm.uuid + ".1") ?? []) + (contents(vm.uuid) ?? [])
        XCTAssertEqual(kept, Array(input[200...]))
        // Each file's index starts at its own first byte: byte 200 of the input came in chunk 28 (at t0 + 28 s).
        XCTAssertEqual(entries(vm.uuid + ".2.idx")?.first, entry(0, t0 + 28))
        XCTAssertEqual(entries(vm.uuid + ".1.idx")?.first, entry(0, t0 + 42))
        XCTAssertEqual(entries(vm.uuid + ".idx")?.first, entry(0, t0 + 57))
        XCTAssertEqual(writer.statistics().rotations, 4)
        XCTAssertEqual(writer.statistics().writtenBytes, 450)
    }

    func testAChunkLargerThanTheLimitIsSplitAcrossFiles() throws {
        let writer = try makeWriter(maxBytes: 100, keep: 5)
        let input = sampleBytes(250, seed: 3)
        writer.append(vm, input, at: t0)
        writer.flush()
        XCTAssertEqual(contents(vm.uuid + ".2"), Array(input[0..<100]))
        XCTAssertEqual(contents(vm.uuid + ".1"), Array(input[100..<200]))
        XCTAssertEqual(contents(vm.uuid), Array(input[200...]))
        XCTAssertFalse(exists(vm.uuid + ".3"))
        XCTAssertEqual(writer.statistics().rotations, 2)
    }

    func testKeepZeroStartsTheLiveFileAgain() throws {
        let writer = try makeWriter(maxBytes: 100, keep: 0)
        let input = sampleBytes(250, seed: 5)
        writer.append(vm, Array(input[0..<100]), at: t0)
        writer.flush()
        XCTAssertEqual(contents(vm.uuid), Array(input[0..<100])) // exactly the limit: not rotated yet
        writer.append(vm, Array(input[100...]), at: t0 + 2)
        writer.flush()
        XCTAssertEqual(names(), [vm.uuid, vm.uuid + ".idx"])
        XCTAssertEqual(contents(vm.uuid), Array(input[200...]))
        XCTAssertEqual(entries(vm.uuid + ".idx"), [entry(0, t0 + 2)])
        XCTAssertEqual(writer.statistics().rotations, 2)
    }

    func testFilesArePrivateWhateverTheUmask() throws {
        let old = umask(0)
        defer { umask(old) }
        let folder = dir + "/new/consoles"
        let writer = try makeWriter(directory: folder)
        writer.append(vm, [1, 2, 3], at: t0)
        writer.flush()
        XCTAssertEqual(mode("new/consoles"), "0700")
        XCTAssertEqual(mode("new/consoles/" + vm.uuid), "0600")
        XCTAssertEqual(mode("new/consoles/" + vm.uuid + ".idx"), "0600")
    }

    func testFilesAreGroupReadableWithAGroup() throws {
        let old = umask(0o077)
        defer { umask(old) }
        let group = UInt32(getgid())
        // An existing file with a wider mode is set to the settings' mode when opened.
        try FileManager.default.createDirectory(atPath: path("grp"), withIntermediateDirectories: true)
        let folder = dir + "/grp"
        createFileOrFail(atPath: folder + "/" + vm.uuid, contents: Data("old ".utf8),
                                       attributes: [.posixPermissions: 0o666])
        let writer = try makeWriter(groupID: group, directory: folder)
        writer.append(vm, [4, 5], at: t0)
        writer.append(other, [6], at: t0)
        writer.flush()
        XCTAssertEqual(mode("grp/" + vm.uuid), "0640")
        XCTAssertEqual(mode("grp/" + other.uuid), "0640")
        XCTAssertEqual(mode("grp/" + other.uuid + ".idx"), "0640")
        XCTAssertEqual(contents("grp/" + vm.uuid), Array("old ".utf8) + [4, 5])
        var st = stat()
        XCTAssertEqual(stat(path("grp/" + other.uuid), &st), 0)
        XCTAssertEqual(st.st_gid, gid_t(group))

        let created = dir + "/made"
        _ = try makeWriter(groupID: group, directory: created)
        XCTAssertEqual(mode("made"), "0750")
    }

    func testRetentionDeletesTheFilesOfSilentConsolesOnly() throws {
        let old = Date().addingTimeInterval(-40 * 86_400)
        let recent = Date().addingTimeInterval(-10 * 86_400)
        let rotatedOnly = ConsoleKey(uuid: "00000000000000000000000000000001", label: "")
        let freshLive = ConsoleKey(uuid: "00000000000000000000000000000002", label: "")
        let labelled = ConsoleKey(uuid: other.uuid, label: "com2")
        let doomed = [vm.uuid, vm.uuid + ".idx", vm.uuid + ".1", vm.uuid + ".1.idx", rotatedOnly.uuid + ".1",
                      rotatedOnly.uuid + ".1.idx", rotatedOnly.uuid + ".3", ConsoleLogFiles.live(labelled)]
        let kept = [freshLive.uuid, freshLive.uuid + ".1", freshLive.uuid + ".idx", other.uuid,
                    "notes.txt", "0123456789abcdef0123456789abcde", vm.uuid + ".1.gz", vm.uuid + ".x.y"]
        for name in doomed + kept {
            createFileOrFail(atPath: path(name), contents: Data("x".utf8))
            try setModified(name, old)
        }
        try setModified(freshLive.uuid, recent) // its rotated file is old, its live one is not
        try setModified(other.uuid, recent) // the unlabelled port of a VM whose labelled port is silent
        try FileManager.default.createDirectory(atPath: path(vm.uuid + ".2"), withIntermediateDirectories: false)
        try setModified(vm.uuid + ".2", old)

        let writer = try makeWriter(maxAgeDays: 30)
        writer.flush()
        XCTAssertEqual(names(), (kept + [vm.uuid + ".2"]).sorted())
        XCTAssertEqual(writer.statistics().writeErrors, 0)
    }

    func testTheWriterWritesOnItsOwnAndRetentionRepeats() throws {
        var tuning = ConsoleLogWriter.Tuning()
        tuning.retentionInterval = 0.05
        let writer = try makeWriter(maxAgeDays: 1, tuning: tuning)
        writer.append(vm, Array("no flush needed".utf8), at: t0)
        waitUntil("the output is written") { contents(vm.uuid) == Array("no flush needed".utf8) }
        createFileOrFail(atPath: path(other.uuid), contents: Data("old".utf8))
        try setModified(other.uuid, Date().addingTimeInterval(-2 * 86_400))
        waitUntil("the silent console's file is deleted") { !exists(other.uuid) }
        XCTAssertEqual(names(), [vm.uuid, vm.uuid + ".idx"])
    }

    func testRetentionZeroKeepsEverything() throws {
        createFileOrFail(atPath: path(vm.uuid), contents: Data("x".utf8))
        try setModified(vm.uuid, Date(timeIntervalSince1970: 0))
        let writer = try makeWriter(maxAgeDays: 0)
        writer.flush()
        XCTAssertEqual(names(), [vm.uuid])
    }

    func testReopenAfterLogrotateMovedTheFileStartsAFreshFileAndIndex() throws {
        let writer = try makeWriter()
        writer.append(vm, Array("before rotation\n".utf8), at: t0)
        writer.flush()
        try FileManager.default.moveItem(atPath: path(vm.uuid), toPath: path("rotated.log"))
        writer.append(vm, Array("still the old file\n".utf8), at: t0 + 0.5)
        writer.flush()
        writer.reopen()
        writer.append(vm, Array("new file\n".utf8), at: t0 + 10)
        writer.flush()
        XCTAssertEqual(contents("rotated.log"), Array("before rotation\nstill the old file\n".utf8))
        XCTAssertEqual(contents(vm.uuid), Array("new file\n".utf8))
        XCTAssertEqual(entries(vm.uuid + ".idx"), [entry(0, t0 + 10)])
    }

    func testCopytruncateRestartsTheIndex() throws {
        let writer = try makeWriter()
        writer.append(vm, Array("0123456789".utf8), at: t0)
        writer.append(vm, Array("abc".utf8), at: t0 + 3)
        writer.flush()
        XCTAssertEqual(truncate(path(vm.uuid), 0), 0)
        writer.reopen()
        writer.append(vm, Array("after".utf8), at: t0 + 4)
        writer.flush()
        XCTAssertEqual(contents(vm.uuid), Array("after".utf8))
        XCTAssertEqual(entries(vm.uuid + ".idx"), [entry(0, t0 + 4)])
        // Without a reopen too: the writer notices the file shrank.
        XCTAssertEqual(truncate(path(vm.uuid), 0), 0)
        writer.append(vm, Array("again".utf8), at: t0 + 4.5)
        writer.flush()
        XCTAssertEqual(contents(vm.uuid), Array("again".utf8))
        XCTAssertEqual(entries(vm.uuid + ".idx"), [entry(0, t0 + 4.5)])
    }

    func testAStaleIndexIsStartedAgain() throws {
        // An index whose last entry lies past the data file's end belongs to another file.
        createFileOrFail(atPath: path(vm.uuid), contents: Data("abc".utf8))
        let stale = ConsoleLogIndex.header + ConsoleLogIndex.encode(entry(0, t0)) + ConsoleLogIndex.encode(entry(50, t0 + 9))
        createFileOrFail(atPath: path(vm.uuid + ".idx"), contents: Data(stale))
        // A torn last entry (a crash mid-write) is cut off; the entries before it stay.
        createFileOrFail(atPath: path(other.uuid), contents: Data("xyz".utf8))
        let torn = ConsoleLogIndex.header + ConsoleLogIndex.encode(entry(0, t0)) + [1, 2, 3]
        createFileOrFail(atPath: path(other.uuid + ".idx"), contents: Data(torn))
        let writer = try makeWriter()
        writer.append(vm, Array("def".utf8), at: t0 + 20)
        writer.append(other, Array("uvw".utf8), at: t0 + 20)
        writer.flush()
        XCTAssertEqual(entries(vm.uuid + ".idx"), [entry(3, t0 + 20)])
        XCTAssertEqual(contents(other.uuid + ".idx")?.count, ConsoleLogIndex.headerSize + 2 * ConsoleLogIndex.entrySize)
        XCTAssertEqual(entries(other.uuid + ".idx"), [entry(0, t0), entry(3, t0 + 20)])
    }

    /// Random chunks, times and flushes against a model of the files: the bytes across `.n`…`.1`, live are the
    /// input, every file but the live one is exactly the limit, and each index holds the entries the rule gives.
    func testRandomOutputMatchesAModelOfFilesAndIndexes() throws {
        var random = SeededRandom(seed: 42)
        for round in 0..<4 {
            let maxBytes = 37 + Int(random.next() % 400)
            let sub = "round\(round)"
            let writer = try makeWriter(maxBytes: maxBytes, keep: 64, directory: path(sub))
            var input: [UInt8] = []
            var files: [[UInt8]] = [[]]
            var indexes: [[ConsoleLogIndex.Entry]] = [[]]
            var milliseconds: Int64 = 1_700_000_000_000
            while input.count < maxBytes * 40 {
                let chunk = sampleBytes(Int(random.next() % 300) + 1, seed: random.next())
                milliseconds += Int64(random.next() % 1500)
                writer.append(vm, chunk, at: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
                input += chunk
                var rest = chunk[...]
                while !rest.isEmpty {
                    if files[files.count - 1].count == maxBytes {
                        files.append([])
                        indexes.append([])
                    }
                    let piece = rest.prefix(maxBytes - files[files.count - 1].count)
                    if ConsoleLogIndex.needsEntry(after: indexes[indexes.count - 1].last, at: milliseconds) {
                        indexes[indexes.count - 1].append(
                            .init(offset: UInt64(files[files.count - 1].count), milliseconds: milliseconds))
                    }
                    files[files.count - 1] += piece
                    rest = rest.dropFirst(piece.count)
                }
                if random.next() % 10 == 0 { writer.flush() }
            }
            writer.flush()
            for (n, expected) in files.reversed().enumerated() {
                let name = sub + "/" + (n == 0 ? vm.uuid : "\(vm.uuid).\(n)")
                XCTAssertEqual(contents(name), expected, name)
                XCTAssertEqual(entries(name + ".idx"), indexes[files.count - 1 - n], name)
            }
            XCTAssertEqual(writer.statistics().rotations, UInt64(files.count - 1))
            XCTAssertEqual(writer.statistics().writtenBytes, UInt64(input.count))
        }
    }
}

/// A small deterministic generator for tests.
struct SeededRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 17
    }
}
