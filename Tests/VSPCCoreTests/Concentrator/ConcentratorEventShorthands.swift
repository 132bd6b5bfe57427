@testable import VSPCCore

/// The door events the tests were written with, as shorthands for the one `sessionStarted` event.
extension ConcentratorEvent {
    /// A telnet connection accepted by a console's listener.
    static func clientConnected(_ id: ConnectionID, listener: ListenerRef, peer: String) -> ConcentratorEvent {
        .sessionStarted(id, door: .telnet, peer: peer, request: SessionRequest(target: .listener(listener), principal: .anonymous))
    }

    /// An authenticated SSH session asking for the console (or `list`) its user name names.
    static func sshSessionStarted(_ id: ConnectionID, user: String, key: AuthorizedKey, fingerprint: String,
                                  peer: String, pty: Bool = true) -> ConcentratorEvent {
        .sessionStarted(id, door: .ssh, peer: peer,
                        request: SessionRequest(target: .name(user), principal: .key(key, fingerprint: fingerprint), terminal: pty))
    }
}
