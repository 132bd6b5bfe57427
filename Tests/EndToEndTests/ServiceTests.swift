import Foundation
import VSPCCore
import VSPCClient
import VSPCSim
import XCTest

/// Collects the datagrams sent to a Unix socket, as systemd's notify socket would, on its own thread.
final class NotifyListener: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [String] = []

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard rc == 0 else { throw SimError("cannot bind \(path): errno \(errno)") }
        let socketFD = self.fd
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = recv(socketFD, &buffer, buffer.count, 0)
                if n < 0 { if errno == EINTR { continue } else { return } }
                let text = String(decoding: buffer[0..<n], as: UTF8.self)
                lock.lock(); received.append(text); lock.unlock()
            }
        }
    }

    var messages: [String] { lock.lock(); defer { lock.unlock() }; return received }

    /// Waits until a message satisfies `condition`; returns the messages so far.
    @discardableResult
    func wait(for what: String, timeout: Double = 30, _ condition: ([String]) -> Bool) async throws -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let now = messages
            if condition(now) { return now }
            if Date() > deadline { throw SimError("no \(what) on the notify socket; got \(now)") }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
    }

    func close() { shutdown(fd, Int32(SHUT_RDWR)); Glibc.close(fd) }
}

final class ServiceTests: DaemonTestCase {
    func testSystemdNotifyReadyWatchdogAndStopping() async throws {
        let daemon = try makeDaemon()
        let listener = try NotifyListener(path: daemon.directory.appendingPathComponent("notify.sock").path)
        defer { listener.close() }
        daemon.environment = ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "200000"]
        try await daemon.start()
        try await listener.wait(for: "READY=1") { $0.contains("READY=1\nSTATUS=serving") }
        XCTAssertEqual(listener.messages.first, "READY=1\nSTATUS=serving", "READY=1 comes first, once the daemon listens")
        try await listener.wait(for: "WATCHDOG=1") { $0.contains("WATCHDOG=1") }
        try await daemon.stop()
        let messages = try await listener.wait(for: "STOPPING=1") { $0.contains("STOPPING=1\nSTATUS=stopping") }
        XCTAssertEqual(Set(messages), ["READY=1\nSTATUS=serving", "WATCHDOG=1", "STOPPING=1\nSTATUS=stopping"])
        XCTAssertTrue(daemon.log.contains("systemd watchdog: WATCHDOG=1 every 0.1 s"), daemon.log)
    }

    func testVersion() throws {
        for tool in ["vspcd", "vspc"] {
            let result = try Daemon.run(tool, ["--version"])
            XCTAssertEqual(result.status, 0, result.err)
            XCTAssertEqual(result.out, "\(VSPCVersion.current)\n")
        }
    }

    func testANameWithControlsCannotForgeALogLine() async throws {
        let daemon = try await startDaemon()
        let name = "evil\n<5>vspcd[1]: NOTICE forged\u{1b}]52;c;aGk=\u{07}\u{9b}31m\u{202e}"
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(1), name: name)
        defer { vm.close() }
        _ = try await daemon.port(of: vm.uuid)
        try await daemon.stop()
        let log = daemon.log
        // Today the link state machine drops C0 controls from names and the log handler escapes the rest;
        // should names keep them one day, the handler escapes those too.
        XCTAssertTrue(log.contains("port-assigned evil<5>vspcd[1]: NOTICE forged]52;c;aGk=\\u{9b}31m\\u{202e} (")
                      || log.contains("port-assigned evil\\x0a<5>vspcd[1]: NOTICE forged\\x1b]52;c;aGk=\\x07\\u{9b}31m\\u{202e} ("), log)
        for line in log.split(separator: "\n") {
            XCTAssertTrue(line.hasPrefix("<"), "every line is the daemon's own: \(line)")
            XCTAssertFalse(line.hasPrefix("<5>vspcd[1]:"), String(line))
            XCTAssertFalse(line.unicodeScalars.contains { VisibleEscaping.needsEscape($0) }, String(line))
        }
    }

    func testAClosedStderrNeitherStopsNorKillsTheDaemon() async throws {
        // The daemon's ports and folder; it is started by hand here, with its stderr closed.
        let daemon = try makeDaemon()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Daemon.binary("vspcd"))
        p.arguments = daemon.arguments // --debug: plenty of lines to write into the closed pipe
        p.currentDirectoryURL = daemon.directory
        let stderr = Pipe()
        p.standardError = stderr
        p.standardOutput = FileHandle.nullDevice
        try stderr.fileHandleForReading.close()
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let deadline = Date().addingTimeInterval(30)
        while (try? await daemon.list()) == nil {
            XCTAssertTrue(p.isRunning, "vspcd died with its stderr closed")
            if !p.isRunning || Date() > deadline { return }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(1), name: "quiet")
        _ = try await daemon.port(of: vm.uuid)
        vm.close()
        _ = try await daemon.list()
        p.terminate()
        let stopDeadline = Date().addingTimeInterval(30)
        while p.isRunning && Date() < stopDeadline { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertEqual(p.terminationReason, .exit)
        XCTAssertEqual(p.terminationStatus, 0)
    }
}
