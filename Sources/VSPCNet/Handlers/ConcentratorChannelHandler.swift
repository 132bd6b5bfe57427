import NIOCore
import NIOExtras
import VSPCCore

/// The one channel handler of every concentrator connection. It holds a connection id and passes each event in;
/// it decides nothing.
final class ConcentratorChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    enum Kind {
        /// An ESXi connection on the proxy port.
        case vm
        /// A person's telnet connection, accepted by this listener of a console's port.
        case telnet(ListenerRef)
        /// An admin connection; its bytes arrive as lines.
        case admin
    }

    let id: ConnectionID
    let kind: Kind
    let driver: ConcentratorDriver
    /// The connection failed (a read or write error), rather than being closed by its peer or by vspcd.
    private var failed = false

    init(id: ConnectionID, kind: Kind, driver: ConcentratorDriver) {
        self.id = id
        self.kind = kind
        self.driver = driver
    }

    func channelActive(context: ChannelHandlerContext) {
        driver.register(id, ChannelSink(context.channel))
        let peer = context.channel.remoteAddress.map(PeerAddress.describe) ?? "?"
        switch kind {
        case .vm: driver.handle(.vmConnected(id, peer: peer))
        case .telnet(let ref):
            driver.handle(.sessionStarted(id, door: .telnet, peer: peer,
                                          request: SessionRequest(target: .listener(ref), principal: .anonymous)))
        case .admin: driver.handle(.adminConnected(id, peer: peer, uid: WebConsoleSecrets.peerUID(context.channel)))
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Array(unwrapInboundIn(data).readableBytesView)
        switch kind {
        case .vm: driver.handle(.vmBytes(id, bytes))
        case .telnet: driver.handle(.clientBytes(id, bytes))
        case .admin: driver.handle(.adminLine(id, bytes))
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        driver.handle(.writabilityChanged(id, writable: context.channel.isWritable))
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        driver.unregister(id)
        switch kind {
        case .vm: driver.handle(.vmClosed(id, error: failed))
        case .telnet: driver.handle(.clientClosed(id))
        case .admin: driver.handle(.adminClosed(id))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if case .admin = kind, error is ByteToMessageDecoderError.PayloadTooLargeError {
            driver.handle(.adminLineTooLong(id))
            return
        }
        driver.logger.debug("connection \(id): \(error)")
        failed = true
        context.close(promise: nil)
    }
}
