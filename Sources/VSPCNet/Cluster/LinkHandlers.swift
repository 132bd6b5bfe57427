import Foundation
import NIOCore
import NIOSSL
import VSPCCore

/// The owner's side of a link connection: another node asks for a feed of a console (HELLO); the session is a
/// person on the `node` door, whose raw input goes to the VM. It decides nothing: the core accepts or closes.
final class LinkOwnerHandler: ChannelInboundHandler {
    typealias InboundIn = LinkFrame

    private let link: ClusterLink
    private var id: ConnectionID?
    private var sink: LinkSink?
    private var helloTimer: Scheduled<Void>?
    private var counted = false
    private var waitingForHello = true

    init(link: ClusterLink) { self.link = link }

    static func seconds(_ time: TimeAmount) -> String { String(format: "%g", Double(time.nanoseconds) / 1e9) }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        let timeout = link.settings.helloTimeout
        helloTimer = context.eventLoop.scheduleTask(in: timeout) {
            channel.writeAndFlush(LinkFrame.close("no HELLO within \(Self.seconds(timeout)) s").buffer)
                .whenComplete { _ in channel.close(promise: nil) }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame {
        case .hello(let hello):
            guard id == nil, let host = link.host else { return refuse(context, "unexpected HELLO") }
            started(hello, context: context, host: host)
        case .data(let bytes):
            guard let id, let host = link.host else { return refuse(context, "DATA before HELLO") }
            host.handle(.clientBytes(id, bytes))
        case .close:
            context.close(promise: nil)
        case .accept:
            refuse(context, "unexpected ACCEPT")
        }
    }

    private func started(_ hello: LinkHello, context: ChannelHandlerContext, host: any ClusterLinkHost) {
        helloTimer?.cancel()
        helloTimer = nil
        if waitingForHello {
            waitingForHello = false
            link.helloArrived()
        }
        let key = ConsoleKey(uuid: hello.uuid, label: hello.label)
        let id = host.makeID()
        let accept = LinkFrame.accept(node: link.settings.node, epoch: link.ownerEpoch(key) ?? 0)
        let sink = LinkSink(context.channel, accept: accept)
        self.id = id
        self.sink = sink
        host.register(id, sink)
        let address = context.channel.remoteAddress.map(PeerAddress.describe) ?? "?"
        host.handle(.sessionStarted(id, door: .node, peer: "node \(hello.node) (\(address))",
                                    request: SessionRequest(target: .console(key), principal: .node(hello.node))))
        // The core closes a session it refuses at once; one it took gets its ACCEPT now if no DATA carried it.
        if !sink.closedHere {
            sink.sendAccept()
            counted = true
            link.served(1)
        }
    }

    private func refuse(_ context: ChannelHandlerContext, _ reason: String) {
        let channel = context.channel
        channel.writeAndFlush(LinkFrame.close(reason).buffer).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let id { link.host?.handle(.writabilityChanged(id, writable: context.channel.isWritable)) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        helloTimer?.cancel()
        if waitingForHello {
            waitingForHello = false
            link.helloArrived()
        }
        if counted { link.served(-1) }
        if let id, let host = link.host {
            host.unregister(id)
            host.handle(.clientClosed(id))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        link.logger.debug("cluster link connection \(id.map { "\($0)" } ?? "-"): \(error)")
        if let error = error as? LinkFrameError { return refuse(context, error.description) }
        context.close(promise: nil)
    }
}

/// The reading side of a feed: this node connected to a console's owner, said HELLO, and hands what comes back
/// to the core as `.feedOpened` / `.feedBytes` / `.feedClosed`. The core's `.send`/`.close` on the feed's id
/// reach the connection through its sink (DATA frames, CLOSE).
final class LinkFeedHandler: ChannelInboundHandler {
    typealias InboundIn = LinkFrame

    private let id: ConnectionID
    private let hello: LinkHello
    private let owner: String
    private let link: ClusterLink
    private var sink: LinkSink?
    private var opened = false
    private var reason: String?
    private var acceptTimer: Scheduled<Void>?

    init(id: ConnectionID, hello: LinkHello, owner: String, link: ClusterLink) {
        self.id = id
        self.hello = hello
        self.owner = owner
        self.link = link
    }

    func channelActive(context: ChannelHandlerContext) {
        let sink = LinkSink(context.channel)
        self.sink = sink
        link.host?.register(id, sink)
        context.writeAndFlush(wrapOutboundOut(LinkFrame.hello(hello).buffer), promise: nil)
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
        case let .accept(node, epoch):
            guard !opened else { return protocolError(context, "a second ACCEPT") }
            acceptTimer?.cancel()
            opened = true
            link.read(1)
            link.host?.handle(.cluster(.feedOpened(id, owner: Owner(node: node, epoch: epoch))))
        case .data(let bytes):
            guard opened else { return protocolError(context, "DATA before ACCEPT") }
            link.host?.handle(.cluster(.feedBytes(id, bytes)))
        case .close(let text):
            reason = text.isEmpty ? "node \(owner) closed the feed" : "node \(owner): \(text)"
            context.close(promise: nil)
        case .hello:
            protocolError(context, "unexpected HELLO")
        }
    }

    private func protocolError(_ context: ChannelHandlerContext, _ what: String) {
        reason = "node \(owner) broke the link protocol (\(what))"
        let channel = context.channel
        channel.writeAndFlush(LinkFrame.close(what).buffer).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        acceptTimer?.cancel()
        if opened { link.read(-1) }
        if let host = link.host {
            host.unregister(id)
            // A feed the core closed itself needs no answer.
            if sink?.closedHere != true {
                host.handle(.cluster(.feedClosed(id, reason: reason ?? "the link to node \(owner) closed")))
            }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if reason == nil {
            reason = error is LinkFrameError ? "node \(owner) broke the link protocol (\(error))" : "the link to node \(owner) failed: \(error)"
        }
        context.close(promise: nil)
    }
}
