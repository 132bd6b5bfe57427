import Foundation

/// People on the consoles: telnet on a console's port, SSH sessions (the user name selects the console, the key
/// identifies the person), and the access rules between them (read-only, exclusive write).
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
        let mode: AccessMode = config.telnetPorts == .readOnly ? .readOnly : .readWrite
        attachClient(ClientConnection(id: id, console: key, peer: peer, door: .telnet, mode: mode, identity: nil,
                                      since: now.date))
        if config.replayBytes > 0, config.scrollbackBytes > 0 {
            let replay = console.scrollback.contents(last: config.replayBytes)
            if !replay.isEmpty { emit(.send(id, TelnetEncoder.escaped(replay))) }
        }
    }

    /// An SSH session: `list`, or the console its user name names, if the key may reach it. A refusal does not
    /// say whether the VM exists.
    mutating func sshSessionStarted(_ id: ConnectionID, user: String, key: AuthorizedKey, fingerprint: String,
                                    peer: String, pty: Bool) {
        let newline = pty ? "\r\n" : "\n"
        let identity = Identity(comment: key.comment, fingerprint: fingerprint)
        let permitted = consoles.values.filter { $0.listed && key.permits(vmName: $0.name, uuid: $0.key.uuid) }
        switch SSHTarget(user: user) {
        case .list:
            let lines = permitted.sorted { ($0.name, $0.key.label, $0.key.uuid) < ($1.name, $1.key.label, $1.key.uuid) }
                .map { c in
                    let name = c.key.label.isEmpty ? c.name : "\(c.name)#\(c.key.label)"
                    return "\(DisplayText.escape(name))\t\(UUIDSpelling.classic(c.key.uuid))\t\(c.vm == nil ? "down" : "up")\(newline)"
                }
            emit(.send(id, Array(lines.joined().utf8)))
            emit(.endSession(id, exitStatus: 0))
        case .console(let vm, let label):
            let candidates = permitted.filter { $0.key.label == label }
            let uuids = Set(VMLookup.matches(vm, among: candidates.map { VMLookup.Candidate(uuid: $0.key.uuid, name: $0.name) }))
            let hits = candidates.filter { uuids.contains($0.key.uuid) }
            guard hits.count == 1 else {
                refuseSession(id, user: user, identity: identity, peer: peer, newline: newline,
                              why: hits.count > 1 ? "\(DisplayText.escape(vm)) names several consoles; use its uuid" : nil)
                return
            }
            let console = hits[0]
            attachClient(ClientConnection(id: id, console: console.key, peer: peer, door: .ssh,
                                          mode: key.readOnly ? .readOnly : .readWrite, identity: identity, since: now.date))
            let state = console.vm == nil ? "down" : "up"
            notice(id, "connected to \(DisplayText.escape(console.name))\(console.key.label.isEmpty ? "" : "#" + console.key.label) (\(state)); Ctrl-] ? for the menu\(key.readOnly ? "; read-only" : "")")
        case nil:
            refuseSession(id, user: user, identity: identity, peer: peer, newline: newline, why: nil)
        }
    }

    /// One line and exit status 1; recorded without saying more to the person than "no such console here".
    mutating func refuseSession(_ id: ConnectionID, user: String, identity: Identity, peer: String, newline: String,
                                why: String?) {
        let message = why ?? "no console \(DisplayText.escape(user)) for this key"
        emit(.send(id, Array("vspcd: \(message)\(newline)".utf8)))
        emit(.endSession(id, exitStatus: 1))
        record(.clientRefused, peer: peer,
               detail: "door=ssh user=\(user) key=\(identity.comment) \(identity.fingerprint)")
    }

    mutating func attachClient(_ client: ClientConnection) {
        let key = client.console
        clients[client.id] = client
        consoles[key]!.clients.insert(client.id)
        consoles[key]!.lastActivity = monotonicNow
        record(.clientAttach, key, peer: client.peer, detail: auditDetail(client))
        noticeAll(key, except: client.id, "\(client.who) attached over \(client.door.rawValue) (\(client.mode.rawValue))")
    }

    /// `door=ssh mode=read-only key=alice@laptop SHA256:...`: who, how, with what right.
    func auditDetail(_ client: ClientConnection, mode: String? = nil) -> String {
        var detail = "door=\(client.door.rawValue) mode=\(mode ?? client.mode.rawValue)"
        if let identity = client.identity { detail += " key=\(identity.comment) \(identity.fingerprint)" }
        return detail
    }

    mutating func clientBytes(_ id: ConnectionID, _ bytes: [UInt8]) {
        guard var client = clients[id] else { return }
        switch client.door {
        case .telnet, .tail:
            let output = client.link.received(bytes)
            clients[id] = client
            if !output.replies.isEmpty { emit(.send(id, output.replies)) }
            // Telnet ports stay byte-exact: a read-only person's input is dropped without a word.
            if !output.input.isEmpty, mayWrite(client) { clientInput(client, output.input) }
        case .ssh:
            let events = client.menu.feed(bytes)
            clients[id] = client
            for event in events {
                guard let current = clients[id] else { return }
                switch event {
                case .forward(let input):
                    if mayWrite(current) {
                        clientInput(current, input)
                    } else if !current.warnedReadOnly {
                        clients[id]!.warnedReadOnly = true
                        notice(id, readOnlyReason(current))
                    }
                case .command(let command):
                    escapeCommand(command, current)
                }
            }
        }
    }

    func mayWrite(_ client: ClientConnection) -> Bool {
        guard client.mode == .readWrite else { return false }
        let holder = consoles[client.console]?.exclusive
        return holder == nil || holder == client.id
    }

    func readOnlyReason(_ client: ClientConnection) -> String {
        if client.mode == .readOnly { return "read-only: what you type does not reach the VM" }
        let holder = consoles[client.console]?.exclusive.flatMap { clients[$0]?.who } ?? "someone"
        return "\(holder) holds exclusive write: what you type does not reach the VM"
    }

    mutating func escapeCommand(_ command: EscapeCommand, _ client: ClientConnection) {
        let key = client.console
        switch command {
        case .disconnect:
            emit(.endSession(client.id, exitStatus: 0))
        case .help:
            emit(.send(client.id, Array(("\r\n" + EscapeMenu.helpText).utf8)))
        case .who:
            emit(.send(client.id, Array(whoList(key).utf8)))
        case .sendBreak:
            guard mayWrite(client) else { return notice(client.id, readOnlyReason(client)) }
            if let vm = consoles[key]?.vm, vms[vm]?.writable == true {
                emit(.send(vm, [Telnet.IAC, Telnet.BRK]))
                notice(client.id, "BREAK sent")
            } else {
                notice(client.id, "the VM is not connected")
            }
        case .replay:
            let bytes = consoles[key]?.scrollback.contents() ?? []
            if !bytes.isEmpty { emit(.send(client.id, bytes)) }
        case .toggleExclusiveWrite:
            toggleExclusive(client)
        }
    }

    /// `w`: everyone on the console, over every front door.
    func whoList(_ key: ConsoleKey) -> String {
        guard let console = consoles[key] else { return "" }
        var lines = ["\r\nwho is attached to \(DisplayText.escape(console.name)):"]
        for id in console.clients.sorted() {
            guard let c = clients[id] else { continue }
            let mode = console.exclusive == id ? "exclusive" : (mayWrite(c) ? "read-write" : "read-only")
            lines.append("  \(c.door.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0)) \(DisplayText.escape(c.who)) from \(c.peer), \(mode), since \(AdminProtocol.timestamp(c.since))")
        }
        for _ in console.followers { lines.append("  tail   a vspc tail -f follower (read-only)") }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    mutating func toggleExclusive(_ client: ClientConnection) {
        let key = client.console
        guard client.mode == .readWrite else {
            return notice(client.id, "a read-only key cannot take exclusive write")
        }
        switch consoles[key]?.exclusive {
        case nil:
            consoles[key]!.exclusive = client.id
            record(.exclusiveTaken, key, peer: client.peer, detail: auditDetail(client, mode: "exclusive"))
            noticeAll(key, except: nil, "\(client.who) took exclusive write; everybody else is read-only")
        case client.id?:
            releaseExclusive(key, by: client)
        case let holder?:
            notice(client.id, "\(clients[holder]?.who ?? "someone") holds exclusive write")
        }
    }

    mutating func releaseExclusive(_ key: ConsoleKey, by client: ClientConnection) {
        guard consoles[key]?.exclusive == client.id else { return }
        consoles[key]!.exclusive = nil
        record(.exclusiveReleased, key, peer: client.peer, detail: auditDetail(client, mode: "exclusive"))
        noticeAll(key, except: nil, "\(client.who) released exclusive write")
        for id in consoles[key]!.clients { clients[id]?.warnedReadOnly = false }
    }

    /// A one-line notice on an SSH session (telnet ports carry console bytes only).
    mutating func notice(_ id: ConnectionID, _ text: String) {
        guard clients[id]?.door == .ssh else { return }
        emit(.send(id, Array("\r\n[vspcd: \(text)]\r\n".utf8)))
    }

    mutating func noticeAll(_ key: ConsoleKey, except: ConnectionID?, _ text: String) {
        guard let console = consoles[key] else { return }
        for id in console.clients.sorted() where id != except { notice(id, text) }
    }

    /// What a person typed: to the VM, or held while a migration is pending.
    mutating func clientInput(_ client: ClientConnection, _ bytes: [UInt8]) {
        let key = client.console
        guard consoles[key] != nil else { return }
        switch migrations.clientInput(key, bytes) {
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
        if client.door == .telnet { descriptorsInUse -= 1 }
        let key = client.console
        guard consoles[key]?.clients.remove(id) != nil else { return }
        consoles[key]!.lastActivity = monotonicNow
        if consoles[key]!.exclusive == id {
            clients[id] = client
            releaseExclusive(key, by: client)
            clients[id] = nil
        }
        record(.clientDetach, key, peer: client.peer, detail: auditDetail(client))
        noticeAll(key, except: id, "\(client.who) detached")
    }

    /// A person whose client stopped reading is dropped, so the VM and the others never wait for it.
    mutating func dropClient(_ client: ClientConnection, reason: String) {
        guard clients[client.id] != nil else { return }
        record(.clientDropped, client.console, peer: client.peer, detail: "\(reason); \(auditDetail(client))")
        if client.door == .ssh {
            emit(.endSession(client.id, exitStatus: 1))
        } else {
            emit(.close(client.id, flush: false))
        }
    }
}
