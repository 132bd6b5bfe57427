import Foundation
import NIOCore
import NIOSSL
import VSPCCore

/// The owner's side of a link connection: another node asks for a feed of a console (HELLO); the session is a
/// person on the `node` door, whose raw input goes to the VM. It decides nothing: the core accepts or closes.
final class LinkOwnerHandler: ChannelInboundHandler {
    typealias InboundIn = ClusterLinkFrame

    private let link: ClusterLink
    private var id: ConnectionID?
    private var sink: LinkSink?
    private var helloTimer: Scheduled<Void>?
    private var waitingForHello = true
    /// The peer's IP address, as the link counted it when it admitted the connection.
    private let address: String

    init(link: ClusterLink, address: String) {
        self.link = link
        self.address = address
    }

    static func seconds(_ time: TimeAmount) -> String { String(format: "%g", Double(time.nanoseconds) / 1e9) }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        let timeout = link.settings.helloTimeout
        helloTimer = context.eventLoop.scheduleTask(in: timeout) {
            channel.writeAndFlush(LinkWire.close("no HELLO within \(Self.seconds(timeout)) s"))
                .whenComplete { _ in channel.close(promise: nil) }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame {
        case .hello(let hello):
            guard id == nil, let host = link.host else { return refuse(context, "unexpected HELLO") }
            guard !hello.node.isEmpty, !hello.uuid.isEmpty else { return refuse(context, "malformed HELLO") }
            started(hello, context: context, host: host)
        case .data(let bytes):
            guard let id, let host = link.host else { return refuse(context, "DATA before HELLO") }
            host.handle(.clientBytes(id, bytes))
        case .close:
            context.close(promise: nil)
        case .accept:
            refuse(context, "unexpected ACCEPT")
        case .brk:
            guard let id, let host = link.host else { return refuse(context, "BREAK before HELLO") }
            host.handle(.cluster(.breakAsked(id)))
        }
    }

    private func started(_ hello: ClusterLinkFrame.Hello, context: ChannelHandlerContext, host: any ClusterLinkHost) {
        helloTimer?.cancel()
        helloTimer = nil
        if waitingForHello {
            waitingForHello = false
            link.helloArrived(from: address)
        }
        let key = hello.key
        let id = host.makeID()
        // ACCEPT names the epoch of this node's claim as the core knows it when ACCEPT goes (before the first
        // DATA, which may be the replay since that claim).
        let node = link.settings.node
        let sink = LinkSink(context.channel) { [weak host] in
            .accept(.init(node: node, epoch: host?.feedAcceptEpoch(key) ?? 0))
        }
        self.id = id
        self.sink = sink
        host.register(id, sink)
        let address = context.channel.remoteAddress.map(PeerAddress.describe) ?? "?"
        host.handle(.sessionStarted(id, door: .node, peer: "node \(hello.node) (\(address))",
                                    request: SessionRequest(target: .console(key), principal: .node(hello.node),
                                                            sinceEpoch: hello.sinceEpoch)))
        // The core refuses a session by closing it at once (the sink sends CLOSE "not the owner"); one it took
        // gets its ACCEPT now if no DATA carried it already.
        if !sink.closedHere { sink.sendAccept() }
    }

    private func refuse(_ context: ChannelHandlerContext, _ reason: String) {
        let channel = context.channel
        channel.writeAndFlush(LinkWire.close(reason)).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let id { link.host?.handle(.writabilityChanged(id, writable: context.channel.isWritable)) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        helloTimer?.cancel()
        if waitingForHello {
            waitingForHello = false
            link.helloArrived(from: address)
        }
        if let id, let host = link.host {
            host.unregister(id)
            host.handle(.clientClosed(id))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        link.logger.debug("cluster link connection \(id.map { "\($0)" } ?? "-"): \(error)")
        if let error = error as? ClusterLinkError { return refuse(context, error.description) }
        context.close(promise: nil)
    }
}

/// The reading side of a feed: this node connected to a console's owner, said HELLO, and hands what comes back
/// to the core as `.feedOpened` / `.feedBytes` / `.feedClosed`. The core's `.send`/`.close` on the feed's id
/// reach the connection through its sink (DATA frames, CLOSE), registered when the feed was asked for.
final class LinkFeedHandler: ChannelInboundHandler {
    typealias InboundIn = ClusterLinkFrame

    private let id: ConnectionID
    private let hello: ClusterLinkFrame.Hello
    private let owner: String
    private let link: ClusterLink
    private let sink: LinkSink
    private var opened = false
    private var reason: String?
    private var acceptTimer: Scheduled<Void>?
    private let settle: FeedSettle

    init(id: ConnectionID, hello: ClusterLinkFrame.Hello, owner: String, link: ClusterLink, sink: LinkSink,
         settle: FeedSettle) {
        self.settle = settle
        self.id = id
        self.hello = hello
        self.owner = owner
        self.link = link
        self.sink = sink
    }

    func channelActive(context: ChannelHandlerContext) {
        // The core closed the feed while it was connecting: it ends here, without a word.
        guard sink.attach(context.channel) else {
            context.fireChannelActive()
            return context.close(promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(LinkWire.buffer(.hello(hello))), promise: nil)
        let timeout = link.settings.helloTimeout
        let channel = context.channel
        acceptTimer = context.eventLoop.scheduleTask(in: timeout) { [weak self] in
            self?.reason = "node \(self?.owner ?? "?") did not accept within \(LinkOwnerHandler.seconds(timeout)) s"
            channel.close(promise: nil)
        }
        context.fireChannelActive()
    }

    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .accept(let accept):
            guard !opened else { return protocolError(context, "a second ACCEPT") }
            acceptTimer?.cancel()
            opened = true
            // Accepted: the other node has read the HELLO, so it no longer counts this one as waiting.
            settle.now()
            link.host?.handle(.cluster(.feedOpened(id, owner: Owner(node: accept.node, epoch: accept.epoch))))
        case .data(let bytes):
            guard opened else { return protocolError(context, "DATA before ACCEPT") }
            link.host?.handle(.cluster(.feedBytes(id, bytes)))
        case .close(let text):
            reason = text.isEmpty ? "node \(owner) closed the feed" : "node \(owner): \(text)"
            context.close(promise: nil)
        case .hello:
            protocolError(context, "unexpected HELLO")
        case .brk:
            protocolError(context, "unexpected BREAK")
        }
    }

    private func protocolError(_ context: ChannelHandlerContext, _ what: String) {
        reason = "node \(owner) broke the link protocol (\(what))"
        let channel = context.channel
        channel.writeAndFlush(LinkWire.close(what)).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        acceptTimer?.cancel()
        settle.now()
        if let host = link.host {
            host.unregister(id)
            // A feed the core closed itself needs no answer.
            if !sink.closedHere {
                host.handle(.cluster(.feedClosed(id, reason: reason ?? "the link to node \(owner) closed")))
            }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if reason == nil {
            reason = error is ClusterLinkError ? "node \(owner) broke the link protocol (\(error))" : "the link to node \(owner) failed: \(error)"
        }
        context.close(promise: nil)
    }
}
