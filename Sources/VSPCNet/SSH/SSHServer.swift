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
    public var maxUnauthenticated = 64
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
        var unauthenticated = 0
        var nextSessionID = 1
        var connections: [ObjectIdentifier: Channel] = [:]
        var stopping = false
        var reportedFull = false
    }
    private let counters = NIOLockedValueBox(Counters())
    private let listener = NIOLockedValueBox<Channel?>(nil)

    public init(settings: SSHServerSettings, hostKey: SSHHostKey, authorizedKeys: AuthorizedKeysHolder,
                gateway: SSHConsoleGateway, group: EventLoopGroup, logger: Logger) {
        self.settings = settings
        self.hostKey = hostKey
        self.authorizedKeys = authorizedKeys
        self.gateway = gateway
        self.group = group
        self.logger = logger
    }

    /// The bound address (useful with port 0), once started.
    public var localAddress: SocketAddress? { listener.withLockedValue { $0?.localAddress } }
    /// Connections open now, authenticated or not.
    public var connectionCount: Int { counters.withLockedValue { $0.connections.count } }
    /// Connections open now that have not authenticated yet.
    public var unauthenticatedCount: Int { counters.withLockedValue { $0.unauthenticated } }

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
        logger.notice("ssh listening on \(settings.host):\(channel.localAddress?.port ?? settings.port), host key \(hostKey.fingerprint)")
    }

    /// Stops listening and closes every connection; their sessions end with `.serverStopped`.
    public func stop() async {
        counters.withLockedValue { $0.stopping = true }
        let channel = listener.withLockedValue { $0 }
        try? await channel?.close()
        let connections = counters.withLockedValue { Array($0.connections.values) }
        for connection in connections {
            try? await connection.close()
        }
    }

    private func initializeConnection(_ channel: Channel) throws {
        let peer = PeerAddress.describe(channel.remoteAddress)
        enum Admission { case admitted, stopping, full(firstTime: Bool) }
        let admission: Admission = counters.withLockedValue { counters in
            guard !counters.stopping else { return .stopping }
            guard counters.unauthenticated < settings.maxUnauthenticated else {
                defer { counters.reportedFull = true }
                return .full(firstTime: !counters.reportedFull)
            }
            counters.unauthenticated += 1
            counters.connections[ObjectIdentifier(channel)] = channel
            return .admitted
        }
        switch admission {
        case .admitted:
            break
        case .stopping:
            try channel.pipeline.syncOperations.addHandler(CloseOnActive())
            return
        case .full(let firstTime):
            if firstTime {
                logger.warning("ssh: \(settings.maxUnauthenticated) connections are waiting to authenticate; refusing new ones until some finish")
            }
            logger.debug("ssh: \(peer) refused: too many connections waiting to authenticate")
            try channel.pipeline.syncOperations.addHandler(CloseOnActive())
            return
        }
        let state = SSHConnectionState(peer: peer)
        var configuration = SSHServerConfiguration(
            hostKeys: [hostKey.privateKey],
            userAuthDelegate: SSHKeyAuthenticator(keys: authorizedKeys, state: state, logger: logger))
        configuration.maxAuthAttempts = settings.maxAuthAttempts
        let ssh = NIOSSHHandler(role: .server(configuration), allocator: channel.allocator) { [self] child, type in
            self.initializeSessionChannel(child, type: type, connection: state)
        }
        do {
            try channel.pipeline.syncOperations.addHandlers([ssh, SSHConnectionGuard(server: self, state: state)])
        } catch {
            connectionClosed(channel, authenticated: false)
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
    func connectionAuthenticated() {
        counters.withLockedValue {
            $0.unauthenticated -= 1
            if $0.unauthenticated < settings.maxUnauthenticated { $0.reportedFull = false }
        }
    }

    func connectionClosed(_ channel: Channel, authenticated: Bool) {
        counters.withLockedValue {
            $0.connections[ObjectIdentifier(channel)] = nil
            if !authenticated {
                $0.unauthenticated -= 1
                if $0.unauthenticated < settings.maxUnauthenticated { $0.reportedFull = false }
            }
        }
    }
}

/// Watches one connection until it authenticates: closes it when `authenticationTimeout` passes first, keeps the
/// server's count of waiting connections, and says why a client that never offered a usable key was refused.
final class SSHConnectionGuard: ChannelInboundHandler {
    typealias InboundIn = Any

    private let server: SSHServer
    private let state: SSHConnectionState
    private var timer: Scheduled<Void>?
    private var authenticated = false
    private var timedOut = false
    private var done = false

    init(server: SSHServer, state: SSHConnectionState) {
        self.server = server
        self.state = state
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
        state.onAuthenticated = { [weak self] in self?.markAuthenticated() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        timer?.cancel()
        state.onAuthenticated = nil
        if !authenticated, let user = state.user {
            let who = "\(state.peer) (user \(SSHLogText.clean(user)))"
            // swift-nio-ssh does not pass on keys of types it cannot read (RSA...), so a client that offered
            // none and one that offered only those look the same here: the line names both cases.
            if state.refusedKeys.isEmpty {
                server.logger.notice("ssh: \(who) offered no ed25519 or ECDSA key: no key at all, or only keys of a type this server does not support such as RSA; use an ed25519 or ECDSA key")
            } else {
                server.logger.notice("ssh: \(who) refused: \(state.refusalSummary)")
            }
        }
        server.connectionClosed(context.channel, authenticated: authenticated)
    }

    private func markAuthenticated() {
        guard !authenticated, !done else { return }
        authenticated = true
        timer?.cancel()
        server.connectionAuthenticated()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        server.logger.debug("ssh: \(state.peer): \(error)")
        context.close(promise: nil)
    }

    private static func seconds(_ amount: TimeAmount) -> String {
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
