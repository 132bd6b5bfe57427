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
            var n = 0
            session.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { task in
                n += 1
                if n % 200 == 0 { FileHandle.standardError.write(Data("DEBUG flood \(n) queued \(session.queuedBytes) writable \(session.isWritable)\n".utf8)) }
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
final class RunningProcess: @unchecked Sendable {
    let process = Process()
    private let stdinPipe = Pipe()
    private let stdoutPipe = Pipe()
    private let stderrPipe = Pipe()
    private let output = NIOLockedValueBox<(out: [UInt8], err: [UInt8])>(([], []))
    private let readers = DispatchGroup()
    private let exited = DispatchSemaphore(value: 0)

    /// `readStdout: false` leaves stdout unread, so the program blocks once the pipe is full.
    init(_ path: String, _ arguments: [String], environment: [String: String]? = nil, readStdout: Bool = true) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        process.terminationHandler = { [exited] _ in exited.signal() }
        try process.run()
        if readStdout { drain(stdoutPipe.fileHandleForReading, err: false) }
        drain(stderrPipe.fileHandleForReading, err: true)
    }

    private func drain(_ handle: FileHandle, err: Bool) {
        readers.enter()
        DispatchQueue.global().async { [output, readers] in
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                output.withLockedValue { if err { $0.err += data } else { $0.out += data } }
            }
            readers.leave()
        }
    }

    var stdout: [UInt8] { output.withLockedValue { $0.out } }
    var stderr: String { String(decoding: output.withLockedValue { $0.err }, as: UTF8.self) }

    func write(_ bytes: [UInt8]) {
        stdinPipe.fileHandleForWriting.write(Data(bytes))
    }

    func closeStdin() {
        try? stdinPipe.fileHandleForWriting.close()
    }

    /// Waits for the program to exit; kills it after `timeout` seconds.
    func wait(timeout: Double = 60, file: StaticString = #filePath, line: UInt = #line) -> ProcessResult {
        if exited.wait(timeout: .now() + timeout) == .timedOut {
            XCTFail("\(process.executableURL!.path) did not finish within \(timeout) s; stderr: \(stderr)", file: file, line: line)
            process.terminate()
            exited.wait()
        }
        _ = readers.wait(timeout: .now() + 10)
        return ProcessResult(status: process.terminationStatus, stdout: stdout, stderr: stderr)
    }

    func terminate() {
        if process.isRunning { process.terminate() }
        exited.wait()
        try? stdoutPipe.fileHandleForReading.close()
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

    static func connect(port: Int, group: EventLoopGroup) throws -> RawClient {
        let client = RawClient()
        client.channel = try ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(client) }
            }
            .connect(host: "127.0.0.1", port: port).wait()
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
