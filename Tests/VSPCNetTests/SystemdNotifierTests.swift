import Foundation
import NIOPosix
import VSPCNet
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A datagram socket playing systemd's notify socket.
final class NotifySocket {
    let fd: Int32
    let name: String

    /// Binds `path`; a name starting with "@" is abstract.
    init(_ name: String) throws {
        self.name = name
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard rc == 0 else { throw NSError(domain: "bind", code: Int(errno)) }
        var timeout = timeval(tv_sec: 60, tv_usec: 0) // a deadline for a test that would otherwise hang
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram, or nil after a minute without one.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n >= 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
    }

    /// Datagrams until one equals or starts with `first` (skipping others such as WATCHDOG=1).
    func receive(until prefix: String) -> String? {
        while let message = receive() {
            if message.hasPrefix(prefix) { return message }
        }
        return nil
    }

    deinit { close(fd) }
}

final class SystemdNotifierTests: XCTestCase {
    func testNothingWithoutNotifySocket() {
        let notifier = SystemdNotifier(environment: [:])
        XCTAssertFalse(notifier.isEnabled)
        XCTAssertNil(notifier.watchdogInterval)
        XCTAssertFalse(notifier.ready())
        XCTAssertFalse(SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative/path"]).isEnabled)
        XCTAssertFalse(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)]).isEnabled)
        XCTAssertNil(SystemdNotifier(environment: ["WATCHDOG_USEC": "1000000"]).watchdogInterval, "no socket, no watchdog")
    }

    func testReadyAndStoppingReachAPathSocket() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("notify.sock").path
        let socket = try NotifySocket(path)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": path])
        XCTAssertTrue(notifier.isEnabled)
        XCTAssertTrue(notifier.ready())
        XCTAssertEqual(socket.receive(), "READY=1")
        XCTAssertTrue(notifier.ready(status: "serving\nX=1"))
        XCTAssertEqual(socket.receive(), "READY=1\nSTATUS=serving X=1")
        XCTAssertTrue(notifier.stopping())
        XCTAssertEqual(socket.receive(), "STOPPING=1")
    }

    func testAbstractSocket() throws {
        let name = "@vspcd-notify-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let socket = try NotifySocket(name)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": name])
        XCTAssertTrue(notifier.ready())
        XCTAssertEqual(socket.receive(), "READY=1")
    }

    func testWatchdogIntervalIsHalfOfWatchdogUsecForThisProcess() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("notify.sock").path
        let me = getpid()
        XCTAssertEqual(SystemdNotifier(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"]).watchdogInterval, 15)
        XCTAssertEqual(SystemdNotifier(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(me)"]).watchdogInterval, 15)
        XCTAssertNil(SystemdNotifier(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(me + 1)"]).watchdogInterval)
        XCTAssertNil(SystemdNotifier(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "0"]).watchdogInterval)
        XCTAssertNil(SystemdNotifier(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "soon"]).watchdogInterval)

        let socket = try NotifySocket(path)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"])
        let task = try XCTUnwrap(notifier.startWatchdog(on: group.next()))
        XCTAssertEqual(socket.receive(), "WATCHDOG=1")
        XCTAssertEqual(socket.receive(), "WATCHDOG=1")
        task.cancel()
        XCTAssertNil(SystemdNotifier(environment: ["NOTIFY_SOCKET": path]).startWatchdog(on: group.next()))
    }

    func testASendToNobodyFailsQuietly() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(UUID().uuidString)")
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": dir.appendingPathComponent("none.sock").path])
        XCTAssertTrue(notifier.isEnabled)
        XCTAssertFalse(notifier.ready())
    }
}
