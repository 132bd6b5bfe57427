import Logging
import NIOCore
import VSPCStore

/// A VM's connection on the proxy port. Thin: bytes go through `VMLinkStateMachine`; decisions go to the concentrator.
final class VMConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Role {
        case negotiating
        case vm(Console)
        case destination(Console)
        /// Replaced or migrated away: its close is not the VM going down.
        case retired
    }

    let id: ConnectionID
    let concentrator: Concentrator
    var machine: VMLinkStateMachine
    var role: Role = .negotiating
    var channel: Channel?
    var peer = "?"
    /// VM output that arrived before the connection carried a console (bounded).
    var pendingOutput: [UInt8] = []
    var pendingOutputDropped = 0
    var queuedBytes = 0
    var negotiationTimer: Scheduled<Void>?
    var nameTimer: Scheduled<Void>?
    var identifyTimer: Scheduled<Void>?
    /// Events about this connection waiting for its uuid (see Concentrator.record(_:connection:detail:)).
    var deferredEvents: [NewEvent] = []
    var closed = false

    init(id: ConnectionID, concentrator: Concentrator) {
        self.id = id
        self.concentrator = concentrator
        self.machine = VMLinkStateMachine(acceptedServiceURI: concentrator.config.serviceURI)
    }

    var console: Console? {
        switch role {
        case .vm(let c), .destination(let c): return c
        default: return nil
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        channel = context.channel
        peer = context.channel.remoteAddress.map(Self.describe) ?? "?"
        if !concentrator.vmConnected(self) { return }
        perform(machine.start())
        let timeout = TimeAmount.milliseconds(Int64(concentrator.config.negotiationTimeout * 1000))
        negotiationTimer = context.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self else { return }
            self.perform(self.machine.negotiationTimedOut())
        }
        // A connection that never comes to carry a console (no identification, a rejected PEER) is closed.
        identifyTimer = context.eventLoop.scheduleTask(in: timeout * 6) { [weak self] in
            guard let self, case .negotiating = self.role, !self.closed else { return }
            self.concentrator.logger.warning("closing VM connection \(self.peer): not identified within \(self.concentrator.config.negotiationTimeout * 6) s")
            self.close()
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        perform(machine.received(buffer.readableBytesView))
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        negotiationTimer?.cancel()
        nameTimer?.cancel()
        identifyTimer?.cancel()
        if machine.isMidSequence {
            concentrator.logger.info("VM connection \(peer) closed in the middle of a telnet sequence")
        }
        concentrator.vmDisconnected(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        concentrator.logger.info("VM connection \(peer): \(error)")
        context.close(promise: nil)
    }

    func perform(_ actions: [VMLinkAction]) {
        for action in actions {
            if closed { return }
            switch action {
            case .send(let bytes):
                send(raw: bytes)
            case .vmData(let bytes):
                concentrator.vmOutput(self, bytes)
            case .identified(let uuid, let name, let label):
                negotiationTimer?.cancel()
                nameTimer?.cancel()
                concentrator.identified(self, uuid: uuid, name: name, label: label)
            case .renamed(let name):
                concentrator.renamed(self, name: name)
            case .vmotionBegin(let sequence):
                concentrator.vmotionBegin(self, sequence: sequence)
            case .vmotionPeer(let cookie):
                concentrator.vmotionPeer(self, cookie: cookie)
            case .vmotionComplete(let sequence):
                concentrator.vmotionComplete(self, sequence: sequence)
            case .vmotionAbort:
                concentrator.vmotionAbort(self)
            case .reject(let message):
                concentrator.logger.notice("refused \(peer) on the proxy port: not an ESXi host")
                send(raw: Array(message.utf8))
                close()
            case .close(let reason):
                concentrator.logger.warning("closing VM connection \(peer): \(reason)")
                close()
            case .log(let level, let message):
                let text = "VM connection \(peer): \(message)"
                switch level {
                case .debug: concentrator.logger.debug("\(text)")
                case .info: concentrator.logger.info("\(text)")
                case .warning: concentrator.logger.warning("\(text)")
                }
            }
        }
        if !deferredEvents.isEmpty, machine.vmUUID != nil { concentrator.flushDeferredEvents(self) }
        // Start the uuid-without-name timer once the uuid is known.
        if nameTimer == nil, machine.vmUUID != nil, !machine.isIdentified, let channel {
            let timeout = TimeAmount.milliseconds(Int64(concentrator.config.nameTimeout * 1000))
            nameTimer = channel.eventLoop.scheduleTask(in: timeout) { [weak self] in
                guard let self else { return }
                self.perform(self.machine.nameTimedOut())
            }
        }
    }

    /// Writes already-encoded bytes to the VM.
    func send(raw bytes: [UInt8]) {
        guard let channel, !closed, !bytes.isEmpty else { return }
        let count = bytes.count
        queuedBytes += count
        channel.writeAndFlush(ByteBuffer(bytes: bytes)).whenComplete { [weak self] _ in
            self?.queuedBytes -= count
        }
    }

    /// Writes console input to the VM, escaping 0xFF. Input beyond the VM's buffer limit is discarded.
    func sendData(_ bytes: [UInt8]) -> Bool {
        if queuedBytes > concentrator.config.vmBufferLimit { return false }
        send(raw: TelnetEncoder.escaped(bytes))
        return true
    }

    func close() {
        guard !closed else { return }
        closed = true
        channel?.close(promise: nil)
    }

    static func describe(_ address: SocketAddress) -> String {
        if let ip = address.ipAddress, let port = address.port { return "\(ip):\(port)" }
        return "\(address)"
    }
}

/// A person's telnet connection on a console's port.
final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// WILL BINARY, WILL SGA, WILL ECHO, DO BINARY, DO SGA.
    static let opening: [UInt8] = [0xFF, 0xFB, 0x00, 0xFF, 0xFB, 0x03, 0xFF, 0xFB, 0x01, 0xFF, 0xFD, 0x00, 0xFF, 0xFD, 0x03]

    let id: ConnectionID
    let console: Console
    let concentrator: Concentrator
    var decoder = TelnetDecoder(maxSubnegotiation: 512)
    var refusals = TelnetRefusals()
    var channel: Channel?
    var peer = "?"
    var queuedBytes = 0
    var closed = false
    var attached = false

    init(id: ConnectionID, console: Console, concentrator: Concentrator) {
        self.id = id
        self.console = console
        self.concentrator = concentrator
    }

    func channelActive(context: ChannelHandlerContext) {
        channel = context.channel
        peer = context.channel.remoteAddress.map(VMConnectionHandler.describe) ?? "?"
        send(raw: Self.opening)
        attached = concentrator.clientAttached(self)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        var input: [UInt8] = []
        decoder.decode(buffer.readableBytesView) { event in
            switch event {
            case .data(let bytes):
                input.append(contentsOf: bytes)
            case .negotiate(let verb, let option):
                answer(verb, option)
            default:
                break // NAWS, TTYPE and friends are not needed
            }
        }
        if !input.isEmpty, attached { concentrator.clientInput(self, input) }
    }

    private func answer(_ verb: TelnetVerb, _ option: UInt8) {
        let reply: TelnetVerb
        switch verb {
        case .will:
            if option == TelnetOption.binary || option == TelnetOption.suppressGoAhead { return }
            reply = .dont
        case .do:
            if option == TelnetOption.binary || option == TelnetOption.suppressGoAhead || option == TelnetOption.echo { return }
            reply = .wont
        case .wont, .dont:
            return
        }
        if let bytes = refusals.refuse(reply, option) { send(raw: bytes) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        if attached { concentrator.clientDetached(self) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        concentrator.logger.debug("client \(peer): \(error)")
        context.close(promise: nil)
    }

    /// Queues bytes for the client; false when its buffer limit is exceeded (a client that stopped reading).
    /// `bounded: false` is for the one-off replay on attach, which --replay bounds.
    @discardableResult
    func send(raw bytes: [UInt8], bounded: Bool = true) -> Bool {
        guard let channel, !closed else { return true }
        if bounded, queuedBytes + bytes.count > concentrator.config.clientBufferLimit { return false }
        let count = bytes.count
        queuedBytes += count
        channel.writeAndFlush(ByteBuffer(bytes: bytes)).whenComplete { [weak self] _ in
            self?.queuedBytes -= count
        }
        return true
    }

    func close() {
        guard !closed else { return }
        closed = true
        channel?.close(promise: nil)
    }
}
