import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Answers a connection the listener will not serve (not in `--http-allow`, or past the connection limits) with
/// one plain response, then closes it. The write side is shut first and what the client sends is read and
/// dropped, so the kernel does not reset the connection (and lose the answer) because of an unread request; the
/// connection is closed when the client closes, or after `linger` at most.
final class HTTPRefuseHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Why { case forbidden, busy }

    static func response(_ why: Why) -> [UInt8] {
        let (status, body) = why == .forbidden
            ? ("403 Forbidden", "this address may not use vspcd's HTTP listener (--http-allow)\n")
            : ("503 Service Unavailable", "too many connections\n")
        return Array((
            "HTTP/1.1 \(status)\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        ).utf8)
    }

    private let why: Why
    private let linger: TimeAmount
    private var timer: Scheduled<Void>?

    init(_ why: Why, linger: TimeAmount = .seconds(2)) {
        self.why = why
        self.linger = linger
    }

    func channelActive(context: ChannelHandlerContext) {
        let bytes = Self.response(why)
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(mode: .output, promise: nil) }
        timer = context.eventLoop.scheduleTask(in: linger) { channel.close(promise: nil) }
        // Not passed on: the HTTP handlers behind never learn of this connection.
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}  // whatever it sends is dropped

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

/// Tells the request clock when a whole request has arrived and when its response has gone out, and closes a
/// connection whose request body passes `maxBodyBytes`: it sits among the HTTP handlers (`HTTP1Channel`'s
/// additional handlers), where requests and responses are parsed parts.
final class HTTPRequestMarks: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let maxBodyBytes: Int
    private var bodyBytes = 0

    init(maxBodyBytes: Int) { self.maxBodyBytes = maxBodyBytes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            bodyBytes = 0
        case .body(let chunk):
            bodyBytes += chunk.readableBytes
            guard bodyBytes <= maxBodyBytes else {
                context.close(promise: nil)
                return
            }
        case .end:
            clock(context)?.requestReceived()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        let clock = self.clock(context)
        let done = promise ?? context.eventLoop.makePromise()
        done.futureResult.whenSuccess { clock?.responseSent() }
        context.write(data, promise: done)
    }

    private func clock(_ context: ChannelHandlerContext) -> HTTPRequestClock? {
        try? context.pipeline.syncOperations.handler(type: HTTPRequestClock.self)
    }
}
