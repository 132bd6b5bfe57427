import NIOCore
import NIOHTTP1

/// One connection to the metrics endpoint, behind NIOHTTP1's server pipeline (decoder with bounded headers,
/// pipelining assistance, 400 on a malformed request). Serves `GET`/`HEAD /metrics`; 404 for other paths,
/// 405 for other methods. Keep-alive is honoured. The connection's `MetricsRequestClock` closes it when a request
/// takes too long to arrive or a kept-alive connection stays idle; it is also closed when a request body passes
/// `maxBodyBytes`.
final class MetricsHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    private let scrape: @Sendable () async throws -> [UInt8]
    private let clock: MetricsRequestClock
    private let maxBodyBytes: Int

    private var context: ChannelHandlerContext?
    private var request: HTTPRequestHead?
    private var bodyBytes = 0

    init(clock: MetricsRequestClock, maxBodyBytes: Int, scrape: @escaping @Sendable () async throws -> [UInt8]) {
        self.clock = clock
        self.maxBodyBytes = maxBodyBytes
        self.scrape = scrape
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
            bodyBytes = 0
        case .body(let chunk):
            bodyBytes += chunk.readableBytes
            if bodyBytes > maxBodyBytes {
                request = nil
                context.close(promise: nil)
            }
        case .end:
            guard let head = request else { return }
            request = nil
            clock.requestReceived()
            respond(to: head, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // Parser errors were answered with 400 by HTTPServerProtocolErrorHandler; anything else ends the connection.
        context.close(promise: nil)
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == "/metrics" else {
            send(.notFound, body: Array("not found; metrics are at /metrics\n".utf8), for: head)
            return
        }
        guard head.method == .GET || head.method == .HEAD else {
            send(.methodNotAllowed, body: Array("only GET and HEAD\n".utf8), extraHeaders: [("Allow", "GET, HEAD")], for: head)
            return
        }
        let promise = context.eventLoop.makePromise(of: [UInt8].self)
        let scrape = self.scrape
        promise.completeWithTask { try await scrape() }
        promise.futureResult.assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let text):
                self.send(.ok, body: text, contentType: Self.contentType, for: head)
            case .failure:
                self.send(.serviceUnavailable, body: Array("metrics unavailable\n".utf8), for: head)
            }
        }
    }

    private func send(
        _ status: HTTPResponseStatus,
        body: [UInt8],
        contentType: String = "text/plain; charset=utf-8",
        extraHeaders: [(String, String)] = [],
        for request: HTTPRequestHead
    ) {
        guard let context, context.channel.isActive else { return }
        let keepAlive = request.isKeepAlive && !request.headers.contains(name: "upgrade")
        var headers = HTTPHeaders([
            ("Content-Type", contentType),
            ("Content-Length", String(body.count)),
            ("Connection", keepAlive ? "keep-alive" : "close"),
        ])
        headers.add(contentsOf: extraHeaders)
        let version: HTTPVersion = request.version.major == 1 && request.version.minor == 0 ? .http1_0 : .http1_1
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD && !body.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        done.futureResult.assumeIsolated().whenComplete { [self] _ in
            if keepAlive {
                self.clock.responseSent()
            } else {
                self.context?.close(promise: nil)
            }
        }
    }
}

/// The deadlines of one metrics connection, first in its pipeline so that it sees every byte that arrives:
/// a request must arrive whole within `requestTimeout` of the connection's opening or of its first byte, and a
/// kept-alive connection may wait `idleTimeout` after a response for the next request's first byte. The
/// connection is closed at a deadline; none runs while a request is being answered.
final class MetricsRequestClock: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private enum Phase { case awaitingRequest, answering, idle }

    private let requestTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var phase = Phase.awaitingRequest
    /// Bytes arrived while a request was being answered (the next, pipelined request).
    private var bytesWhileAnswering = false
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(requestTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.requestTimeout = requestTimeout
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        arm(requestTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch phase {
        case .idle:
            phase = .awaitingRequest
            arm(requestTimeout)
        case .answering:
            bytesWhileAnswering = true
        case .awaitingRequest:
            break
        }
        context.fireChannelRead(data)
    }

    /// A whole request has arrived: no deadline until it is answered.
    func requestReceived() {
        phase = .answering
        bytesWhileAnswering = false
        timer?.cancel()
        timer = nil
    }

    /// The response went out on a kept-alive connection.
    func responseSent() {
        if bytesWhileAnswering {
            phase = .awaitingRequest
            arm(requestTimeout)
        } else {
            phase = .idle
            arm(idleTimeout)
        }
    }

    private func arm(_ amount: TimeAmount) {
        timer?.cancel()
        guard let context else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: amount) { [self] in
            self.context?.close(promise: nil)
        }
    }
}

/// Answers a connection beyond the limit with 503, then closes it. The write side is shut first and what the
/// client sends is read and dropped, so the kernel does not reset the connection (and lose the 503) because
/// of an unread request; the connection is closed when the client closes, or after `linger` at most.
final class MetricsRefuseHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let response: [UInt8] = {
        let body = "too many connections\n"
        return Array((
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        ).utf8)
    }()

    private let linger: TimeAmount
    private var timer: Scheduled<Void>?

    init(linger: TimeAmount = .seconds(2)) { self.linger = linger }

    func channelActive(context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: Self.response.count)
        buffer.writeBytes(Self.response)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(mode: .output, promise: nil) }
        timer = context.eventLoop.scheduleTask(in: linger) { channel.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}  // whatever it sends is dropped

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}
