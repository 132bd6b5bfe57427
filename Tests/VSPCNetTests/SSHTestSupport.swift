import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import VSPCCore
import XCTest
@testable import VSPCNet

/// Log lines kept for assertions.
final class CapturedLog: @unchecked Sendable {
    private let lines = NIOLockedValueBox<[String]>([])

    var all: [String] { lines.withLockedValue { $0 } }

    func append(_ line: String) { lines.withLockedValue { $0.append(line) } }

    func logger() -> Logger {
        var logger = Logger(label: "ssh-test") { _ in CapturingLogHandler(log: self) }
        logger.logLevel = .debug
        return logger
    }
}

struct CapturingLogHandler: LogHandler {
    let log: CapturedLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        log.append("\(event.level) \(event.message)")
    }
}

/// A stand-in for the concentrator. What a session does depends on its user name:
/// `echo` echoes its input and exits 3 at EOF; `refuse` prints a refusal and exits 1; `flood` writes 16 KiB every
/// millisecond until dropped; anything else prints who it is (`user=... key=... fp=... ro=... cmd=... term=...`) and
/// exits 0.
final class StubGateway: SSHConsoleGateway, @unchecked Sendable {
    struct Record {
        var user: String
        var comment: String
        var fingerprint: String
        var terminal: SSHTerminal?
        var command: String?
        var end: SSHSessionEnd?
    }

    private let records = NIOLockedValueBox<[Int: Record]>([:])

    var sessions: [Record] { records.withLockedValue { records in records.keys.sorted().map { records[$0]! } } }

    func sessionStarted(_ session: SSHConsoleSession) {
        records.withLockedValue {
            $0[session.id] = Record(user: session.user, comment: session.key.comment, fingerprint: session.fingerprint,
                                    terminal: session.terminal, command: session.command)
        }
        switch session.user {
        case "echo":
            break
        case "refuse":
            session.write(Array("no such VM\r\n".utf8))
            session.close(exitStatus: 1)
        case "flood":
            let chunk = [UInt8](repeating: 0x41, count: 16 * 1024)
            session.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { task in
                if !session.write(chunk) { task.cancel() }
            }
        default:
            let line = "user=\(session.user) key=\(session.key.comment) fp=\(session.fingerprint) ro=\(session.key.readOnly) "
                + "cmd=\(session.command ?? "-") term=\(session.terminal?.term ?? "-")\n"
            session.write(Array(line.utf8))
            session.close(exitStatus: 0)
        }
    }

    func sessionInput(_ session: SSHConsoleSession, _ bytes: [UInt8]) {
        if session.user == "echo" { session.write(bytes) }
    }

    func sessionInputEnded(_ session: SSHConsoleSession) {
        if session.user == "echo" { session.close(exitStatus: 3) }
    }

    func sessionEnded(_ session: SSHConsoleSession, _ end: SSHSessionEnd) {
        records.withLockedValue { $0[session.id]?.end = end }
    }
}

/// Runs a program to completion (60 s at most), feeding it `stdin`.
struct ProcessResult {
    var status: Int32
    var stdout: [UInt8]
    var stderr: String
    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
}

/// A running program whose stdin is kept open and whose output is collected as it comes.
///
/// Spawned with posix_spawn and reaped with waitpid(WNOHANG) (Foundation's Process on Linux may block reaping one
/// child while another is still running). Every pipe end is close-on-exec, so no other child holds this one's stdin.
final class RunningProcess: @unchecked Sendable {
    let pid: pid_t
    private var stdinFD: Int32
    /// stdout's read end when nobody reads it; closed once the program is gone.
    private var unreadStdout: Int32 = -1
    private let output = NIOLockedValueBox<(out: [UInt8], err: [UInt8])>(([], []))
    private let readers = DispatchGroup()
    private var status: Int32?

    /// `readStdout: false` leaves stdout unread, so the program blocks once the pipe is full.
    init(_ path: String, _ arguments: [String], environment: [String: String]? = nil, readStdout: Bool = true) throws {
        var fds = [Int32](repeating: -1, count: 6)
        for i in 0..<3 {
            guard fds.withUnsafeMutableBufferPointer({ pipe($0.baseAddress! + 2 * i) }) == 0 else {
                throw POSIXError(.EMFILE)
            }
            _ = fcntl(fds[2 * i], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[2 * i + 1], F_SETFD, FD_CLOEXEC)
        }
        // fds: [stdin read, stdin write, stdout read, stdout write, stderr read, stderr write]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fds[3], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[5], 2)
        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, envp)
        close(fds[0])
        close(fds[3])
        close(fds[5])
        guard rc == 0 else {
            [fds[1], fds[2], fds[4]].forEach { close($0) }
            throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .ENOENT)
        }
        self.pid = pid
        stdinFD = fds[1]
        if readStdout { drain(fds[2], err: false) } else { unreadStdout = fds[2] }
        drain(fds[4], err: true)
    }

    private func drain(_ fd: Int32, err: Bool) {
        readers.enter()
        DispatchQueue.global().async { [output, readers] in
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0, errno == EINTR { continue }
                if n <= 0 { break }
                output.withLockedValue { if err { $0.err += chunk[0..<n] } else { $0.out += chunk[0..<n] } }
            }
            close(fd)
            readers.leave()
        }
    }

    var stdout: [UInt8] { output.withLockedValue { $0.out } }
    var stderr: String { String(decoding: output.withLockedValue { $0.err }, as: UTF8.self) }

    func write(_ bytes: [UInt8]) {
        var done = 0
        while done < bytes.count, stdinFD >= 0 {
            let n = bytes.withUnsafeBytes { Glibc.write(stdinFD, $0.baseAddress! + done, bytes.count - done) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return }
            done += n
        }
    }

    func closeStdin() {
        if stdinFD >= 0 {
            close(stdinFD)
            stdinFD = -1
        }
    }

    private func reap(block: Bool) -> Bool {
        if status != nil { return true }
        var raw: Int32 = 0
        let r = waitpid(pid, &raw, block ? 0 : WNOHANG)
        guard r == pid else { return false }
        status = raw & 0x7F == 0 ? (raw >> 8) & 0xFF : 128 + (raw & 0x7F)
        return true
    }

    /// Waits for the program to exit; kills it after `timeout` seconds.
    func wait(timeout: Double = 60, file: StaticString = #filePath, line: UInt = #line) -> ProcessResult {
        let deadline = Date().addingTimeInterval(timeout)
        while !reap(block: false) {
            if Date() > deadline {
                XCTFail("process \(pid) did not finish within \(timeout) s; stderr: \(stderr)", file: file, line: line)
                kill(pid, SIGKILL)
                _ = reap(block: true)
                break
            }
            usleep(10_000)
        }
        closeStdin()
        closeUnreadStdout()
        _ = readers.wait(timeout: .now() + 10)
        return ProcessResult(status: status ?? -1, stdout: stdout, stderr: stderr)
    }

    /// Kills the program (if it still runs) and reaps it.
    func terminate() {
        if !reap(block: false) {
            kill(pid, SIGKILL)
            _ = reap(block: true)
        }
        closeStdin()
        closeUnreadStdout()
        _ = readers.wait(timeout: .now() + 10)
    }

    private func closeUnreadStdout() {
        if unreadStdout >= 0 {
            close(unreadStdout)
            unreadStdout = -1
        }
    }
}

/// Waits for a condition to become true (checked every 20 ms), failing after a generous deadline.
func eventually(_ what: String, timeout: Double = 30, file: StaticString = #filePath, line: UInt = #line,
                _ condition: () -> Bool) {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
        if Date() > deadline {
            XCTFail("timed out waiting for: \(what)", file: file, line: line)
            return
        }
        usleep(20_000)
    }
}

/// A plain TCP client that records what it receives and when the server closes.
final class RawClient: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    private let state = NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>(([], false))
    private(set) var channel: Channel?

    var received: [UInt8] { state.withLockedValue { $0.bytes } }
    var isClosed: Bool { state.withLockedValue { $0.closed } }

    /// Connects to 127.0.0.1:`port`, from `source` (e.g. 127.0.0.2) when given.
    static func connect(port: Int, group: EventLoopGroup, from source: String? = nil) throws -> RawClient {
        let client = RawClient()
        var bootstrap = ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(client) }
            }
        if let source { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
        client.channel = try bootstrap.connect(host: "127.0.0.1", port: port).wait()
        return client
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        state.withLockedValue { $0.bytes += buffer.readableBytesView }
    }

    func channelInactive(context: ChannelHandlerContext) {
        state.withLockedValue { $0.closed = true }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func close() {
        try? channel?.close().wait()
    }
}
