import Foundation
import HTTPTypes
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import VSPCCore

/// A browser's session on the web door: console bytes go out as binary frames, notices as text frames (the
/// page's status line). What waits for the browser is bounded: past `limit` the machine is told (as a channel
/// crossing its high water mark is) and drops the person; the VM never waits.
final class WebSocketSink: ConnectionSink, Sendable {
    enum Frame: Sendable {
        case bytes(ByteBuffer)
        case notice(String)
    }

    private struct State {
        var frames: [Frame] = []
        var queued = 0
        /// No more frames: what is queued goes out, then the WebSocket is closed.
        var closing = false
        var waiter: CheckedContinuation<Void, Never>?
        var behind: (@Sendable () -> Void)?
        var behindReported = false
        var loop: (any EventLoop)?
    }

    let limit: Int
    let channel: any Channel
    private let state = NIOLockedValueBox(State())
    /// Console bytes go out in frames of at most this many bytes.
    static let piece = 16 * 1024

    init(limit: Int, channel: any Channel) {
        self.limit = limit
        self.channel = channel
    }

    /// Set on the concentrator's loop once the session has its id: how to report falling behind.
    func attach(id: ConnectionID, loop: any EventLoop, behind: @escaping @Sendable () -> Void) {
        state.withLockedValue {
            $0.behind = behind
            $0.loop = loop
        }
    }

    func write(_ buffer: ByteBuffer) {
        var buffer = buffer
        var frames: [Frame] = []
        while buffer.readableBytes > 0, let piece = buffer.readSlice(length: min(Self.piece, buffer.readableBytes)) {
            frames.append(.bytes(piece))
        }
        enqueue(frames, bytes: frames.reduce(0) { if case .bytes(let b) = $1 { return $0 + b.readableBytes }; return $0 })
    }

    func notice(_ text: String) { enqueue([.notice(text)], bytes: text.utf8.count) }

    private func enqueue(_ frames: [Frame], bytes: Int) {
        let (waiter, report) = state.withLockedValue { s -> (CheckedContinuation<Void, Never>?, (@Sendable () -> Void, any EventLoop)?) in
            guard !s.closing else { return (nil, nil) }
            s.frames.append(contentsOf: frames)
            s.queued += bytes
            var report: (@Sendable () -> Void, any EventLoop)?
            if s.queued > limit, !s.behindReported, let behind = s.behind, let loop = s.loop {
                s.behindReported = true
                report = (behind, loop)
            }
            defer { s.waiter = nil }
            return (s.waiter, report)
        }
        waiter?.resume()
        // Reported from a fresh turn of the loop, never from inside the write that crossed the bound.
        if let (behind, loop) = report { loop.execute(behind) }
    }

    func close(flush: Bool) {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Void, Never>? in
            s.closing = true
            if !flush {
                s.frames = []
                s.queued = 0
            }
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
        // A browser that does not read cannot take a close frame either: its connection goes now.
        if !flush { channel.close(promise: nil) }
    }

    func end(exitStatus: Int) { close(flush: true) }
    func closeTransport() { close(flush: true) }
    func setReading(_ on: Bool) {}

    /// The browser left: nothing more is sent.
    func finish() { close(flush: false) }

    /// The frames waiting now, or nil once closing and all sent; waits while there are none.
    private func next() async -> [Frame]? {
        while true {
            let taken = state.withLockedValue { s -> [Frame]?? in
                if !s.frames.isEmpty {
                    defer { s.frames = [] }
                    return .some(s.frames)
                }
                return s.closing ? .some(nil) : nil
            }
            if let taken { return taken }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLockedValue { s -> Bool in
                    if !s.frames.isEmpty || s.closing { return true }
                    s.waiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        }
    }

    /// Writes what is queued, in order, as the browser takes it; closes the WebSocket once the session ends.
    func run(_ outbound: WebSocketOutboundWriter) async {
        do {
            while let frames = await next() {
                for frame in frames {
                    switch frame {
                    case .bytes(let bytes):
                        try await outbound.write(.binary(bytes))
                        state.withLockedValue { $0.queued -= bytes.readableBytes }
                    case .notice(let text):
                        try await outbound.write(.text(text))
                        state.withLockedValue { $0.queued -= text.utf8.count }
                    }
                }
            }
            try await outbound.close(.normalClosure, reason: nil)
        } catch {
            channel.close(promise: nil)
        }
    }
}

/// The upgrade of `GET /console/<token>/ws`: the origin is checked, then the token is claimed for this browser
/// (its cookie) before the upgrade; a refused request is not upgraded (an empty `400`, and the connection is
/// closed).
enum WebConsoleSocket {
    /// Frames and messages from the browser are at most this long.
    static let maxFrame = 64 * 1024

    static var configuration: WebSocketServerConfiguration {
        WebSocketServerConfiguration(maxFrameSize: maxFrame, autoPing: .enabled(timePeriod: .seconds(30)),
                                     closeTimeout: .seconds(10))
    }

    typealias Handler = WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>

    static func shouldUpgrade(_ web: WebConsole?)
        -> @Sendable (HTTPRequest, any Channel, Logger) async throws -> ShouldUpgradeResult<Handler> {
        { request, channel, _ in
            guard let web, let path = request.path, let token = WebConsoleRoutes.token(inSocketPath: path) else {
                return .dontUpgrade
            }
            guard WebOrigin.allows(origin: request.headerFields[.origin], host: request.authority,
                                   publicBase: web.publicBase) else { return .dontUpgrade }
            let hash = WebConsoleSecrets.hash(token)
            let address = WebConsoleRoutes.address(channel.remoteAddress)
            let cookie = WebConsoleRoutes.cookie(request.headerFields, hash: hash)
            guard case .success(let grant) = await web.claim(hash: hash, cookie: cookie, address: address) else {
                return .dontUpgrade
            }
            // From here the connection is a WebSocket: the HTTP request deadlines and the answer to malformed
            // HTTP no longer apply (pings do). Run before the upgrade itself, which is queued after this.
            channel.eventLoop.execute {
                let pipeline = channel.pipeline.syncOperations
                if let clock = try? pipeline.handler(type: HTTPRequestClock.self) { pipeline.removeHandler(clock, promise: nil) }
                if let errors = try? pipeline.handler(type: HTTPServerProtocolErrorHandler.self) {
                    pipeline.removeHandler(errors, promise: nil)
                }
                if let keepAlive = try? pipeline.handler(type: HTTP1KeepAlive.self) { pipeline.removeHandler(keepAlive, promise: nil) }
            }
            let peer = PeerAddress.describe(channel.remoteAddress)
            return .upgrade([:]) { inbound, outbound, _ in
                await session(web, grant: grant, hash: hash, peer: peer, channel: channel, inbound: inbound, outbound: outbound)
            }
        }
    }

    static func session(_ web: WebConsole, grant: ConsoleTokens.Grant, hash: String, peer: String, channel: any Channel,
                        inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async {
        let sink = WebSocketSink(limit: web.backlog, channel: channel)
        guard let id = await web.started(sink, grant: grant, hash: hash, peer: peer) else { return await web.release(hash: hash) }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await sink.run(outbound) }
            do {
                for try await message in inbound.messages(maxSize: maxFrame) {
                    let bytes: [UInt8]
                    switch message {
                    case .binary(let buffer): bytes = Array(buffer.readableBytesView)
                    case .text(let text): bytes = Array(text.utf8)
                    }
                    if !bytes.isEmpty { web.input(id, bytes) }
                }
            } catch {}
            sink.finish()
            await group.waitForAll()
        }
        web.ended(id)
    }
}

/// The HTTP listener's connections: HTTP/1.1 with the WebSocket upgrade; until a WebSocket takes a connection
/// over, a malformed request is answered `400` and closed, and a request that does not keep the connection
/// alive (HTTP/1.0 without keep-alive) has it closed after its answer, as on a plain HTTP/1.1 channel.
struct WebConsoleUpgradeChannel: ServerChildChannel {
    typealias Value = HTTP1WebSocketUpgradeChannel.Value
    let inner: HTTP1WebSocketUpgradeChannel

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let pipeline = channel.pipeline.syncOperations
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            let errors = HTTPServerProtocolErrorHandler()
            try pipeline.addHandler(errors, position: .after(decoder))
            try pipeline.addHandler(HTTP1KeepAlive(), position: .after(errors))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// Closes the connection once a request that does not keep it alive (HTTP/1.0 without keep-alive) is answered.
final class HTTP1KeepAlive: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var closeAfterResponse = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data), !head.isKeepAlive { closeAfterResponse = true }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard closeAfterResponse, case .end = unwrapOutboundIn(data) else { return context.write(data, promise: promise) }
        let written = promise ?? context.eventLoop.makePromise()
        let channel = context.channel
        written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        context.writeAndFlush(data, promise: written)
    }
}
