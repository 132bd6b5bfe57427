import Foundation
import Logging
import NIOCore
import NIOExtras
import NIOPosix
import NIOSSL
import VSPCStore

/// The running daemon: the proxy port for ESXi, the per-VM ports for people, and the admin endpoint.
/// All networking runs on one event loop (serial consoles are slow; one loop makes the concentrator's state
/// race-free); the database writes on the store's own thread.
public final class VSPCServer: @unchecked Sendable {
    public let config: DaemonConfig
    let logger: Logger
    let store: Store
    let group: MultiThreadedEventLoopGroup
    let concentrator: Concentrator
    private var proxyChannel: Channel?
    private var adminChannel: Channel?

    public init(config: DaemonConfig, store: Store, logger: Logger) {
        self.config = config
        self.logger = logger
        self.store = store
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.concentrator = Concentrator(config: config, store: store, logger: logger, group: group)
    }

    /// The bound proxy and admin addresses (useful with port 0).
    public var proxyPort: Int? { proxyChannel?.localAddress?.port }
    public var adminPort: Int? { adminChannel?.localAddress?.port }
    /// The loop everything runs on (the systemd watchdog pings from it, so a stalled loop stops the pings).
    public var eventLoop: any EventLoop { concentrator.loop }

    /// Loads assignments, reopens the known ports and binds the proxy and admin ports.
    public func start() async throws {
        let assignments = try store.loadAssignments()
        var scrollback: [ConsoleKey: [UInt8]] = [:]
        if config.scrollbackBytes > 0 {
            for s in try store.allScrollback() {
                scrollback[ConsoleKey(uuid: s.uuid, label: s.label)] = Array(s.data.suffix(config.scrollbackBytes))
            }
        }
        let concentrator = self.concentrator
        let baseline = Self.openDescriptors() + 2 // + the proxy and admin listeners about to open
        try await concentrator.loop.submit {
            concentrator.start(assignments: assignments, scrollback: scrollback, descriptorBaseline: baseline)
        }.get()

        let tls = config.tls
        let logger = self.logger
        let proxy = ServerBootstrap(group: concentrator.loop)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let handler = VMConnectionHandler(id: concentrator.makeID(), concentrator: concentrator)
                return channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        do {
            proxyChannel = try await proxy.bind(host: config.proxyHost, port: config.proxyPort).get()
        } catch {
            throw ServerError("cannot listen on the proxy port \(config.proxyHost):\(config.proxyPort): \(error)")
        }
        logger.notice("proxy listening on \(config.proxyHost):\(proxyPort ?? config.proxyPort)\(tls != nil ? " (TLS)" : "")")

        let admin = ServerBootstrap(group: concentrator.loop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineBasedFrameDecoder(), maximumBufferSize: AdminProtocol.maxRequestBytes))
                    try channel.pipeline.syncOperations.addHandler(
                        AdminHandler(id: concentrator.makeID(), concentrator: concentrator))
                }
            }
        do {
            adminChannel = try await admin.bind(host: config.adminHost, port: config.adminPort).get()
        } catch {
            throw ServerError("cannot listen on the admin port \(config.adminHost):\(config.adminPort): \(error)")
        }
        logger.notice("admin endpoint on \(config.adminHost):\(adminPort ?? config.adminPort); per-VM ports on \(config.listenHost), range \(config.portRangeStart)-\(config.portRangeEnd)")
        store.enqueue(.event(NewEvent(kind: "daemon-start", detail: "proxy \(config.proxyHost):\(proxyPort ?? 0)")))
    }

    /// Descriptors open in this process now (Linux: /proc/self/fd; elsewhere a conservative guess).
    static func openDescriptors() -> Int {
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            return max(0, entries.count - 1) // minus the descriptor of the directory listing itself
        }
        return 32
    }

    /// Graceful stop: closes the ports and connections, saves scrollback, commits everything queued.
    public func shutdown() async {
        let concentrator = self.concentrator
        try? await proxyChannel?.close()
        try? await adminChannel?.close()
        _ = try? await concentrator.loop.flatSubmit { concentrator.shutdown() }.get()
        store.enqueue(.event(NewEvent(kind: "daemon-stop")))
        store.flush()
        try? await group.shutdownGracefully()
        logger.notice("stopped; all records committed")
    }
}

public struct ServerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One admin connection: one JSON request line, one JSON response line, then (for `tail`) raw console bytes.
final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let id: ConnectionID
    let concentrator: Concentrator
    var channel: Channel?
    var answered = false
    var reserved = false
    var queuedBytes = 0

    init(id: ConnectionID, concentrator: Concentrator) {
        self.id = id
        self.concentrator = concentrator
    }

    func channelActive(context: ChannelHandlerContext) {
        channel = context.channel
        reserved = concentrator.reserveDescriptors(1)
        if !reserved {
            respond(AdminResponse(ok: false, error: "vspcd is at its open-file limit"), thenClose: true)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if reserved { concentrator.releaseDescriptors(1) }
        reserved = false
        concentrator.unfollow(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is ByteToMessageDecoderError.PayloadTooLargeError, !answered {
            respond(AdminResponse(ok: false, error: "request longer than \(AdminProtocol.maxRequestBytes) bytes"), thenClose: true)
        } else {
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        let line = unwrapInboundIn(data)
        let request: AdminRequest
        do {
            request = try JSONDecoder().decode(AdminRequest.self, from: Data(line.readableBytesView))
        } catch {
            respond(AdminResponse(ok: false, error: "malformed request: expected one JSON object per line"), thenClose: true)
            return
        }
        guard request.version == AdminProtocol.version else {
            respond(AdminResponse(ok: false, error: "unsupported protocol version \(request.version); this daemon speaks \(AdminProtocol.version)"), thenClose: true)
            return
        }
        switch request.command {
        case "list":
            respond(AdminResponse(ok: true, vms: concentrator.consoleInfos()), thenClose: true)
        case "status":
            respond(AdminResponse(ok: true, status: concentrator.status()), thenClose: true)
        case "tail":
            guard let query = request.vm, !query.isEmpty else {
                respond(AdminResponse(ok: false, error: "tail needs a vm"), thenClose: true)
                return
            }
            switch concentrator.findConsole(query, label: request.label) {
            case .failure(let error):
                respond(AdminResponse(ok: false, error: error.message), thenClose: true)
            case .success(let console):
                let backlog = console.scrollback.contents(last: request.bytes.map { max(0, $0) })
                respond(AdminResponse(ok: true, vm: concentrator.info(console), backlog: backlog.count), thenClose: false)
                // The backlog is written whole (it is bounded by --scrollback); the bound applies to live bytes.
                let written = stream(backlog, bounded: false)
                if request.follow == true {
                    concentrator.follow(console, self)
                } else if let channel {
                    // Close only once the backlog has left: a close discards writes still queued.
                    (written ?? channel.eventLoop.makeSucceededVoidFuture()).whenComplete { _ in channel.close(promise: nil) }
                }
            }
        default:
            respond(AdminResponse(ok: false, error: "unknown command \(request.command.debugDescription)"), thenClose: true)
        }
    }

    private func respond(_ response: AdminResponse, thenClose: Bool) {
        answered = true
        guard let channel else { return }
        var data = (try? JSONEncoder().encode(response)) ?? Data("{\"version\":1,\"ok\":false}".utf8)
        data.append(0x0A)
        let write = channel.writeAndFlush(ByteBuffer(bytes: data))
        if thenClose { write.whenComplete { _ in channel.close(promise: nil) } }
    }

    /// Console bytes for `tail`. With `bounded`, a follower that stops reading is dropped like a slow client.
    @discardableResult
    func stream(_ bytes: [UInt8], bounded: Bool = true) -> EventLoopFuture<Void>? {
        guard let channel, !bytes.isEmpty else { return nil }
        if bounded, queuedBytes + bytes.count > concentrator.config.clientBufferLimit {
            concentrator.logger.warning("dropping a tail follower: it stopped reading")
            close()
            return nil
        }
        queuedBytes += bytes.count
        let n = bytes.count
        let write = channel.writeAndFlush(ByteBuffer(bytes: bytes))
        write.whenComplete { [weak self] _ in self?.queuedBytes -= n }
        return write
    }

    func close() {
        channel?.close(promise: nil)
    }
}
