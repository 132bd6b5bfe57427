import Foundation
import XCTest
@testable import VSPCStore
import VSPCCore

/// The console log writer when the disk or the folder fails it, when its queue is full, and at its limits.
final class ConsoleLogWriterFailureTests: ConsoleLogTestCase {
    func testAFailedWriteKeepsTheBytesUntilTheCauseIsGone() throws {
        let writer = try makeWriter()
        // A directory where the live file belongs: opening it fails.
        try FileManager.default.createDirectory(atPath: path(vm.uuid), withIntermediateDirectories: false)
        writer.append(vm, Array("kept ".utf8), at: t0)
        writer.append(other, Array("unaffected".utf8), at: t0)
        writer.flush()
        var stats = writer.statistics()
        XCTAssertGreaterThan(stats.writeErrors, 0)
        XCTAssertEqual(stats.queuedBytes, 5)
        XCTAssertEqual(stats.lostBytes, 0)
        XCTAssertEqual(contents(other.uuid), Array("unaffected".utf8))

        writer.append(vm, Array("for a retry".utf8), at: t0 + 1)
        writer.flush()
        XCTAssertEqual(writer.statistics().queuedBytes, 16)

        try FileManager.default.removeItem(atPath: path(vm.uuid))
        writer.flush()
        XCTAssertEqual(contents(vm.uuid), Array("kept for a retry".utf8))
        XCTAssertEqual(entries(vm.uuid + ".idx"), [entry(0, t0), entry(5, t0 + 1)])
        stats = writer.statistics()
        XCTAssertEqual(stats.queuedBytes, 0)
        XCTAssertEqual(stats.lostBytes, 0)
        XCTAssertEqual(stats.writtenBytes, 26)
    }

    func testAFailingDiskIsLoggedOnceAMinuteAndItsRecoveryOnce() throws {
        let writer = try makeWriter()
        try FileManager.default.createDirectory(atPath: path(vm.uuid), withIntermediateDirectories: false)
        for i in 0..<5 {
            writer.append(vm, Array("line \(i)\n".utf8), at: t0)
            writer.flush()
        }
        XCTAssertGreaterThanOrEqual(writer.statistics().writeErrors, 5)
        try FileManager.default.removeItem(atPath: path(vm.uuid))
        writer.flush()
        writer.append(vm, Array("more\n".utf8), at: t0)
        writer.flush()
        let lines = log.lines
        XCTAssertEqual(lines.map(\.level), [.error, .notice])
        XCTAssertEqual(lines.first?.message, "console logs: cannot open \(path(vm.uuid)): Is a directory; "
                       + "0 bytes lost since the last report, 7 bytes queued, 1 failed writes")
        XCTAssertEqual(lines.last?.message, "console logs: writing again (0 bytes lost in all since start)")
    }

    func testAFIFOAtThePathFailsWithoutBlocking() throws {
        let writer = try makeWriter()
        XCTAssertEqual(mkfifo(path(vm.uuid), 0o600), 0)
        writer.append(vm, Array("not into a pipe".utf8), at: t0)
        writer.flush()
        XCTAssertGreaterThan(writer.statistics().writeErrors, 0)
        XCTAssertEqual(writer.statistics().queuedBytes, 15)
        try FileManager.default.removeItem(atPath: path(vm.uuid))
        writer.flush()
        XCTAssertEqual(contents(vm.uuid), Array("not into a pipe".utf8))
    }

    func testBytesPastTheRetryBoundAreLostAtOnePlace() throws {
        var tuning = ConsoleLogWriter.Tuning()
        tuning.maxRetryBytesPerConsole = 10
        let writer = try makeWriter(tuning: tuning)
        try FileManager.default.createDirectory(atPath: path(vm.uuid), withIntermediateDirectories: false)
        writer.append(vm, Array("01234567".utf8), at: t0)
        writer.flush()
        writer.append(vm, Array("89abcdef".utf8), at: t0)
        writer.flush()
        XCTAssertEqual(writer.statistics().lostBytes, 6)
        XCTAssertEqual(writer.statistics().queuedBytes, 10)
        try FileManager.default.removeItem(atPath: path(vm.uuid))
        writer.append(vm, Array("ABC".utf8), at: t0)
        writer.flush()
        // The oldest bytes are kept; the newest ones past the bound are the gap.
        XCTAssertEqual(contents(vm.uuid), Array("0123456789ABC".utf8))
        XCTAssertEqual(writer.statistics().queuedBytes, 0)
    }

    func testOutputPastTheQueueBoundIsDroppedAndCounted() throws {
        var tuning = ConsoleLogWriter.Tuning()
        tuning.maxQueuedBytes = 10
        let writer = try makeWriter(tuning: tuning)
        try FileManager.default.createDirectory(atPath: path(vm.uuid), withIntermediateDirectories: false)
        writer.append(vm, Array("12345678".utf8), at: t0)
        writer.flush() // the bytes wait for a retry, still queued
        writer.append(vm, Array("dropped".utf8), at: t0)
        writer.append(vm, Array("ab".utf8), at: t0)
        XCTAssertEqual(writer.statistics().lostBytes, 7)
        XCTAssertEqual(writer.statistics().queuedBytes, 10)
        try FileManager.default.removeItem(atPath: path(vm.uuid))
        writer.flush()
        XCTAssertEqual(contents(vm.uuid), Array("12345678ab".utf8))
    }

    func testCloseWritesWhatIsQueuedAndLaterCallsAreHarmless() throws {
        let writer = try makeWriter()
        writer.append(vm, Array("last words".utf8), at: t0)
        writer.close()
        XCTAssertEqual(contents(vm.uuid), Array("last words".utf8))
        writer.close()
        writer.append(vm, Array(" ignored".utf8), at: t0)
        writer.reopen()
        writer.flush()
        XCTAssertEqual(contents(vm.uuid), Array("last words".utf8))
        XCTAssertEqual(writer.statistics().writtenBytes, 10)
        XCTAssertEqual(writer.statistics().queuedBytes, 0)
        XCTAssertEqual(openDescriptorsInFolder(), 0)
    }

    func testCloseCountsWhatItCouldNotWriteAsLost() throws {
        let writer = try makeWriter()
        try FileManager.default.createDirectory(atPath: path(vm.uuid), withIntermediateDirectories: false)
        writer.append(vm, Array("nowhere".utf8), at: t0)
        writer.close()
        XCTAssertEqual(writer.statistics().lostBytes, 7)
        XCTAssertEqual(writer.statistics().queuedBytes, 0)
    }

    func testOpenFilesAreBounded() throws {
        var tuning = ConsoleLogWriter.Tuning()
        tuning.maxOpenFiles = 4
        let writer = try makeWriter(tuning: tuning)
        let keys = (0..<6).map { ConsoleKey(uuid: String(format: "%032lx", $0 + 1), label: "") }
        var expected: [ConsoleKey: [UInt8]] = [:]
        for round in 0..<5 {
            for (i, key) in keys.enumerated() {
                let bytes = Array("\(round):\(i);".utf8)
                writer.append(key, bytes, at: t0 + Double(round))
                expected[key, default: []] += bytes
                writer.flush()
                XCTAssertLessThanOrEqual(openDescriptorsInFolder(), 4)
            }
        }
        for key in keys {
            XCTAssertEqual(contents(key.uuid), expected[key])
            XCTAssertEqual(entries(key.uuid + ".idx")?.map(\.offset), [0, 4, 8, 12, 16])
        }
    }

    func testAnUnusableFolderIsAClearError() throws {
        createFileOrFail(atPath: path("file"), contents: nil)
        XCTAssertThrowsError(try makeWriter(directory: path("file"))) { error in
            XCTAssertEqual(error as? ConsoleLogWriterError, .notADirectory(path: path("file")))
        }
        XCTAssertThrowsError(try makeWriter(directory: path("file/consoles"))) { error in
            XCTAssertEqual("\(error)", "cannot create the console log folder \(path("file/consoles")): Not a directory")
        }
    }

    func testHostileDatesAndEmptyChunksDoNotCrash() throws {
        let writer = try makeWriter()
        writer.append(vm, [], at: t0)
        writer.append(vm, [0xFF], at: Date(timeIntervalSince1970: .infinity))
        writer.append(vm, [0x00], at: Date(timeIntervalSince1970: -.infinity))
        writer.append(vm, [0x01], at: Date(timeIntervalSince1970: .nan))
        writer.flush()
        XCTAssertEqual(contents(vm.uuid), [0xFF, 0x00, 0x01])
    }

    func testAKeyThatIsNotAConsoleNameGetsNoFile() throws {
        let writer = try makeWriter(directory: path("logs"))
        for uuid in ["../escape", "0123456789ABCDEF0123456789ABCDEF", "", "0123456789abcdef0123456789abcdef/x"] {
            writer.append(ConsoleKey(uuid: uuid, label: ""), [1, 2, 3], at: t0)
        }
        writer.flush()
        XCTAssertEqual(names(), ["logs"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path("logs")), [])
        XCTAssertEqual(writer.statistics().lostBytes, 12)
        XCTAssertEqual(writer.statistics().queuedBytes, 0)
    }

    /// A real full disk: a small tmpfs (needs root and mount; skipped where they are missing).
    func testAFullDiskDelaysTheBytesUntilThereIsRoom() throws {
        let mountPoint = path("tmpfs")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: false)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint]
        mount.standardError = FileHandle.nullDevice
        do { try mount.run() } catch { throw XCTSkip("cannot run mount: \(error)") }
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else { throw XCTSkip("cannot mount a tmpfs here") }
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [mountPoint]
            try? umount.run()
            umount.waitUntilExit()
        }
        let folder = mountPoint + "/consoles"
        let writer = try makeWriter(directory: folder)
        defer { writer.close() } // before the unmount
        // Fill the file system.
        let filler = mountPoint + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let block = [UInt8](repeating: 0x55, count: 4096)
        while block.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        close(fd)

        let input = sampleBytes(20_000, seed: 11)
        writer.append(vm, Array(input[..<12_000]), at: t0)
        writer.flush()
        XCTAssertGreaterThan(writer.statistics().writeErrors, 0)
        writer.append(vm, Array(input[12_000...]), at: t0 + 2)
        writer.flush()
        XCTAssertEqual(writer.statistics().lostBytes, 0)

        XCTAssertEqual(unlink(filler), 0)
        writer.flush()
        XCTAssertEqual(FileManager.default.contents(atPath: folder + "/" + vm.uuid).map { [UInt8]($0) }, input)
        let stats = writer.statistics()
        XCTAssertEqual(stats.queuedBytes, 0)
        XCTAssertEqual(stats.writtenBytes, UInt64(input.count))
    }
}
