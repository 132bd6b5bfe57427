import NIOCore

/// The deadlines of one HTTP connection, first in its pipeline so that it sees every byte that arrives:
/// a request must arrive whole within `requestTimeout` of the connection's opening or of its first byte, and a
/// kept-alive connection may wait `idleTimeout` after a response for the next request's first byte. The
/// connection is closed at a deadline; none runs while a request is being answered.
final class HTTPRequestClock: ChannelInboundHandler, RemovableChannelHandler {
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
