import Logging
import NIOConcurrencyHelpers
import NIOCore
import VSPCClient
import NIOPosix
import NIOSSH
import VSPCCore

/// How the SSH front door listens and what it bounds.
public struct SSHServerSettings: Sendable {
    public var host: String
    public var port: Int
    /// A connection that has not authenticated by then is closed.
    public var authenticationTimeout: TimeAmount = .seconds(30)
    /// Connections allowed to wait for authentication at once; more are closed as soon as they arrive.
    public var maxUnauthenticated: Int {
        get { sourceLimits.startups.full }
        set {
            sourceLimits.startups.full = newValue
            sourceLimits.startups.start = min(sourceLimits.startups.start, newValue)
        }
    }
    /// Random early drop, per-source bounds on waiting connections and on failed attempts (`SourceLimitSettings`).
    public var sourceLimits = SourceLimitSettings()
    /// A session with neither input nor output for this long is ended (nil: never).
    public var idleTimeout: TimeAmount?
    /// An authenticated connection is sent a keepalive (a global request that wants a reply) this often (nil: never)
    /// and dropped when `keepaliveCountMax` in a row go unanswered.
    public var keepaliveInterval: TimeAmount? = .seconds(15)
    public var keepaliveCountMax = 3
    /// Authentication requests allowed on one connection before it is disconnected.
    public var maxAuthAttempts = 20
    /// Session channels one connection may hold open at once.
    public var maxSessionsPerConnection = 4
    /// Bytes that may wait for one session's client before the session is dropped (with its connection: a stuck
    /// client cannot close an SSH channel cleanly).
    public var sessionOutputLimit = 1 << 20
    /// How long `close(exitStatus:)` waits for queued output to leave and for the client to answer the close;
    /// after that the client's connection is dropped.
    public var closeGrace: TimeAmount = .seconds(5)

    public init(host: String = "0.0.0.0", port: Int = 6781) {
        self.host = host
        self.port = port
    }
}

public struct SSHServerError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The SSH front door: public-key authentication against `AuthorizedKeysHolder`, then session channels handed to
/// an `SSHConsoleGateway`. Only session channels are served: no port forwarding, no subsystems (sftp), no agent or
/// X11 forwarding.
public final class SSHServer: @unchecked Sendable {
    public let settings: SSHServerSettings
    public let hostKey: SSHHostKey
    public let authorizedKeys: AuthorizedKeysHolder
    let gateway: SSHConsoleGateway
    let group: EventLoopGroup
    let logger: Logger

    private struct Counters {
        var admission: SourceAdmission
        var refusals = RefusalLog()
        var nextSessionID = 1
        var connections: [ObjectIdentifier: Channel] = [:]
        var stopping = false
        var reportedFull = false
    }
    private let counters: NIOLockedValueBox<Counters>
    private let listener = NIOLockedValueBox<Channel?>(nil)
    private let summaryTask = NIOLockedValueBox<RepeatedTask?>(nil)

    public init(settings: SSHServerSettings, hostKey: SSHHostKey, authorizedKeys: AuthorizedKeysHolder,
                gateway: SSHConsoleGateway, group: EventLoopGroup, logger: Logger) {
        self.settings = settings
        self.hostKey = hostKey
        self.authorizedKeys = authorizedKeys
        self.gateway = gateway
        self.group = group
        self.logger = logger
        self.counters = NIOLockedValueBox(Counters(admission: SourceAdmission(settings: settings.sourceLimits)))
    }

    /// The bound address (useful with port 0), once started.
    public var localAddress: SocketAddress? { listener.withLockedValue { $0?.localAddress } }
    /// Connections open now, authenticated or not.
    public var connectionCount: Int { counters.withLockedValue { $0.connections.count } }
    /// Connections open now that have not authenticated yet.
    public var unauthenticatedCount: Int { counters.withLockedValue { $0.admission.waiting } }
    /// Connections from `address` open now that have not authenticated yet.
    public func unauthenticatedCount(from address: IPAddress?) -> Int {
        counters.withLockedValue { $0.admission.waiting(from: SourceKey(address)) }
    }

    /// Seconds on a monotonic clock, for the admission bookkeeping.
    static func now() -> Double { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }

    var isStopping: Bool { counters.withLockedValue { $0.stopping } }

    func makeSessionID() -> Int {
        counters.withLockedValue { counters in
            defer { counters.nextSessionID += 1 }
            return counters.nextSessionID
        }
    }

    /// Binds `settings.host:settings.port`.
    public func start() async throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try self.initializeConnection(channel) }
            }
        let channel: Channel
        do {
            channel = try await bootstrap.bind(host: settings.host, port: settings.port).get()
        } catch {
            throw ListenError("the ssh port \(settings.host):\(settings.port)", error)
        }
        listener.withLockedValue { $0 = channel }
        let interval = counters.withLockedValue { $0.refusals.interval }
        let task = group.next().scheduleRepeatedTask(initialDelay: .seconds(Int64(interval)),
                                                     delay: .seconds(Int64(interval))) { [weak self] _ in
            guard let self else { return }
            if let line = self.counters.withLockedValue({ $0.refusals.tick(now: Self.now()) }) {
                self.logger.warning("ssh: \(line)")
            }
        }
        summaryTask.withLockedValue { $0 = task }
        logger.notice("ssh listening on \(settings.host):\(channel.localAddress?.port ?? settings.port), host key \(hostKey.fingerprint)")
    }

    /// Stops listening and closes every connection; their sessions end with `.serverStopped`.
    public func stop() async {
        counters.withLockedValue { $0.stopping = true }
        summaryTask.withLockedValue { $0?.cancel() }
        let channel = listener.withLockedValue { $0 }
        try? await channel?.close()
        let connections = counters.withLockedValue { Array($0.connections.values) }
        for connection in connections {
            try? await connection.close()
        }
    }

    private func initializeConnection(_ channel: Channel) throws {
        let peer = PeerAddress.describe(channel.remoteAddress)
        let address = channel.remoteAddress?.ipAddress.flatMap(IPAddress.init)
        let source = SourceKey(address)
        enum Admission { case admitted, stopping, refused(SourceRefusal, line: String?, firstFull: Bool) }
        let admission: Admission = counters.withLockedValue { counters in
            guard !counters.stopping else { return .stopping }
            let now = Self.now()
            if let refusal = counters.admission.admit(source, now: now, random: Double.random(in: 0..<1)) {
                var firstFull = false
                if case .full = refusal {
                    firstFull = !counters.reportedFull
                    counters.reportedFull = true
                }
                return .refused(refusal, line: counters.refusals.refused(source, reason: refusal.reason, now: now),
                                firstFull: firstFull)
            }
            counters.connections[ObjectIdentifier(channel)] = channel
            return .admitted
        }
        switch admission {
        case .admitted:
            break
        case .stopping:
            try channel.pipeline.syncOperations.addHandler(CloseOnActive())
            return
        case .refused(let refusal, let line, let firstFull):
            if firstFull {
                logger.warning("ssh: \(settings.maxUnauthenticated) connections are waiting to authenticate; refusing new ones until some finish")
            }
            if let line { logger.warning("ssh: \(line)") }
            logger.debug("ssh: \(peer) refused: \(refusal.reason)")
            try channel.pipeline.syncOperations.addHandler(CloseOnActive())
            return
        }
        let state = SSHConnectionState(peer: peer, address: address)
        var configuration = SSHServerConfiguration(
            hostKeys: [hostKey.privateKey],
            userAuthDelegate: SSHKeyAuthenticator(keys: authorizedKeys, state: state, logger: logger))
        configuration.maxAuthAttempts = settings.maxAuthAttempts
        let ssh = NIOSSHHandler(role: .server(configuration), allocator: channel.allocator) { [self] child, type in
            self.initializeSessionChannel(child, type: type, connection: state)
        }
        do {
            try channel.pipeline.syncOperations.addHandlers([ssh, SSHConnectionGuard(server: self, state: state, ssh: ssh)])
        } catch {
            connectionClosed(channel, address: address, authenticated: false, failed: false)
            throw error
        }
    }

    private func initializeSessionChannel(_ child: Channel, type: SSHChannelType,
                                          connection: SSHConnectionState) -> EventLoopFuture<Void> {
        guard case .session = type else {
            logger.info("ssh: \(connection.peer) asked for a \(Self.name(of: type)) channel; only sessions are served")
            return child.eventLoop.makeFailedFuture(SSHServerError("only session channels are served"))
        }
        guard connection.authenticated != nil, connection.sessions < settings.maxSessionsPerConnection else {
            logger.info("ssh: \(connection.peer) asked for more than \(settings.maxSessionsPerConnection) sessions at once; refused")
            return child.eventLoop.makeFailedFuture(SSHServerError("too many sessions"))
        }
        return child.setOption(ChannelOptions.allowRemoteHalfClosure, value: true).flatMapThrowing {
            try child.pipeline.syncOperations.addHandler(SSHSessionHandler(server: self, connection: connection))
        }
    }

    private static func name(of type: SSHChannelType) -> String {
        switch type {
        case .session: "session"
        case .directTCPIP: "direct-tcpip (port forwarding)"
        case .forwardedTCPIP: "forwarded-tcpip"
        }
    }

    /// The connection authenticated: it no longer counts against `maxUnauthenticated`.
    func connectionAuthenticated(address: IPAddress?) {
        counters.withLockedValue {
            $0.admission.authenticated(SourceKey(address))
            if $0.admission.waiting < settings.maxUnauthenticated { $0.reportedFull = false }
        }
    }

    /// `failed`: the connection tried to authenticate (or timed out) and did not; it counts against its source.
    func connectionClosed(_ channel: Channel, address: IPAddress?, authenticated: Bool, failed: Bool) {
        counters.withLockedValue {
            $0.connections[ObjectIdentifier(channel)] = nil
            $0.admission.closed(SourceKey(address), waiting: !authenticated, failed: failed, now: Self.now())
            if $0.admission.waiting < settings.maxUnauthenticated { $0.reportedFull = false }
        }
    }
}

/// Watches one connection: until it authenticates, closes it when `authenticationTimeout` passes first, keeps the
/// server's count of waiting connections, and says why a client that never offered a usable key was refused; once
/// it has authenticated, sends it keepalives and drops it when `keepaliveCountMax` in a row go unanswered.
///
/// The keepalive: swift-nio-ssh 0.15.1 can send only `tcpip-forward` and `cancel-tcpip-forward` global requests
/// (its general `sendGlobalRequestMessage` is internal), so instead of OpenSSH's `keepalive@openssh.com` the probe
/// is `cancel-tcpip-forward` for `keepalive@vspcd` port 0 with want-reply. A client has nothing of the kind to
/// cancel, so it answers with a failure (OpenSSH's client answers every global request it does not know that way);
/// any answer, success or failure, shows it is alive.
final class SSHConnectionGuard: ChannelInboundHandler {
    typealias InboundIn = Any

    private let server: SSHServer
    private let state: SSHConnectionState
    private weak var ssh: NIOSSHHandler?
    private var timer: Scheduled<Void>?
    private var keepalive: RepeatedTask?
    private var unanswered = 0
    private var authenticated = false
    private var timedOut = false
    private var done = false

    init(server: SSHServer, state: SSHConnectionState, ssh: NIOSSHHandler) {
        self.server = server
        self.state = state
        self.ssh = ssh
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let timeout = server.settings.authenticationTimeout
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, !self.authenticated else { return }
            self.timedOut = true
            self.server.logger.info("ssh: \(self.state.peer) did not authenticate within \(Self.seconds(timeout)); closed")
            channel.close(promise: nil)
        }
        state.onAuthenticated = { [weak self] in self?.markAuthenticated(channel: channel) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        timer?.cancel()
        keepalive?.cancel()
        state.onAuthenticated = nil
        if !authenticated, let user = state.user {
            let who = "\(state.peer) (user \(SSHLogText.clean(user)))"
            // swift-nio-ssh does not pass on keys of types it cannot read (RSA...), so a client that offered
            // none and one that offered only those look the same here: the line names both cases.
            if !state.denials.isEmpty {
                server.logger.notice("ssh: \(who) refused: \(state.denials.joined(separator: "; "))")
            } else if state.refusedKeys.isEmpty {
                server.logger.notice("ssh: \(who) offered no ed25519 or ECDSA key: no key at all, or only keys of a type this server does not support such as RSA; use an ed25519 or ECDSA key")
            } else {
                server.logger.notice("ssh: \(who) refused: \(state.refusalSummary)")
            }
        }
        server.connectionClosed(context.channel, address: state.address, authenticated: authenticated,
                                failed: !authenticated && (state.user != nil || timedOut))
    }

    private func markAuthenticated(channel: Channel) {
        guard !authenticated, !done else { return }
        authenticated = true
        timer?.cancel()
        server.connectionAuthenticated(address: state.address)
        guard let interval = server.settings.keepaliveInterval else { return }
        keepalive = channel.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
            self?.sendKeepalive(channel: channel, interval: interval)
        }
    }

    private func sendKeepalive(channel: Channel, interval: TimeAmount) {
        guard !done, let ssh else { return }
        if unanswered >= server.settings.keepaliveCountMax {
            server.logger.notice("ssh: \(state.peer) did not answer \(unanswered) keepalives \(Self.seconds(interval)) apart; dropped")
            keepalive?.cancel()
            state.dropCause = .unresponsive
            channel.close(promise: nil)
            return
        }
        unanswered += 1
        let answer = channel.eventLoop.makePromise(of: GlobalRequest.TCPForwardingResponse?.self)
        answer.futureResult.whenComplete { [weak self] result in
            switch result {
            case .success:
                self?.unanswered = 0
            case .failure(let error as NIOSSHError) where error.type == .globalRequestRefused:
                self?.unanswered = 0
            case .failure:
                break
            }
        }
        ssh.sendTCPForwardingRequest(.cancel(host: "keepalive@vspcd", port: 0), promise: answer)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        server.logger.debug("ssh: \(state.peer): \(error)")
        context.close(promise: nil)
    }

    static func seconds(_ amount: TimeAmount) -> String {
        let ms = amount.nanoseconds / 1_000_000
        return ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms"
    }
}

/// Closes a connection the server will not serve, as soon as it is active.
private final class CloseOnActive: ChannelInboundHandler {
    typealias InboundIn = Any

    func channelActive(context: ChannelHandlerContext) {
        context.close(promise: nil)
    }
}
