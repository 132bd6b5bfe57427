import NIOCore
import VSPCCore

/// The SSH front door's sessions, as the machine's connections: each session gets a connection id, its input
/// goes in as `clientBytes`, and what the machine sends to that id is written to the session.
extension ConcentratorDriver: SSHConsoleGateway {
    func sessionStarted(_ session: SSHConsoleSession) {
        let id = makeID()
        sessions[id] = session
        sessionIDs[session.id] = id
        handle(.sshSessionStarted(id, user: session.user, key: session.key, fingerprint: session.fingerprint,
                                  peer: session.peer, pty: session.terminal != nil))
    }

    func sessionInput(_ session: SSHConsoleSession, _ bytes: [UInt8]) {
        guard let id = sessionIDs[session.id] else { return }
        handle(.clientBytes(id, bytes))
    }

    func sessionEnded(_ session: SSHConsoleSession, _ end: SSHSessionEnd) {
        guard let id = sessionIDs.removeValue(forKey: session.id) else { return }
        // A session whose output passed its bound was dropped by the server: the machine records it.
        if end == .outputOverflow { handle(.writabilityChanged(id, writable: false)) }
        sessions[id] = nil
        handle(.clientClosed(id))
    }

    /// Ends an SSH session with an exit status, or closes a channel once its output has left.
    func endSession(_ id: ConnectionID, exitStatus: Int) {
        if let session = sessions[id] {
            session.close(exitStatus: exitStatus)
        } else {
            closeAfterFlush(id)
        }
    }
}
