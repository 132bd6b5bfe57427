import Foundation
import VSPCCore
import VSPCSim
import VSPCStore
import XCTest

/// End to end (issue 16): the console logs the daemon keeps, what Nova fetches over HTTP, rotation, `vspc log`,
/// `--console-log-dir off` and the files' modes.
final class ConsoleLogTests: DaemonTestCase {
    /// The console log folder of a daemon that was given no `--console-log-dir`: `consoles/` beside the database.
    func logFolder(_ daemon: Daemon) -> String { daemon.directory.appendingPathComponent("consoles").path }

    /// A VM connected and listed (its port saved).
    func connectVM(_ daemon: Daemon, _ uuid: String, _ name: String) async throws -> SimulatedVM {
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: name)
        _ = try await daemon.port(of: uuid)
        return vm
    }

    // MARK: - 1. every byte, across a vMotion and a restart

    func testTheLogIsWhatTheVMPrintedAcrossAVMotionAndARestart() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(1601)
        let path = logFolder(daemon) + "/" + uuid
        let source = try await connectVM(daemon, uuid, "logged-1601")
        defer { source.close() }

        // 0xFF goes doubled on the wire (the simulator escapes it) and is kept once; NUL is kept as it is.
        var printed: [UInt8] = []
        let before: [UInt8] = [0xFF, 0x00, 0xFF, 0xFF, 0x00, 0x0D, 0x0A] + patternBytes(6000, seed: 1601)
        output(on: source, before)
        printed += before
        let first = try await waitForFile(path, count: printed.count)
        XCTAssertEqual(first, printed)

        // The source prints right up to the vMotion; the destination carries on after COMPLETE.
        let last: [UInt8] = Array("source, last words\r\n".utf8) + [0xFF, 0x00]
        source.output(last)
        printed += last
        let destination = try await source.migrate(port: daemon.proxyPort)
        defer { destination.close() }
        let after: [UInt8] = Array("destination\r\n".utf8) + patternBytes(5000, seed: 1602) + [0x00, 0xFF]
        output(on: destination, after)
        printed += after
        try await waitForEvents(daemon, uuid: uuid, "vmotion-complete") { $0.contains { $0.kind == "vmotion-complete" } }
        let migrated = try await waitForFile(path, count: printed.count)
        XCTAssertEqual(migrated.count, printed.count)
        XCTAssertEqual(migrated, printed)

        // A restart: the file is kept and appended to, never truncated.
        try await daemon.stop()
        try await destination.waitForClose(timeout: 30)
        XCTAssertEqual(fileBytes(path), printed)
        try await daemon.start()
        XCTAssertEqual(fileBytes(path), printed)
        let again = try await connectVM(daemon, uuid, "logged-1601")
        defer { again.close() }
        let later: [UInt8] = Array("after the restart\r\n".utf8) + [0xFF, 0xFF, 0x00] + patternBytes(3000, seed: 1603)
        output(on: again, later)
        printed += later
        let restarted = try await waitForFile(path, count: printed.count)
        XCTAssertEqual(restarted.count, printed.count)
        XCTAssertEqual(restarted, printed)
    }

    // MARK: - 2. what Nova reads

    func testNovaReadsTheFileAndTheHTTPListenerServesTheSameBytes() async throws {
        let httpPort = try freePort()
        let daemon = try await startDaemon(["--http", "127.0.0.1:\(httpPort)"])
        try await daemon.waitForHTTP()
        let uuid = testUUID(1602)
        let vm = try await connectVM(daemon, uuid, "nova-1602")
        defer { vm.close() }
        // More than the 100 KiB Nova reads, so that its tail is not the whole.
        let printed = patternBytes(150 * 1024 + 333, seed: 1604)
        output(on: vm, printed)

        // Nova's libvirt driver reads the last 100 KiB of DIR/<uuid as 32 hex digits>.
        let whole = try await waitForFile(logFolder(daemon) + "/" + uuid, count: printed.count)
        XCTAssertEqual(whole.count, printed.count)
        XCTAssertEqual(Array(whole.suffix(100 * 1024)), Array(printed.suffix(100 * 1024)))
        XCTAssertEqual(whole, printed)

        // Its serial_log_uri fetches /console_log/<uuid>, here in RFC 4122's spelling.
        let fetched = try await httpGet(port: httpPort, "/console_log/\(rfc4122(uuid))")
        XCTAssertEqual(fetched.status, 200)
        XCTAssertEqual(fetched.headers["content-type"], "application/octet-stream")
        XCTAssertEqual(fetched.body.count, printed.count)
        XCTAssertEqual(fetched.body, printed)
        let upper = try await httpGet(port: httpPort, "/console_log/\(uuid.uppercased())")
        XCTAssertEqual(upper.body, printed)

        let tail = try await httpGet(port: httpPort, "/console_log/\(uuid)?bytes=1000")
        XCTAssertEqual(tail.status, 200)
        XCTAssertEqual(tail.body, Array(printed.suffix(1000)))
        let none = try await httpGet(port: httpPort, "/console_log/\(uuid)?bytes=0")
        XCTAssertEqual(none.status, 200)
        XCTAssertEqual(none.body, [])

        let unknown = try await httpGet(port: httpPort, "/console_log/\(rfc4122(testUUID(1699)))")
        XCTAssertEqual(unknown.status, 404)
        XCTAssertEqual(unknown.text, "no console with that uuid\n")
    }

    // MARK: - 3. rotation at the limit

    func testRotationKeepsTheNewestFilesAndVspcLogPrintsThemInOrder() async throws {
        let daemon = try await startDaemon(["--console-log-max-bytes", "4096", "--console-log-keep", "3"])
        let uuid = testUUID(1603)
        let folder = logFolder(daemon)
        let vm = try await connectVM(daemon, uuid, "rotated-1603")
        defer { vm.close() }
        // Four files of 4096 bytes and the live one: the oldest 4096 bytes are past --console-log-keep.
        let printed = patternBytes(4 * 4096 + 1616, seed: 1605)
        output(on: vm, printed, piece: 1000)
        let kept = Array(printed.suffix(3 * 4096 + 1616))
        let names = ["\(uuid).3", "\(uuid).2", "\(uuid).1", uuid]
        // Done when the files hold the newest bytes (the live file may hold 1616 bytes once before, a rotation earlier).
        try await waitUntil("the rotated files and the live one to hold the newest bytes", timeout: 60) {
            names.flatMap { fileBytes(folder + "/" + $0) ?? [] } == kept
        }

        var files: [UInt8] = []
        for name in names {
            let bytes = try XCTUnwrap(fileBytes(folder + "/" + name), "\(name) is missing")
            XCTAssertLessThanOrEqual(bytes.count, 4096, name)
            files += bytes
        }
        XCTAssertEqual(names.map { fileBytes(folder + "/" + $0)?.count ?? -1 }, [4096, 4096, 4096, 1616])
        XCTAssertNil(fileBytes(folder + "/\(uuid).4"), "--console-log-keep 3 keeps three rotated files")
        XCTAssertEqual(files, kept)

        // `vspc log` prints the rotated files oldest first and then the live one, with the daemon running...
        let running = try vspc(["log", "rotated-1603", "--db", daemon.dbPath])
        XCTAssertEqual(running.status, 0, running.err)
        XCTAssertEqual([UInt8](running.out), kept)
        // ...and with it stopped.
        try await daemon.stop()
        let stopped = try vspc(["log", "rotated-1603", "--db", daemon.dbPath])
        XCTAssertEqual(stopped.status, 0, stopped.err)
        XCTAssertEqual([UInt8](stopped.out), kept)
    }

    // MARK: - 7. --console-log-dir off

    func testConsoleLogDirOffKeepsNoFilesAndTheHTTPListenerSaysSo() async throws {
        let httpPort = try freePort()
        let daemon = try await startDaemon(["--console-log-dir", "off", "--http", ":\(httpPort)"])
        try await daemon.waitForHTTP()
        let uuid = testUUID(1607)
        let vm = try await connectVM(daemon, uuid, "unlogged-1607")
        defer { vm.close() }
        let port = try await daemon.port(of: uuid)
        let client = try await SimulatedClient.connect(port: port)
        defer { client.close() }
        try await daemon.waitForList("a client") { $0.first { $0.uuid == uuid }?.clients == 1 }
        vm.output("not kept\r\n")
        try await client.waitForData(count: 10)
        try await barrier(vm, client)

        let reply = try await httpGet(port: httpPort, "/console_log/\(rfc4122(uuid))")
        XCTAssertEqual(reply.status, 404)
        XCTAssertEqual(reply.text, "console logs are off (--console-log-dir off)\n")
        try await daemon.stop()
        XCTAssertFalse(FileManager.default.fileExists(atPath: logFolder(daemon)), "a consoles/ folder was made")
    }

    // MARK: - 8. modes

    func testTheFilesAre0600AndTheFolder0700ByDefault() async throws {
        let daemon = try await startDaemon(["--console-log-max-bytes", "4096"])
        let folder = logFolder(daemon)
        XCTAssertEqual(try permissions(folder), 0o700)
        let uuid = testUUID(1608)
        let vm = try await connectVM(daemon, uuid, "private-1608")
        defer { vm.close() }
        let printed = patternBytes(5000, seed: 1608)
        output(on: vm, printed)
        try await waitUntil("a rotated file and the live one", timeout: 60) {
            fileBytes(folder + "/\(uuid).1")?.count == 4096 && fileBytes(folder + "/" + uuid)?.count == 5000 - 4096
        }
        try await daemon.stop()
        let names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        XCTAssertEqual(names, [uuid, "\(uuid).1", "\(uuid).1.idx", "\(uuid).idx"])
        for name in names {
            XCTAssertEqual(try permissions(folder + "/" + name), 0o600, name)
        }
        XCTAssertEqual(try permissions(folder), 0o700)
    }

    // MARK: - SIGHUP, for logrotate

    func testSIGHUPReopensTheFilesAfterLogrotateMovedThem() async throws {
        let daemon = try await startDaemon()
        let uuid = testUUID(1609)
        let folder = logFolder(daemon)
        let path = folder + "/" + uuid
        let vm = try await connectVM(daemon, uuid, "rotated-1609")
        defer { vm.close() }
        let before = Array("before logrotate\r\n".utf8) + [0xFF, 0x00]
        output(on: vm, before)
        let written = try await waitForFile(path, count: before.count)
        XCTAssertEqual(written, before)

        // logrotate (dateext) moves the file away; the daemon still writes to the moved file until SIGHUP.
        let moved = folder + "/" + uuid + "-20261202"
        XCTAssertEqual(rename(path, moved), 0)
        kill(daemon.process!.processIdentifier, SIGHUP)
        _ = try await daemon.waitForLog("SIGHUP: the console log files are reopened by name")
        let after = Array("after logrotate\r\n".utf8) + [0x00, 0xFF]
        output(on: vm, after)
        let reopened = try await waitForFile(path, count: after.count)
        XCTAssertEqual(reopened, after, "a new file, by the same name, with only the new output")
        XCTAssertEqual(fileBytes(moved), before, "the moved file keeps what it had")
        // `vspc log` reads the new file, and its time index started afresh with it.
        let log = try Daemon.runTool("vspc", ["log", uuid, "--db", daemon.dbPath])
        XCTAssertEqual(log.status, 0, log.err)
        XCTAssertEqual(Array(log.out), after)
    }
}
