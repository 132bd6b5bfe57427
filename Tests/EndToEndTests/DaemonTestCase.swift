import Foundation
import VSPCSim
import XCTest

/// The base of the end-to-end test classes that run the real vspcd. It makes daemons (free ports, a temporary
/// folder for the database and the log), kills them and removes their folders after each test, and when a test
/// failed prints the end of each daemon's log into the test output. With env `VSPC_TEST_KEEP_LOGS=DIR`, every
/// daemon's whole log is copied into DIR.
class DaemonTestCase: XCTestCase {
    /// How much of the end of each daemon's log a failed test prints.
    static let logTailBytes = 16 * 1024

    /// The daemons this test made, in the order it made them.
    private(set) var daemons: [Daemon] = []

    /// A daemon on free ports with a fresh temporary folder (or `directory`), not started yet; `tearDown`
    /// kills it and removes its folder.
    func makeDaemon(portRangeSize: Int = 200, _ extraArguments: [String] = [], directory: URL? = nil) throws -> Daemon {
        let daemon = try Daemon(portRangeSize: portRangeSize, extraArguments: extraArguments, directory: directory)
        daemons.append(daemon)
        return daemon
    }

    /// A daemon that is started (its admin endpoint answers); `tearDown` kills it and removes its folder.
    func startDaemon(portRangeSize: Int = 200, _ extraArguments: [String] = []) async throws -> Daemon {
        let daemon = try makeDaemon(portRangeSize: portRangeSize, extraArguments)
        try await daemon.start()
        return daemon
    }

    override func tearDown() async throws {
        if let keep = ProcessInfo.processInfo.environment["VSPC_TEST_KEEP_LOGS"] {
            for (i, daemon) in daemons.enumerated() {
                try? FileManager.default.copyItem(atPath: daemon.logPath, toPath: "\(keep)/\(name.filter { $0.isLetter })-\(i).log")
            }
        }
        if let run = testRun, run.failureCount + run.unexpectedExceptionCount > 0 {
            for (i, daemon) in daemons.enumerated() {
                print("""
                    --- vspcd log \(i + 1) of \(daemons.count) of \(name), its last \(Self.logTailBytes / 1024) KB ---
                    \(daemon.logTail(bytes: Self.logTailBytes).trimmingCharacters(in: .newlines))
                    --- end of the vspcd log ---
                    """)
            }
        }
        daemons.forEach { $0.cleanup() }
        daemons = []
        try await super.tearDown()
    }
}

/// Telnet options that no end-to-end test negotiates otherwise, handed out one by one to `barrier()`.
private let barrierOptions = BarrierOptions()

private final class BarrierOptions: @unchecked Sendable {
    private let lock = NSLock()
    private var next: UInt8 = 100

    func take() -> UInt8 {
        lock.lock()
        defer { lock.unlock() }
        let option = next
        next = next == 199 ? 100 : next + 1
        return option
    }
}

extension SimConnection {
    /// Waits until the daemon has read and acted on everything sent on this connection so far, and everything it
    /// sent here before has arrived: the daemon answers `IAC DO option`, for an option it refuses, with
    /// `IAC WONT option` (once per option and connection), in order with the rest. Returns as well when the
    /// connection closes. The positive marker before checking that something did NOT happen.
    func barrier(timeout: Double = 30) async throws {
        let option = barrierOptions.take()
        let start = raw.count
        write(raw: [0xFF, 0xFD, option])
        try await wait("IAC WONT \(option), the daemon's answer to the barrier", timeout: timeout) {
            closed || containsCommand(raw, from: start, [0xFF, 0xFC, option])
        }
    }
}

/// Waits (via `barrier()`) on each connection in turn: on the sender first, then on those that would have
/// received what the sender's bytes caused.
func barrier(_ connections: SimConnection...) async throws {
    for connection in connections { try await connection.barrier() }
}

/// True if `raw` telnet bytes hold `command` (starting with IAC) at or after `start`, as a command and not as
/// data (an IAC there is not the second half of a doubled 0xFF).
func containsCommand(_ raw: [UInt8], from start: Int, _ command: [UInt8]) -> Bool {
    guard !command.isEmpty, raw.count >= command.count else { return false }
    var i = max(0, start)
    while i + command.count <= raw.count {
        if raw[i..<(i + command.count)].elementsEqual(command) {
            var iacsBefore = 0
            var j = i - 1
            while j >= 0, raw[j] == 0xFF { iacsBefore += 1; j -= 1 }
            if iacsBefore % 2 == 0 { return true }
        }
        i += 1
    }
    return false
}

/// Connects to `port`, sends `bytes`, shuts down the sending side and reads until the daemon closes the
/// connection: by then it has read and acted on everything sent (or dropped the connection before the end).
func sendAndAwaitClose(port: Int, _ bytes: [UInt8], timeout: Double = 30) throws {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SimError("socket: errno \(errno)") }
    defer { close(fd) }
    var addr = StuckSocket.address(port)
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw SimError("connect to port \(port): errno \(errno)") }
    var limit = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    // What the daemon sends back is drained alongside, so that neither side waits for the other.
    let reader = DispatchSemaphore(value: 0)
    let outcome = DataBox() // empty: the daemon closed; otherwise why the reading stopped
    Thread.detachNewThread {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            let error = errno
            if n > 0 { continue }
            if n < 0, error == EINTR { continue }
            // 0: the daemon closed its side; ECONNRESET: it closed with our bytes unread. Both are a close.
            if n < 0, error != ECONNRESET { outcome.append(Data("errno \(error)".utf8)) }
            break
        }
        reader.signal()
    }
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
        if n < 0, errno == EINTR { continue }
        if n <= 0 { break } // the daemon closed (or reset) the connection first
        offset += n
    }
    shutdown(fd, Int32(SHUT_WR))
    var why = ""
    if reader.wait(timeout: .now() + timeout + 5) != .success {
        shutdown(fd, Int32(SHUT_RDWR))
        reader.wait()
        why = "still open"
    } else {
        why = String(decoding: outcome.value, as: UTF8.self)
    }
    guard why.isEmpty else {
        throw SimError("the daemon did not close the connection on port \(port) within \(timeout) s (\(why))")
    }
}
