import Foundation
import XCTest

/// The README's "Locking a host down" flags, with the paths the systemd unit gives them: the admin socket in
/// /run/vspcd, which the unit's RuntimeDirectory=vspcd creates (mode 0750). Here <tmp>/run/vspcd stands for it.
final class LockDownTests: DaemonTestCase {
    func lockedDown(_ daemon: Daemon) throws -> String {
        let socket = daemon.directory.appendingPathComponent("run/vspcd/admin.sock").path
        daemon.adminUnixPath = socket
        daemon.extraArguments += ["--ssh", "127.0.0.1:\(try freePort())", "--telnet-ports", "off",
                                  "--proxy-allow", "10.20.0.0/24"]
        return socket
    }

    func testTheLockDownFlagsWorkInTheUnitsRuntimeDirectory() async throws {
        let daemon = try makeDaemon()
        let socket = try lockedDown(daemon)
        let folder = (socket as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o750])
        try await daemon.start()
        let mode = try FileManager.default.attributesOfItem(atPath: socket)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o660)
        let result = try Daemon.run("vspc", ["list", "--admin", "unix:\(socket)"])
        XCTAssertEqual(result.status, 0, result.err)
        try await daemon.stop()
    }

    func testAMissingSocketFolderIsAPlainSentence() async throws {
        let daemon = try makeDaemon()
        let socket = try lockedDown(daemon)
        let folder = (socket as NSString).deletingLastPathComponent
        do {
            try await daemon.start()
            XCTFail("vspcd started without the folder of its admin socket")
        } catch {}
        let log = daemon.log
        XCTAssertTrue(log.contains("cannot listen on the admin socket \(socket): its folder \(folder) does not exist; "
                                   + "create it (under systemd, the unit's RuntimeDirectory=vspcd creates /run/vspcd)"), log)
        XCTAssertFalse(log.contains("errno"), log)
        XCTAssertEqual(daemon.process?.terminationStatus, 2, log)
    }

    func testTheUnitCreatesTheRuntimeDirectory() throws {
        let unit = try String(contentsOf: InstallTests.repository.appendingPathComponent("contrib/systemd/vspcd.service"),
                              encoding: .utf8)
        let lines = Set(unit.split(separator: "\n").map(String.init))
        XCTAssertTrue(lines.contains("RuntimeDirectory=vspcd"), unit)
        XCTAssertTrue(lines.contains("RuntimeDirectoryMode=0750"), unit)
    }
}
