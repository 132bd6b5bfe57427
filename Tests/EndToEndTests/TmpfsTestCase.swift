import Foundation
import XCTest

/// A daemon with a small tmpfs of its own at `mountPoint`, for the tests of a full disk (the database's, the
/// console logs'). The tmpfs needs root: without it the test is skipped, and under CI it fails instead.
class TmpfsTestCase: DaemonTestCase {
    var mountPoint: URL!
    var daemon: Daemon!
    /// The tmpfs's size, as mount's `size=` takes it.
    var tmpfsSize: String { "4m" }

    override func setUp() async throws {
        try await super.setUp()
        daemon = try makeDaemon()
        mountPoint = daemon.directory.appendingPathComponent("disk")
        try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=\(tmpfsSize)", "tmpfs", mountPoint.path]
        mount.standardError = FileHandle.nullDevice
        try mount.run()
        mount.waitUntilExit()
        if mount.terminationStatus != 0 {
            mountPoint = nil
            // Under CI the test fails here (a thrown error), and its body does not run without its disk.
            if ProcessInfo.processInfo.environment["CI"] != nil {
                throw TmpfsUnavailable()
            }
            daemon.cleanup()
            throw XCTSkip("cannot mount a tmpfs here (needs root)")
        }
    }

    /// The daemon goes before its disk: the base class then prints its log (kept outside the tmpfs) and removes it.
    override func tearDown() async throws {
        if let p = daemon?.process, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        if let mountPoint {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = ["-l", mountPoint.path]
            try? umount.run()
            umount.waitUntilExit()
        }
        try await super.tearDown()
    }

    /// Fills the file system with one file until it refuses more.
    func fill(_ path: String) {
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0x55, count: 4096)
        while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
    }
}

struct TmpfsUnavailable: Error, CustomStringConvertible {
    var description: String { "cannot mount a tmpfs under CI: the full-disk tests need root" }
}
