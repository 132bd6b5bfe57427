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
        case client(ListenerRef)
        /// An admin connection; its bytes arrive as lines.
        case admin
    }

    let id: ConnectionID
    let kind: Kind
    let driver: ConcentratorDriver

    init(id: ConnectionID, kind: Kind, driver: ConcentratorDriver) {
        self.id = id
        self.kind = kind
        self.driver = driver
    }

    func channelActive(context: ChannelHandlerContext) {
        driver.register(id, context.channel)
        let peer = context.channel.remoteAddress.map(Self.describe) ?? "?"
        switch kind {
        case .vm: driver.handle(.vmConnected(id, peer: peer))
        case .client(let ref): driver.handle(.clientConnected(id, listener: ref, peer: peer))
        case .admin: driver.handle(.adminConnected(id, peer: peer))
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Array(unwrapInboundIn(data).readableBytesView)
        switch kind {
        case .vm: driver.handle(.vmBytes(id, bytes))
        case .client: driver.handle(.clientBytes(id, bytes))
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
        case .vm: driver.handle(.vmClosed(id))
        case .client: driver.handle(.clientClosed(id))
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
        context.close(promise: nil)
    }

    static func describe(_ address: SocketAddress) -> String {
        if let ip = address.ipAddress, let port = address.port { return "\(ip):\(port)" }
        return "\(address)"
    }
}
