import Logging
import NIOCore
import NIOSSH
import VSPCCore

/// Serves one SSH session channel: answers its requests (`pty-req`, `shell`, `exec`, `window-change`, ...), hands
/// the session to the gateway and its input to `sessionInput`, raw.
final class SSHSessionHandler: ChannelInboundHandler {
    typealias InboundIn = SSHChannelData

    private let server: SSHServer
    private let connection: SSHConnectionState
    private var terminal: SSHTerminal?
    private var session: SSHConsoleSession?
    private var counted = false

    init(server: SSHServer, connection: SSHConnectionState) {
        self.server = server
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        connection.sessions += 1
        counted = true
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if counted {
            counted = false
            connection.sessions -= 1
        }
        if let session {
            self.session = nil
            session.ended(cause: connection.dropCause)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = unwrapInboundIn(data)
        // Extended data (stderr) from a client means nothing to a console.
        guard case .channel = message.type, case .byteBuffer(let buffer) = message.data,
              let session, session.isOpen, buffer.readableBytes > 0 else { return }
        session.touch()
        server.gateway.sessionInput(session, Array(buffer.readableBytesView))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let request as SSHChannelRequestEvent.PseudoTerminalRequest:
            if connection.authenticated?.key.noPTY ?? true {
                // `no-pty` (or `restrict`): the session goes on without a terminal, as with OpenSSH.
                server.logger.debug("ssh: \(connection.peer) asked for a terminal; the key's no-pty refuses it")
                reply(context, request.wantReply, false)
                return
            }
            terminal = SSHTerminal(term: String(request.term.prefix(64)), columns: request.terminalCharacterWidth,
                                   rows: request.terminalRowHeight)
            session?.terminal = terminal
            reply(context, request.wantReply, true)
        case let request as SSHChannelRequestEvent.ShellRequest:
            start(context, command: nil, wantReply: request.wantReply)
        case let request as SSHChannelRequestEvent.ExecRequest:
            start(context, command: request.command, wantReply: request.wantReply)
        case let request as SSHChannelRequestEvent.WindowChangeRequest:
            guard terminal != nil || !(connection.authenticated?.key.noPTY ?? true) else { return }
            let term = terminal?.term ?? ""
            terminal = SSHTerminal(term: term, columns: request.terminalCharacterWidth, rows: request.terminalRowHeight)
            if let session, session.isOpen {
                session.terminal = terminal
                server.gateway.sessionResized(session)
            }
        case let request as SSHChannelRequestEvent.EnvironmentRequest:
            reply(context, request.wantReply, false)
        case let request as SSHChannelRequestEvent.SubsystemRequest:
            reply(context, request.wantReply, false)
        case is SSHChannelRequestEvent.LocalFlowControlRequest, is SSHChannelRequestEvent.SignalRequest:
            break
        case let event as ChannelEvent where event == .inputClosed:
            if let session, session.isOpen { server.gateway.sessionInputEnded(session) }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let session, session.isOpen { server.gateway.sessionWritabilityChanged(session) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        server.logger.debug("ssh: \(connection.peer) session: \(error)")
        context.close(promise: nil)
    }

    private func start(_ context: ChannelHandlerContext, command: String?, wantReply: Bool) {
        guard session == nil, let auth = connection.authenticated, !server.isStopping else {
            reply(context, wantReply, false)
            return
        }
        let session = SSHConsoleSession(
            id: server.makeSessionID(), user: auth.user, key: auth.key, fingerprint: auth.fingerprint,
            peer: connection.peer, command: command, terminal: terminal, channel: context.channel, server: server)
        self.session = session
        reply(context, wantReply, true)
        if let timeout = server.settings.idleTimeout { session.startIdleTimer(timeout) }
        server.gateway.sessionStarted(session)
    }

    private func reply(_ context: ChannelHandlerContext, _ wantReply: Bool, _ success: Bool) {
        guard wantReply else { return }
        if success {
            context.channel.triggerUserOutboundEvent(ChannelSuccessEvent(), promise: nil)
        } else {
            context.channel.triggerUserOutboundEvent(ChannelFailureEvent(), promise: nil)
        }
    }
}
