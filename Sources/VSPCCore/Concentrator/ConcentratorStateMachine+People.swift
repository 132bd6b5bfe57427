import Foundation

/// People's telnet connections on the consoles' ports.
extension ConcentratorStateMachine {
    mutating func clientConnected(_ id: ConnectionID, listener: ListenerRef, peer: String) {
        emit(.send(id, ClientLinkStateMachine.opening))
        let key = listener.console
        guard let console = consoles[key], console.listener.ref == listener else {
            log(.info, "refused client \(peer): the assignment of \(consoles[key]?.name ?? key.description) has expired")
            emit(.close(id, flush: false))
            return
        }
        guard reserveDescriptors(1) else {
            log(.error, "refused client \(peer) of \(console.name): open-file limit nearly reached")
            emit(.close(id, flush: false))
            return
        }
        clients[id] = ClientConnection(id: id, console: key, peer: peer)
        consoles[key]!.clients.insert(id)
        consoles[key]!.lastActivity = monotonicNow
        record(.clientAttach, key, peer: peer, detail: "read-write")
        if config.replayBytes > 0, config.scrollbackBytes > 0 {
            let replay = console.scrollback.contents(last: config.replayBytes)
            if !replay.isEmpty { emit(.send(id, TelnetEncoder.escaped(replay))) }
        }
    }

    mutating func clientBytes(_ id: ConnectionID, _ bytes: [UInt8]) {
        guard var client = clients[id] else { return }
        let output = client.link.received(bytes)
        clients[id] = client
        if !output.replies.isEmpty { emit(.send(id, output.replies)) }
        if !output.input.isEmpty { clientInput(client, output.input) }
    }

    /// What a person typed: to the VM, or held while a migration is pending.
    mutating func clientInput(_ client: ClientConnection, _ bytes: [UInt8]) {
        let key = client.console
        guard consoles[key] != nil else { return }
        switch consoles[key]!.vmotion.clientInput(bytes) {
        case .forward:
            let name = consoles[key]!.name
            guard let vm = consoles[key]!.vm else {
                log(.debug, "input from \(client.peer) discarded: \(name) is not connected")
                return
            }
            if vms[vm]?.writable == true {
                emit(.send(vm, TelnetEncoder.escaped(bytes)))
            } else {
                log(.warning, "input from \(client.peer) discarded: VM \(name) is not reading")
            }
        case .held:
            break
        case .dropped(let n):
            log(.warning, "vMotion of \(consoles[key]!.name): hold buffer full, \(n) bytes of input from \(client.peer) discarded")
        }
    }

    mutating func clientClosed(_ id: ConnectionID) {
        guard let client = clients.removeValue(forKey: id) else { return }
        descriptorsInUse -= 1
        let key = client.console
        guard consoles[key]?.clients.remove(id) != nil else { return }
        consoles[key]!.lastActivity = monotonicNow
        record(.clientDetach, key, peer: client.peer)
    }

    /// A person whose client stopped reading is dropped, so the VM and the others never wait for it.
    mutating func dropClient(_ client: ClientConnection, reason: String) {
        guard clients[client.id] != nil else { return }
        record(.clientDropped, client.console, peer: client.peer, detail: reason)
        emit(.close(client.id, flush: false))
    }
}
