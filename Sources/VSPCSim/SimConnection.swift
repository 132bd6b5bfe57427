import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import VSPCCore

public struct SimError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A TCP (optionally TLS) connection that records everything it receives, decodes it as telnet, and lets a
/// role (ESXi, a person's telnet client, or a raw script) answer events as they arrive. Thread-safe.
public class SimConnection: @unchecked Sendable {
    let lock = NSLock()
    var channel: Channel?
    private var rawReceived: [UInt8] = []
    private var dataReceived: [UInt8] = []
    private var decoder = TelnetDecoder(maxSubnegotiation: 1 << 16)
    private var isClosed = false
    /// When false, bytes are only recorded raw (no telnet decoding, no answers).
    let decodes: Bool

    init(decodes: Bool = true) {
        self.decodes = decodes
    }

    /// Connects to host:port; `tls` wraps it in TLS without certificate verification (ESXi's telnets://).
    /// `localHost`: the local address to connect from (e.g. 127.0.0.2, to look like another host).
    func open(host: String, port: Int, tls: Bool, group: EventLoopGroup, localHost: String? = nil) async throws {
        var sslContext: NIOSSLContext?
        if tls {
            var config = TLSConfiguration.makeClientConfiguration()
            config.certificateVerification = .none
            sslContext = try NIOSSLContext(configuration: config)
        }
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(10))
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: sslContext, serverHostname: nil))
                    }
                    try channel.pipeline.syncOperations.addHandler(SimHandler(owner: self))
                }
            }
        if let localHost { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: localHost, port: 0)) }
        let channel = try await bootstrap.connect(host: host, port: port).get()
        // The connect future may complete before channelActive has run: make writes work from here on.
        lock.withLock { self.channel = channel }
    }

    /// The channel is active: keep it, then let the role speak first (before any byte is read).
    func attach(_ channel: Channel) {
        lock.withLock { self.channel = channel }
        didOpen()
    }

    /// Called once connected (before any byte is read).
    func didOpen() {}

    /// Called for each decoded telnet event, on the event loop.
    func handle(_ event: TelnetEvent) {}

    func received(_ buffer: ByteBuffer) {
        var events: [TelnetEvent] = []
        lock.lock()
        rawReceived.append(contentsOf: buffer.readableBytesView)
        if decodes {
            decoder.decode(buffer.readableBytesView) { event in
                if case .data(let bytes) = event { dataReceived.append(contentsOf: bytes) }
                events.append(event)
            }
        }
        let frozen = isFrozen
        lock.unlock()
        if frozen { return }
        for event in events { handle(event) }
    }

    private var isFrozen = false

    /// From now on nothing received is answered: a host that died behind a half-open connection.
    public func freeze() {
        lock.lock()
        isFrozen = true
        lock.unlock()
    }

    func markClosed() {
        lock.lock()
        isClosed = true
        lock.unlock()
    }

    /// Stops reading the socket (what the peer sends stays in the kernel's buffers and then in the peer's
    /// queue), while writes still go out: a host that is backed up. `resumeReading()` undoes it.
    public func pauseReading() {
        lock.lock()
        let channel = self.channel
        lock.unlock()
        _ = channel?.setOption(ChannelOptions.autoRead, value: false)
    }

    public func resumeReading() {
        lock.lock()
        let channel = self.channel
        lock.unlock()
        _ = channel?.setOption(ChannelOptions.autoRead, value: true)
    }

    /// Writes raw bytes (no escaping).
    public func write(raw bytes: [UInt8]) {
        lock.lock()
        let channel = self.channel
        lock.unlock()
        channel?.writeAndFlush(ByteBuffer(bytes: bytes), promise: nil)
    }

    /// Writes in-band data, doubling 0xFF.
    public func send(_ bytes: [UInt8]) {
        write(raw: TelnetEncoder.escaped(bytes))
    }

    public func close() {
        lock.lock()
        let channel = self.channel
        lock.unlock()
        channel?.close(promise: nil)
    }

    public var raw: [UInt8] { lock.lock(); defer { lock.unlock() }; return rawReceived }
    /// In-band data received so far, decoded.
    public var data: [UInt8] { lock.lock(); defer { lock.unlock() }; return dataReceived }
    public var closed: Bool { lock.lock(); defer { lock.unlock() }; return isClosed }

    /// Removes and returns the data received so far.
    public func takeData() -> [UInt8] {
        lock.lock(); defer { lock.unlock() }
        let d = dataReceived
        dataReceived = []
        return d
    }

    /// Polls `condition` until it holds or `timeout` seconds pass.
    public func wait(_ what: String, timeout: Double = 10, _ condition: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            if Date() > deadline { throw SimError("timed out after \(timeout) s waiting for \(what)") }
            try await Task.sleep(nanoseconds: 2_000_000)
        }
    }

    public func waitForData(count: Int, timeout: Double = 10) async throws {
        try await wait("\(count) bytes of data (have \(data.count))", timeout: timeout) { data.count >= count }
    }

    public func waitForClose(timeout: Double = 10) async throws {
        try await wait("the connection to close", timeout: timeout) { closed }
    }
}

final class SimHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let owner: SimConnection

    init(owner: SimConnection) { self.owner = owner }

    func channelActive(context: ChannelHandlerContext) {
        owner.attach(context.channel)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        owner.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        owner.markClosed()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// A person's telnet client on a VM's port: agrees to BINARY/SGA/ECHO and collects the console output.
public final class SimulatedClient: SimConnection, @unchecked Sendable {
    public static func connect(host: String = "127.0.0.1", port: Int,
                               group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                               localHost: String? = nil) async throws -> SimulatedClient {
        let client = SimulatedClient()
        try await client.open(host: host, port: port, tls: false, group: group, localHost: localHost)
        return client
    }

    override func handle(_ event: TelnetEvent) {
        guard case .negotiate(let verb, let option) = event else { return }
        switch verb {
        case .will: write(raw: TelnetEncoder.negotiate(.do, option))
        case .do: write(raw: TelnetEncoder.negotiate(.will, option))
        default: break
        }
    }
}

/// A raw TCP peer: records bytes, answers nothing. For scripted and hostile input.
public final class RawPeer: SimConnection, @unchecked Sendable {
    public static func connect(host: String = "127.0.0.1", port: Int, tls: Bool = false,
                               group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                               localHost: String? = nil) async throws -> RawPeer {
        let peer = RawPeer(decodes: false)
        try await peer.open(host: host, port: port, tls: tls, group: group, localHost: localHost)
        return peer
    }
}
