import NIOConcurrencyHelpers
import NIOCore
import VSPCClient
import NIOHTTP1
import NIOPosix
import VSPCCore

/// The `--metrics [host]:port` endpoint: Prometheus text at `GET /metrics` over HTTP/1.1.
///
/// A scrape never blocks the event loop: the snapshot closure is awaited in a task (the daemon reads its
/// state on the event loop and returns), then /proc is read and the text rendered on a thread of the
/// server's own NIOThreadPool. Requests are bounded (headers, body, concurrent connections, connections per
/// address, the time to send a request, idle time), so a stranger holding half-sent requests cannot block a scrape.
public final class MetricsServer: Sendable {
    public struct Limits: Sendable {
        /// Connections served at once; one more gets 503 and is closed. Prometheus uses one per target.
        public var maxConnections: Int = 8
        /// Connections from one address (an IPv6 /64) served at once; one more gets 503 and is closed.
        public var maxConnectionsPerSource: Int = 4
        /// A request must arrive whole (head and body) this long after the connection opened or after its first
        /// byte; otherwise the connection is closed. A scrape sends its request at once.
        public var requestTimeout: TimeAmount = .seconds(5)
        /// Request line plus headers, in bytes; beyond it the request gets 400 and the connection is closed.
        public var maxHeaderBytes: Int = 8192
        /// Request body, in bytes (a scrape has none); beyond it the connection is closed.
        public var maxBodyBytes: Int = 4096
        /// A kept-alive connection is closed this long after its last response when no new request has begun.
        /// Longer than Prometheus' default 1 m scrape interval, so a kept-alive connection is reused.
        public var idleTimeout: TimeAmount = .seconds(90)

        public init() {}
    }

    private struct State {
        var serverChannel: Channel?
        var threadPool: NIOThreadPool?
        var connections: [ObjectIdentifier: Channel] = [:]
        var bySource: [SourceKey: Int] = [:]
        var started = false
    }

    public let metrics: VSPCMetrics
    public let limits: Limits
    private let snapshot: @Sendable () async -> MetricsSnapshot
    private let state = NIOLockedValueBox(State())

    /// - Parameters:
    ///   - metrics: the registry to serve.
    ///   - snapshot: called once per scrape for the gauges; the daemon reads its state on its event loop.
    public init(
        metrics: VSPCMetrics,
        limits: Limits = Limits(),
        snapshot: @escaping @Sendable () async -> MetricsSnapshot
    ) {
        self.metrics = metrics
        self.limits = limits
        self.snapshot = snapshot
    }

    /// Binds `host:port` (port 0 picks a free one; an IPv6 host may be given in brackets) and returns the
    /// bound port. Throws if already started or if the address cannot be bound.
    public func start(group: EventLoopGroup, host: String, port: Int) async throws -> Int {
        let pool = NIOThreadPool(numberOfThreads: 1)
        let claimed = state.withLockedValue { state -> Bool in
            guard !state.started else { return false }
            state.started = true
            state.threadPool = pool
            return true
        }
        guard claimed else { throw ServerError("the metrics server is already started") }
        pool.start()

        var bindHost = host
        if bindHost.hasPrefix("["), bindHost.hasSuffix("]") { bindHost = String(bindHost.dropFirst().dropLast()) }
        if bindHost.isEmpty { bindHost = "0.0.0.0" }

        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try self.setUp(channel)
                }
            }
        do {
            let channel = try await bootstrap.bind(host: bindHost, port: port).get()
            state.withLockedValue { $0.serverChannel = channel }
            return channel.localAddress?.port ?? port
        } catch {
            await stop()
            throw ListenError("the metrics port \(host):\(port)", error)
        }
    }

    /// Closes the listener and every connection, and stops the rendering thread. Safe to call twice; the
    /// server may be started again afterwards.
    public func stop() async {
        let (server, pool, connections) = state.withLockedValue { state in
            defer {
                state.serverChannel = nil
                state.threadPool = nil
                state.connections = [:]
                state.bySource = [:]
                state.started = false
            }
            return (state.serverChannel, state.threadPool, Array(state.connections.values))
        }
        try? await server?.close()
        for connection in connections {
            try? await connection.close()
        }
        try? await pool?.shutdownGracefully()
    }

    /// Connections being served now (for tests and status).
    public var connectionCount: Int { state.withLockedValue { $0.connections.count } }

    private func setUp(_ channel: Channel) throws {
        let id = ObjectIdentifier(channel)
        let source = SourceKey(channel.remoteAddress?.ipAddress.flatMap(IPAddress.init))
        let admitted = state.withLockedValue { state -> Bool in
            guard state.serverChannel != nil || state.threadPool != nil,
                state.connections.count < limits.maxConnections,
                state.bySource[source, default: 0] < limits.maxConnectionsPerSource
            else { return false }
            state.connections[id] = channel
            state.bySource[source, default: 0] += 1
            return true
        }
        guard admitted else {
            try channel.pipeline.syncOperations.addHandler(MetricsRefuseHandler())
            return
        }
        channel.closeFuture.whenComplete { [state] _ in
            state.withLockedValue {
                guard $0.connections.removeValue(forKey: id) != nil else { return }
                let left = ($0.bySource[source] ?? 1) - 1
                $0.bySource[source] = left > 0 ? left : nil
            }
        }

        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldCount = 64
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withPipeliningAssistance: true,
            withErrorHandling: true,
            withEncoderConfiguration: HTTPResponseEncoder.Configuration(),
            withDecoderLimitConfiguration: decoderLimits
        )
        let clock = MetricsRequestClock(requestTimeout: limits.requestTimeout, idleTimeout: limits.idleTimeout)
        try channel.pipeline.syncOperations.addHandler(clock, position: .first)
        try channel.pipeline.syncOperations.addHandler(
            MetricsHTTPHandler(clock: clock, maxBodyBytes: limits.maxBodyBytes) { [self] in
                try await self.render()
            })
    }

    /// One scrape: the daemon's snapshot, then /proc and rendering on the server's thread.
    private func render() async throws -> [UInt8] {
        let snapshot = await self.snapshot()
        guard let pool = state.withLockedValue({ $0.threadPool }) else { throw ServerError("metrics server stopped") }
        let metrics = self.metrics
        return try await pool.runIfActive { metrics.exposition(snapshot: snapshot) }
    }
}
