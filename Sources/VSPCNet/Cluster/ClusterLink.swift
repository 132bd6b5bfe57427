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
    /// The epoch an ACCEPT of a feed of `key` names: this node's claim as the core knows it (nil: none yet).
    func feedAcceptEpoch(_ key: ConsoleKey) -> Int64?
}

extension ConcentratorDriver: ClusterLinkHost {
    func feedAcceptEpoch(_ key: ConsoleKey) -> Int64? { read { $0.feedAcceptEpoch(key) } }
}

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
    var maxUnauthenticated = 256
    /// Of those, from one address: a stranger (or a node gone wrong) cannot take the whole allowance.
    var maxUnauthenticatedPerAddress = 64
    /// Feeds this node has opening to one node (not accepted yet); more wait their turn, so that a burst
    /// (hundreds of people attaching after a failover) stays inside the other node's per-address bound, even
    /// with two nodes on one address.
    var maxOpeningPerNode = 32
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
    private var server: Channel?
    private var channels: [ObjectIdentifier: Channel] = [:]
    private(set) var unauthenticated = 0
    /// Incoming connections without HELLO yet, by the peer's IP address.
    private(set) var unauthenticatedFrom: [String: Int] = [:]
    /// Feeds connecting to each node, and those waiting for a turn.
    private(set) var opening: [String: Int] = [:]
    private var waitingToOpen: [String: [() -> Void]] = [:]

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
                    try channel.pipeline.syncOperations.addHandler(LinkOwnerHandler(link: self, address: Self.address(channel)))
                }
            }
        do {
            server = try await bootstrap.bind(host: settings.listen.host, port: settings.listen.port).get()
        } catch {
            throw ListenError("the cluster link \(settings.listen)", error)
        }
    }

    static func decoder() -> LinkFrameHandler { LinkFrameHandler() }

    /// Counts a new incoming connection, or refuses it past the bounds. On the loop.
    private func admit(_ channel: Channel) -> Bool {
        let address = Self.address(channel)
        let fromThere = unauthenticatedFrom[address, default: 0]
        guard channels.count < settings.maxConnections, unauthenticated < settings.maxUnauthenticated,
              fromThere < settings.maxUnauthenticatedPerAddress else {
            logger.warning("cluster link: refused a connection from \(channel.remoteAddress.map(PeerAddress.describe) ?? "?"): \(channels.count) link connections, \(unauthenticated) without HELLO, \(fromThere) of them from \(address)")
            return false
        }
        track(channel)
        unauthenticated += 1
        unauthenticatedFrom[address] = fromThere + 1
        return true
    }

    /// The peer's IP address, the key of the per-address bound.
    static func address(_ channel: Channel) -> String { channel.remoteAddress?.ipAddress ?? "?" }

    private func track(_ channel: Channel) {
        let key = ObjectIdentifier(channel)
        channels[key] = channel
        channel.closeFuture.whenComplete { [weak self] _ in self?.channels[key] = nil }
    }

    /// A connection from `address` sent its HELLO, or closed without one.
    func helloArrived(from address: String) {
        unauthenticated -= 1
        let left = unauthenticatedFrom[address, default: 1] - 1
        unauthenticatedFrom[address] = left > 0 ? left : nil
    }

    /// Opens a feed of `key` from its owner `node` at `link` on connection `id` (the core's negative id).
    /// On the loop. Its outcome comes back as `.feedOpened` / `.feedBytes` / `.feedClosed`. The feed's sink is
    /// registered at once, so that the core's `.close` reaches the feed even while it connects.
    func openFeed(_ id: ConnectionID, _ key: ConsoleKey, node: String, link: String, sinceEpoch: Int64?) {
        guard let host else { return }
        // Past `maxOpeningPerNode` it waits; its sink is registered now, so that the core's close reaches it.
        guard opening[node, default: 0] >= settings.maxOpeningPerNode else {
            return connectFeed(id, key, node: node, link: link, sinceEpoch: sinceEpoch, sink: nil)
        }
        let sink = LinkSink(nil)
        host.register(id, sink)
        waitingToOpen[node, default: []].append { [weak self] in
            guard let self else { return }
            guard !sink.closedHere else { return host.unregister(id) }
            self.connectFeed(id, key, node: node, link: link, sinceEpoch: sinceEpoch, sink: sink)
        }
    }

    /// A feed opening to `node` was accepted, or failed: the next waiting one goes.
    func feedSettled(node: String) {
        let left = opening[node, default: 1] - 1
        opening[node] = left > 0 ? left : nil
        while opening[node, default: 0] < settings.maxOpeningPerNode, var waiting = waitingToOpen[node], !waiting.isEmpty {
            let next = waiting.removeFirst()
            waitingToOpen[node] = waiting.isEmpty ? nil : waiting
            next()
        }
    }

    private func connectFeed(_ id: ConnectionID, _ key: ConsoleKey, node: String, link: String, sinceEpoch: Int64?,
                             sink registered: LinkSink?) {
        guard let host else { return }
        func fail(_ reason: String) {
            host.unregister(id)
            host.handle(.cluster(.feedClosed(id, reason: reason)))
        }
        guard let endpoint = Endpoint.parse(link, defaultHost: "127.0.0.1"), endpoint.port > 0 else {
            return fail("node \(node) has no usable link address (\(link))")
        }
        guard channels.count < settings.maxConnections else {
            return fail("too many cluster link connections (\(channels.count))")
        }
        let hello = ClusterLinkFrame.Hello(node: settings.node, uuid: key.uuid, label: key.label, sinceEpoch: sinceEpoch)
        let tls = settings.clientTLS
        let sink = registered ?? LinkSink(nil)
        if registered == nil { host.register(id, sink) }
        opening[node, default: 0] += 1
        let settle = FeedSettle { [weak self] in self?.feedSettled(node: node) }
        ClientBootstrap(group: loop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: settings.waterMark)
            .channelInitializer { [self] channel in
                let handler = LinkFeedHandler(id: id, hello: hello, owner: node, link: self, sink: sink, settle: settle)
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
                    settle.now()
                    self?.logger.debug("cluster link: connecting to node \(node) at \(link): \(error)")
                    host.unregister(id)
                    // The system's words ("connection refused"); SwiftNIO's at debug level above.
                    let why = SocketErrorText.errnoCode(of: error).map { String(cString: strerror($0)).lowercased() } ?? "\(error)"
                    if !sink.closedHere { fail("cannot reach node \(node) at \(link): \(why)") }
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

/// A feed's opening ends once (accepted, closed, or never connected): then `now()` lets the next
/// waiting feed to the same node go. On the loop.
final class FeedSettle {
    private var action: (() -> Void)?
    init(_ action: @escaping () -> Void) { self.action = action }
    func now() {
        let run = action
        action = nil
        run?()
    }
}

/// A link connection seen from the core: DATA frames out; on the owner's side, ACCEPT before the first one,
/// and CLOSE with the reason when the core ends it.
final class LinkSink: ConnectionSink {
    /// The connection; nil while a feed still connects (the core sends on a feed only once it opened).
    private(set) var channel: Channel?
    /// The ACCEPT still to send (owner's side), made when it goes.
    private var accept: (() -> ClusterLinkFrame)?
    /// The core closed it (not the peer).
    private(set) var closedHere = false
    /// The last notice the core gave it: the CLOSE's reason.
    private var lastNotice: String?

    init(_ channel: Channel?, accept: (() -> ClusterLinkFrame)? = nil) {
        self.channel = channel
        self.accept = accept
    }

    /// A feed's connection is up. False: the core closed the feed meanwhile (the connection is to be closed).
    func attach(_ channel: Channel) -> Bool {
        self.channel = channel
        return !closedHere
    }

    func sendAccept() {
        guard let make = accept, let channel else { return }
        accept = nil
        channel.writeAndFlush(LinkWire.buffer(make()), promise: nil)
    }

    func write(_ buffer: ByteBuffer) {
        guard !closedHere, let channel else { return }
        sendAccept()
        channel.writeAndFlush(LinkWire.data(buffer), promise: nil)
    }

    /// A telnet BREAK for the VM (a feed's side: the owner sends it).
    func sendBreak() {
        guard !closedHere, let channel else { return }
        channel.writeAndFlush(LinkWire.buffer(.brk), promise: nil)
    }

    func close(flush: Bool) {
        guard !closedHere else { return }
        closedHere = true
        guard let channel else { return }
        // An accepted session dropped without flushing (a peer that does not read): at once, without waiting
        // behind what it did not take. A refusal still says why.
        if !flush, accept == nil { return channel.close(promise: nil) }
        // Closed before ACCEPT: the core refused the feed (it serves only consoles this node owns).
        let reason = lastNotice ?? (accept != nil ? "not the owner" : "closed")
        channel.writeAndFlush(LinkWire.close(reason)).whenComplete { _ in channel.close(promise: nil) }
        channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
    }

    func end(exitStatus: Int) { close(flush: true) }
    func closeTransport() { close(flush: true) }

    func setReading(_ on: Bool) {
        guard let channel else { return }
        channel.setOption(ChannelOptions.autoRead, value: on).whenSuccess { if on { channel.read() } }
    }

    func notice(_ text: String) { lastNotice = text }
}
