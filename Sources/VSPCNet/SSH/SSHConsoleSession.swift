import NIOCore
import NIOSSH
import VSPCCore

/// What the concentrator implements to serve SSH sessions. Every call is made on the session's event loop
/// (`session.eventLoop`, the loop of the `EventLoopGroup` given to `SSHServer`: pass the concentrator's own loop to
/// keep everything on one thread).
public protocol SSHConsoleGateway: AnyObject, Sendable {
    /// An authenticated client asked for a shell (`command` nil) or an exec (`command` set). `session.user` is the
    /// SSH user name: `list`, `VM` or `VM#label` (see `SSHTarget`). The session is open: write to it, or close it,
    /// e.g. with a one-line refusal and exit status 1.
    func sessionStarted(_ session: SSHConsoleSession)
    /// Bytes the person typed, exactly as received (no CRLF or other translation; Ctrl-] included: see `EscapeMenu`).
    func sessionInput(_ session: SSHConsoleSession, _ bytes: [UInt8])
    /// The session is gone; called exactly once for every started session, whoever ended it.
    func sessionEnded(_ session: SSHConsoleSession, _ end: SSHSessionEnd)
    /// The client sent EOF (its stdin ended). The session stays open until closed. Default: nothing.
    func sessionInputEnded(_ session: SSHConsoleSession)
    /// The client's terminal changed size (`session.terminal`). Default: nothing.
    func sessionResized(_ session: SSHConsoleSession)
    /// `session.isWritable` changed (the client's window or the socket filled up, or drained). Default: nothing.
    func sessionWritabilityChanged(_ session: SSHConsoleSession)
}

extension SSHConsoleGateway {
    public func sessionInputEnded(_ session: SSHConsoleSession) {}
    public func sessionResized(_ session: SSHConsoleSession) {}
    public func sessionWritabilityChanged(_ session: SSHConsoleSession) {}
}

/// The terminal a client asked for with `pty-req`, updated by `window-change`.
public struct SSHTerminal: Sendable, Hashable {
    /// TERM, e.g. `xterm-256color` (at most 64 characters kept).
    public var term: String
    public var columns: Int
    public var rows: Int

    public init(term: String, columns: Int, rows: Int) {
        self.term = term
        self.columns = columns
        self.rows = rows
    }
}

/// Why a session ended.
public enum SSHSessionEnd: Sendable, Hashable {
    /// The client closed the session or its connection went away.
    case clientLeft
    /// The gateway called `close(exitStatus:)`.
    case closed(exitStatus: Int)
    /// More than `outputLimit` bytes were waiting for the client: it stopped reading, and was dropped.
    case outputOverflow
    /// `SSHServer.stop()`.
    case serverStopped
    /// Neither input nor output for `SSHServerSettings.idleTimeout`: ended with a notice and exit status
    /// `SSHConsoleSession.idleExitStatus`.
    case idle
    /// The client left `keepaliveCountMax` keepalives in a row unanswered: its connection was dropped.
    case unresponsive
}

/// One SSH session (a shell or exec channel) of an authenticated client.
///
/// Confined to `eventLoop`: read its properties and call `write`/`close` there. (Called from another thread, `write`
/// and `close` hop to the loop; `write` then returns true without knowing the outcome.)
///
/// Output is bounded: bytes are queued until the client's SSH window and the socket take them, and once more than
/// `outputLimit` bytes would be queued the session is dropped at once (`sessionEnded` with `.outputOverflow`), so a
/// client that stops reading never holds memory or slows anyone else. `isWritable` and `queuedBytes` let a driver
/// watch the backlog before that.
public final class SSHConsoleSession: @unchecked Sendable, CustomStringConvertible {
    /// Unique for the lifetime of the `SSHServer`, from 1.
    public let id: Int
    /// The SSH user name the client authenticated with.
    public let user: String
    /// The authorized_keys entry that let the client in (its comment names the person; `readOnly`, `vms`...).
    public let key: AuthorizedKey
    /// The key's fingerprint, `SHA256:...`.
    public let fingerprint: String
    /// The client's address, `ip:port` (`[ip]:port` for IPv6).
    public let peer: String
    /// The command of an `exec` request (`ssh host cmd`); nil for a shell.
    public let command: String?
    /// Most bytes that may wait for the client before the session is dropped.
    public let outputLimit: Int
    /// The client's terminal, when it asked for one (`ssh -t`, or any interactive ssh).
    public internal(set) var terminal: SSHTerminal?
    /// Bytes written and not yet taken by the network.
    public private(set) var queuedBytes = 0

    public var eventLoop: EventLoop { channel.eventLoop }
    /// Open: not closed, not closing.
    public var isOpen: Bool { state == .open }
    /// Open, and the client's window and the socket take more output right now.
    public var isWritable: Bool { state == .open && channel.isWritable }

    public var description: String { "ssh session \(id) from \(peer) as \(user)" }

    enum State { case open, closing, closed }

    let channel: Channel
    private let closeGrace: TimeAmount
    private(set) var state = State.open
    private var lastWrite: EventLoopFuture<Void>?
    /// Set when the server ends the session; nil when the client did.
    private(set) var end: SSHSessionEnd?
    private var reported = false
    private var closeDeadline: Scheduled<Void>?
    private let server: SSHServer
    /// The last input from the client or output to it.
    private var lastActivity = NIODeadline.now()
    private var idleTimer: Scheduled<Void>?

    /// The exit status of a session ended for being idle (as `timeout(1)` exits).
    public static let idleExitStatus = 124

    init(id: Int, user: String, key: AuthorizedKey, fingerprint: String, peer: String, command: String?,
         terminal: SSHTerminal?, channel: Channel, server: SSHServer) {
        self.id = id
        self.user = user
        self.key = key
        self.fingerprint = fingerprint
        self.peer = peer
        self.command = command
        self.terminal = terminal
        self.channel = channel
        self.server = server
        self.outputLimit = server.settings.sessionOutputLimit
        self.closeGrace = server.settings.closeGrace
    }

    /// Queues bytes for the client, raw. Returns false when the session is closed or closing, or when these bytes
    /// would take the queue past `outputLimit`: then the session is dropped and the bytes are not sent.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool {
        guard channel.eventLoop.inEventLoop else {
            channel.eventLoop.execute { self.write(bytes) }
            return true
        }
        guard state == .open else { return false }
        guard !bytes.isEmpty else { return true }
        lastActivity = .now()
        let count = bytes.count
        guard queuedBytes + count <= outputLimit else {
            drop(.outputOverflow)
            return false
        }
        queuedBytes += count
        var buffer = channel.allocator.buffer(capacity: count)
        buffer.writeBytes(bytes)
        let written = channel.writeAndFlush(SSHChannelData(type: .channel, data: .byteBuffer(buffer)))
        lastWrite = written
        written.whenComplete { _ in
            self.queuedBytes -= count
            if self.queuedBytes == 0 { self.lastWrite = nil }
        }
        return true
    }

    /// Ends the session: the output queued so far is delivered, then the exit status (clamped to 0...255) and the
    /// channel's close. A client that has not taken the queued output and answered the close within the grace
    /// period (`SSHServerSettings.closeGrace`, 5 s by default) is dropped with its connection. Later calls do nothing.
    public func close(exitStatus: Int) {
        guard channel.eventLoop.inEventLoop else {
            channel.eventLoop.execute { self.close(exitStatus: exitStatus) }
            return
        }
        guard state == .open else { return }
        state = .closing
        let status = min(max(exitStatus, 0), 255)
        end = .closed(exitStatus: status)
        let channel = self.channel
        // A client that does not take the rest of its output, or does not answer the close, is dropped.
        closeDeadline = channel.eventLoop.scheduleTask(in: closeGrace) { [self] in drop(.closed(exitStatus: status)) }
        // Writes complete in order: once the last one has gone out, everything has. (No EOF is sent: swift-nio-ssh
        // 0.15.1 refuses to send one after the client's own EOF.)
        let drained = queuedBytes > 0 ? (lastWrite ?? channel.eventLoop.makeSucceededVoidFuture())
                                      : channel.eventLoop.makeSucceededVoidFuture()
        drained.whenComplete { _ in
            channel.triggerUserOutboundEvent(SSHChannelRequestEvent.ExitStatus(exitStatus: status)).whenComplete { _ in
                channel.close(promise: nil)
            }
        }
    }

    /// Closes the SSH connection this session runs on, with every other session on it, once what was queued
    /// has had the grace period to leave (a revoked key).
    public func closeConnection() {
        guard channel.eventLoop.inEventLoop else {
            channel.eventLoop.execute { self.closeConnection() }
            return
        }
        let parent = channel.parent
        channel.eventLoop.scheduleTask(in: .milliseconds(200)) { parent?.close(promise: nil) }
    }

    /// Drops a client that does not take its output. Its SSH channel cannot close cleanly (that needs the client to
    /// answer), so the whole connection is closed.
    private func drop(_ reason: SSHSessionEnd) {
        guard !reported else { return }
        state = .closed
        end = reason
        channel.close(promise: nil)
        channel.parent?.close(promise: nil)
        // Reported from a fresh turn of the loop, never from inside the gateway's own call to `write`.
        channel.eventLoop.execute { self.ended() }
    }

    /// The client sent something.
    func touch() { lastActivity = .now() }

    /// Ends the session once it has seen neither input nor output for `timeout`. Call on the event loop.
    func startIdleTimer(_ timeout: TimeAmount) {
        idleTimer = channel.eventLoop.scheduleTask(deadline: lastActivity + timeout) { [weak self] in
            self?.checkIdle(timeout)
        }
    }

    private func checkIdle(_ timeout: TimeAmount) {
        guard state == .open else { return }
        let due = lastActivity + timeout
        guard NIODeadline.now() >= due else {
            idleTimer = channel.eventLoop.scheduleTask(deadline: due) { [weak self] in self?.checkIdle(timeout) }
            return
        }
        let seconds = SSHConnectionGuard.seconds(timeout)
        server.logger.notice("ssh: \(self) ended: no input or output for \(seconds)")
        let newline = terminal != nil ? "\r\n" : "\n"
        write(Array("\(newline)[vspcd: no input or output for \(seconds); session ended]\(newline)".utf8))
        close(exitStatus: Self.idleExitStatus)
        end = .idle
    }

    /// Tells the gateway the session is over, once. `cause`: why its connection went, when the server dropped it.
    func ended(cause: SSHSessionEnd? = nil) {
        guard !reported else { return }
        reported = true
        state = .closed
        closeDeadline?.cancel()
        idleTimer?.cancel()
        server.gateway.sessionEnded(self, end ?? cause ?? (server.isStopping ? .serverStopped : .clientLeft))
    }
}
