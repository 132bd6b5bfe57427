import NIOCore
import VSPCCore

/// The SSH door's sessions, as the machine's connections: each session gets a connection id and a sink, its
/// input goes in as `clientBytes`, and what the machine sends to that id is written through the sink.
extension ConcentratorDriver: SSHConsoleGateway {
    func sessionStarted(_ session: SSHConsoleSession) {
        let id = makeID()
        let loop = self.loop
        register(id, SSHSessionSink(session, backlogLimit: network.skipBacklog) { [weak self] count in
            // Reported from a fresh turn of the loop, never from inside the write that skipped.
            loop.execute { self?.handle(.clientSkipped(id, bytes: count)) }
        })
        sessionIDs[session.id] = id
        let request = SessionRequest(target: .name(session.user),
                                     principal: .key(session.key, fingerprint: session.fingerprint),
                                     terminal: session.terminal != nil, command: session.command)
        handle(.sessionStarted(id, door: .ssh, peer: session.peer, request: request))
    }

    func sessionInput(_ session: SSHConsoleSession, _ bytes: [UInt8]) {
        guard let id = sessionIDs[session.id] else { return }
        handle(.clientBytes(id, bytes))
    }

    func sessionWritabilityChanged(_ session: SSHConsoleSession) {
        guard let id = sessionIDs[session.id] else { return }
        (sink(id) as? SSHSessionSink)?.drain()
    }

    func sessionEnded(_ session: SSHConsoleSession, _ end: SSHSessionEnd) {
        guard let id = sessionIDs.removeValue(forKey: session.id) else { return }
        // Ends the SSH server decided on its own, recorded as drops: the session's last-resort output bound (a
        // reader too slow even for skipping ahead), the idle timeout, unanswered keepalives.
        switch end {
        case .outputOverflow: handle(.clientEnded(id, reason: .slow))
        case .idle: handle(.clientEnded(id, reason: .idle))
        case .unresponsive: handle(.clientEnded(id, reason: .unresponsive))
        case .clientLeft, .closed, .serverStopped: break
        }
        unregister(id)
        handle(.clientClosed(id))
    }
}
