import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import VSPCClient
import VSPCCore

/// What the internal link needs of the driver: ids, sinks, and the events it hands in. `ConcentratorDriver` is
/// one; a test may bring its own.
protocol ClusterLinkHost: AnyObject {
    var loop: EventLoop { get }
    func makeID() -> ConnectionID
    func register(_ id: ConnectionID, _ sink: ConnectionSink)
    func unregister(_ id: ConnectionID)
    func handle(_ event: ConcentratorEvent)
}

extension ConcentratorDriver: ClusterLinkHost {}

/// How the internal link listens and connects (`--cluster-listen`, `--cluster-cert/-key/-ca`) and its bounds.
struct ClusterLinkSettings {
    /// This node's name, sent in HELLO and ACCEPT.
    var node: String
    var listen: Endpoint
    /// Mutual TLS: the server requires a client certificate the CA signed; the client verifies the server.
    var serverTLS: NIOSSLContext?
    var clientTLS: NIOSSLContext?
    /// Link connections, in and out, at once; more are refused.
    var maxConnections = 4096
    /// Incoming link connections that have not sent their HELLO yet; more are refused.
    var maxUnauthenticated = 64
    /// A HELLO (on the owner's side) or an ACCEPT (on the feed's side) must arrive within this.
    var helloTimeout: TimeAmount = .seconds(5)
    var connectTimeout: TimeAmount = .seconds(5)
    /// Bytes queued to one link connection before it is not writable (the core drops a feed that falls behind).
    var waterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 1 << 20, high: 2 << 20)
}

/// The internal link: a listener where other nodes ask for feeds of consoles this node owns, and the feed
/// connections this node opens to other owners. Everything runs on the host's event loop.
final class ClusterLink: @unchecked Sendable {
    let settings: ClusterLinkSettings
    weak var host: (any ClusterLinkHost)?
    let loop: EventLoop
    let logger: Logger
    /// The epoch at which this node owns a console, for ACCEPT (the agent's view of the claims).
    var ownerEpoch: @Sendable (ConsoleKey) -> Int64? = { _ in nil }
    private var server: Channel?
    private var channels: [ObjectIdentifier: Channel] = [:]
    private(set) var unauthenticated = 0
    /// Feeds this node serves to other nodes (accepted), and feeds it reads from owners (open).
    private(set) var feedsServed = 0
    private(set) var feedsRead = 0

    init(settings: ClusterLinkSettings, host: any ClusterLinkHost, logger: Logger) {
        self.settings = settings
        self.host = host
        self.loop = host.loop
        self.logger = logger
    }

    /// The bound port (useful with port 0).
    var port: Int? { server?.localAddress?.port }

    var connections: Int { channels.count }

    func start() async throws {
        let settings = self.settings
        let bootstrap = ServerBootstrap(group: loop)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: settings.waterMark)
            .childChannelInitializer { [weak self] channel in
                guard let self, self.admit(channel) else { return channel.close() }
                return channel.eventLoop.makeCompletedFuture {
                    if let tls = settings.serverTLS {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try channel.pipeline.syncOperations.addHandler(Self.decoder())
                    try channel.pipeline.syncOperations.addHandler(LinkOwnerHandler(link: self))
                }
            }
        do {
            server = try await bootstrap.bind(host: settings.listen.host, port: settings.listen.port).get()
        } catch {
            throw ListenError("the cluster link \(settings.listen)", error)
        }
    }

    static func decoder() -> ByteToMessageHandler<LinkFrameDecoder> {
        ByteToMessageHandler(LinkFrameDecoder(), maximumBufferSize: 2 * (LinkFrame.maxPayload + LinkFrame.headerLength))
    }

    /// Counts a new incoming connection, or refuses it past the bounds. On the loop.
    private func admit(_ channel: Channel) -> Bool {
        guard channels.count < settings.maxConnections, unauthenticated < settings.maxUnauthenticated else {
            logger.warning("cluster link: refused a connection from \(channel.remoteAddress.map(PeerAddress.describe) ?? "?"): \(channels.count) link connections, \(unauthenticated) without HELLO")
            return false
        }
        track(channel)
        unauthenticated += 1
        return true
    }

    private func track(_ channel: Channel) {
        let key = ObjectIdentifier(channel)
        channels[key] = channel
        channel.closeFuture.whenComplete { [weak self] _ in self?.channels[key] = nil }
    }

    func helloArrived() { unauthenticated -= 1 }
    func served(_ delta: Int) { feedsServed += delta }
    func read(_ delta: Int) { feedsRead += delta }

    /// Opens a feed of `key` from its owner `node` at `link` on connection `id` (the core's negative id).
    /// On the loop. Its outcome comes back as `.feedOpened` / `.feedBytes` / `.feedClosed`.
    func openFeed(_ id: ConnectionID, _ key: ConsoleKey, node: String, link: String, sinceEpoch: Int64?) {
        guard let host else { return }
        func fail(_ reason: String) { host.handle(.cluster(.feedClosed(id, reason: reason))) }
        guard let endpoint = Endpoint.parse(link, defaultHost: "127.0.0.1"), endpoint.port > 0 else {
            return fail("node \(node) has no usable link address (\(link))")
        }
        guard channels.count < settings.maxConnections else {
            return fail("too many cluster link connections (\(channels.count))")
        }
        let hello = LinkHello(node: settings.node, uuid: key.uuid, label: key.label, sinceEpoch: sinceEpoch)
        let tls = settings.clientTLS
        ClientBootstrap(group: loop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: settings.waterMark)
            .channelInitializer { [self] channel in
                let handler = LinkFeedHandler(id: id, hello: hello, owner: node, link: self)
                return channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: nil))
                    }
                    try channel.pipeline.syncOperations.addHandler(Self.decoder())
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .whenComplete { [weak self] result in
                switch result {
                case .success(let channel): self?.track(channel)
                case .failure(let error):
                    self?.logger.debug("cluster link: connecting to node \(node) at \(link): \(error)")
                    fail("cannot reach node \(node) at \(link): \(error)")
                }
            }
    }

    /// Closes the listener and every link connection.
    func stop() async {
        let channels: [Channel] = (try? await loop.submit { [self] in
            Array(self.channels.values) + (self.server.map { [$0] } ?? [])
        }.get()) ?? []
        for channel in channels { try? await channel.close() }
    }
}

/// A link connection seen from the core: DATA frames out; on the owner's side, ACCEPT before the first one.
final class LinkSink: ConnectionSink {
    let channel: Channel
    /// The ACCEPT still to send (owner's side), before any DATA.
    var accept: LinkFrame?
    /// The core closed it (not the peer).
    private(set) var closedHere = false
    /// The last notice the core gave it: the CLOSE's reason.
    private var lastNotice: String?

    init(_ channel: Channel, accept: LinkFrame? = nil) {
        self.channel = channel
        self.accept = accept
    }

    func sendAccept() {
        guard let frame = accept else { return }
        accept = nil
        channel.writeAndFlush(frame.buffer, promise: nil)
    }

    func write(_ buffer: ByteBuffer) {
        guard !closedHere else { return }
        sendAccept()
        channel.writeAndFlush(LinkFrame.data(Array(buffer.readableBytesView)).buffer, promise: nil)
    }

    func close(flush: Bool) {
        guard !closedHere else { return }
        closedHere = true
        let channel = self.channel
        let reason = accept != nil ? (lastNotice ?? "refused") : (lastNotice ?? "closed")
        channel.writeAndFlush(LinkFrame.close(reason).buffer).whenComplete { _ in channel.close(promise: nil) }
        channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
    }

    func end(exitStatus: Int) { close(flush: true) }
    func closeTransport() { close(flush: true) }

    func setReading(_ on: Bool) {
        let channel = self.channel
        channel.setOption(ChannelOptions.autoRead, value: on).whenSuccess { if on { channel.read() } }
    }

    func notice(_ text: String) { lastNotice = text }
}
