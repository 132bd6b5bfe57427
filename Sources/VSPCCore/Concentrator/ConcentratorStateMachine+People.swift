import Foundation

/// People on the consoles, whatever door they came through: who may reach which console and how, what they
/// type, the escape menu, notices, and the access rules between them (read-only, exclusive write). Nothing here
/// asks which door a person used: it asks the door (`Door`) what it can do.
extension ConcentratorStateMachine {
    mutating func sessionStarted(_ id: ConnectionID, door: Door, peer: String, request asked: SessionRequest) {
        if !door.opening.isEmpty { emit(.send(id, door.opening)) }
        guard let request = rightsInForce(id, door: door, peer: peer, asked),
              let key = consoleAsked(id, door: door, peer: peer, request: request) else { return releaseToken(asked) }
        guard acceptsFeed(id, door: door, peer: peer, key: key, request: request) else { return }
        let identity = request.principal.identity
        guard door.descriptors == 0 || reserveDescriptors(door.descriptors) else {
            log(.error, "refused client \(peer) of \(consoles[key]?.name ?? key.description): open-file limit nearly reached")
            releaseToken(asked)
            return refuse(id, door: door, reason: .fdLimit)
        }
        let mode = request.principal.mode(telnetPorts: config.telnetPorts)
        var client = ClientConnection(id: id, console: key, peer: peer, door: door, mode: mode, identity: identity,
                                      since: now.date)
        if case let .key(line, _) = request.principal { client.key = line }
        if case let .token(grant, hash) = request.principal { client.token = (grant.id, grant.minter, hash) }
        attachClient(client)
        clusterSessionStarted(id, key: key, request: request)
        guard let console = consoles[key] else { return }
        let replayBytes = door.replaysScrollback ? config.scrollbackBytes : config.replayBytes
        if door.replayOnAttach, replayBytes > 0, config.scrollbackBytes > 0 {
            let replay = console.scrollback.contents(last: replayBytes)
            if !replay.isEmpty { emit(.send(id, door.frame(replay))) }
        }
        let label = console.key.label.isEmpty ? "" : "#" + console.key.label
        let menu = door.input == .escapeMenu ? "; Ctrl-] ? for the menu" : ""
        notice(id, "connected to \(DisplayText.escape(console.name))\(label) (\(upOrDown(console)))\(menu)\(mode == .readOnly ? "; read-only" : "")")
    }

    /// The request with the key's rights in force: a connection authenticated before a reload of the keys gets
    /// what the key may do now, or, for a key that is gone, nothing (its connection closes).
    mutating func rightsInForce(_ id: ConnectionID, door: Door, peer: String, _ asked: SessionRequest) -> SessionRequest? {
        guard case let .key(key, fingerprint) = asked.principal else { return asked }
        guard let current = rightsInForce(of: key, peer: peer) else {
            emit(.send(id, Array("vspcd: this key was revoked\(asked.terminal ? "\r\n" : "\n")".utf8)))
            end(id, door: door, exitStatus: 1)
            emit(.closeTransport(id))
            recordRefusal(door: door, user: asked.target.name ?? "", identity: asked.principal.identity, peer: peer,
                          why: "key revoked")
            return nil
        }
        var request = asked
        request.principal = .key(current, fingerprint: fingerprint)
        return request
    }

    /// The console a person asks for, if this person may reach it; otherwise the session is refused (or, for
    /// `list`, answered) and nil.
    mutating func consoleAsked(_ id: ConnectionID, door: Door, peer: String, request: SessionRequest) -> ConsoleKey? {
        let identity = request.principal.identity
        let newline = request.terminal ? "\r\n" : "\n"
        switch request.target {
        case .console(let key):
            guard consoles[key] != nil else {
                log(.info, "refused client \(peer): the console of its URL is gone")
                refuse(id, door: door, reason: .expired)
                return nil
            }
            return key
        case .listener(let listener):
            guard let console = consoles[listener.console], console.listener.ref == listener else {
                log(.info, "refused client \(peer): the assignment of \(consoles[listener.console]?.name ?? listener.console.description) has expired")
                refuse(id, door: door, reason: .expired)
                return nil
            }
            return console.key
        case .name(let user):
            func refused(_ why: String?) -> ConsoleKey? {
                refuseSession(id, door: door, user: user, identity: identity, peer: peer, newline: newline, why: why)
                return nil
            }
            if let command = request.command {
                return refused("a console runs no command (got \(DisplayText.escape(command).debugDescription)); use ssh VM@host without one")
            }
            let permitted = consoles.values.filter { $0.listed && request.principal.permits($0) }
            switch SSHTarget(user: user) {
            case .list:
                var detail = "door=\(door.name)"
                if let identity { detail += " key=\(identity.comment) \(identity.fingerprint)" }
                record(.clientList, peer: peer, detail: detail + " consoles=\(permitted.count)")
                listConsoles(id, door: door, permitted, newline: newline)
                return nil
            case .console(let vm, let label):
                // The rule every door and command uses: a name several consoles carry picks the one connected;
                // otherwise the refusal lists them (only consoles this person may reach are candidates).
                let allowed = Set(permitted.map(\.key))
                let candidates = liveCandidates(label: label).filter { allowed.contains(ConsoleKey(uuid: $0.uuid, label: $0.label)) }
                switch VMLookup.choose(vm, among: candidates, label: label) {
                case .found(let console): return ConsoleKey(uuid: console.uuid, label: console.label)
                case .notFound: return refused(nil)
                case .ambiguous(let list): return refused(VMLookup.ambiguity(vm, list).replacingOccurrences(of: "\n", with: newline))
                }
            case nil:
                return refused(nil)
            }
        }
    }

    /// `list`: the consoles this person may reach, one line each, then the session ends.
    mutating func listConsoles(_ id: ConnectionID, door: Door, _ permitted: [ConsoleState], newline: String) {
        let lines = permitted.sorted { ($0.name, $0.key.label, $0.key.uuid) < ($1.name, $1.key.label, $1.key.uuid) }
            .map { c in
                let name = c.key.label.isEmpty ? c.name : "\(c.name)#\(c.key.label)"
                return "\(DisplayText.escape(name))\t\(UUIDSpelling.classic(c.key.uuid))\t\(c.vm == nil ? "down" : "up")\(newline)"
            }
        emit(.send(id, Array(lines.joined().utf8)))
        end(id, door: door, exitStatus: 0)
    }

    /// A connection refused before it reached a console: counted, not recorded (a stranger could flood history).
    mutating func refuse(_ id: ConnectionID, door: Door, reason: DropReason) {
        tallies.clientsDropped[reason, default: 0] += 1
        end(id, door: door, exitStatus: 1)
    }

    /// One line and exit status 1; recorded without saying more to the person than "no such console here".
    mutating func refuseSession(_ id: ConnectionID, door: Door, user: String, identity: Identity?, peer: String,
                                newline: String, why: String?) {
        let message = why ?? "no console \(DisplayText.escape(user)) for this key"
        emit(.send(id, Array("vspcd: \(message)\(newline)".utf8)))
        end(id, door: door, exitStatus: 1)
        recordRefusal(door: door, user: user, identity: identity, peer: peer, why: nil)
    }

    /// A refusal on record: who and what in fields of their own (the user name exactly as sent, shown escaped and
    /// quoted in the detail, so no name can pass for another field or line). Where the name matches a VM, the
    /// refusal is kept under that VM (`vspc history --refused`); the person was told nothing more. At most
    /// `refusalsPerMinute` a minute per connection and per key; the rest are counted, and summed up.
    mutating func recordRefusal(door: Door, user: String, identity: Identity?, peer: String, why: String?) {
        for budgetKey in ["peer " + peer] + (identity.map { ["key " + $0.fingerprint] } ?? []) {
            var budget = refusalBudgets[budgetKey] ?? EventBudget()
            let (allowed, summary) = budget.spend(now: monotonicNow, limit: Self.refusalsPerMinute)
            refusalBudgets[budgetKey] = budget
            if summary > 0 {
                emitRecord(ConsoleEvent(kind: .eventsSuppressed, time: now.date, peer: peer,
                                        detail: "… \(grouped(summary)) more refusals suppressed (\(budgetKey.hasPrefix("key") ? "this key" : "this connection"))",
                                        door: door.name, keyComment: identity?.comment, fingerprint: identity?.fingerprint))
            }
            guard allowed else {
                eventsSuppressed += 1
                return
            }
        }
        if refusalBudgets.count > 4096 {
            let time = monotonicNow
            refusalBudgets = refusalBudgets.filter { time - $0.value.windowStart < 60_000_000_000 }
        }
        let target = SSHTarget(user: user).flatMap { target -> ConsoleState? in
            guard case let .console(vm, label) = target,
                  case .found(let hit) = VMLookup.choose(vm, among: liveCandidates(label: label), label: label) else { return nil }
            return consoles[ConsoleKey(uuid: hit.uuid, label: hit.label)]
        }
        var detail = "door=\(door.name) user=\"\(DisplayText.escape(user).replacingOccurrences(of: "\"", with: "\\\""))\""
        if let identity { detail += " key=\(DisplayText.escape(identity.comment)) \(identity.fingerprint)" }
        if let why { detail += ": \(why)" }
        emitRecord(ConsoleEvent(kind: .clientRefused, time: now.date, uuid: target?.key.uuid, label: target?.key.label ?? "",
                                name: target?.name, peer: peer, detail: detail, door: door.name, user: user,
                                keyComment: identity?.comment, fingerprint: identity?.fingerprint))
    }

    /// Ends a person's connection the way its door ends sessions.
    mutating func end(_ id: ConnectionID, door: Door, exitStatus: Int) {
        switch door.ending {
        case .exitStatus: emit(.endSession(id, exitStatus: exitStatus))
        case .close: emit(.close(id, flush: false))
        }
    }

    mutating func attachClient(_ client: ClientConnection) {
        let key = client.console
        guard consoles[key] != nil else { return }
        clients[client.id] = client
        let time = monotonicNow
        consoles.modify(key) {
            $0.clients.insert(client.id)
            $0.lastActivity = time
        }
        record(.clientAttach, key, peer: client.peer, detail: auditDetail(client))
        noticeAll(key, except: client.id, "\(client.who) attached over \(client.door.name) (\(client.mode.rawValue))")
    }

    /// `door=ssh mode=read-only key=alice@laptop SHA256:...`: who, how, with what right.
    func auditDetail(_ client: ClientConnection, mode: String? = nil) -> String {
        var detail = "door=\(client.door.name) mode=\(mode ?? client.mode.rawValue)"
        if let identity = client.identity { detail += " key=\(identity.comment) \(identity.fingerprint)" }
        if let token = client.token { detail += " token=\(token.id) minted-by=\(DisplayText.escape(token.minter))" }
        return detail
    }

    mutating func clientBytes(_ id: ConnectionID, _ bytes: [UInt8]) {
        guard let client = clients[id] else { return }
        switch client.input {
        case .telnet(var link):
            let output = link.received(bytes)
            clients[id]?.input = .telnet(link)
            if !output.replies.isEmpty { emit(.send(id, output.replies)) }
            // Byte-exact doors say nothing: a read-only person's input is dropped without a word.
            if !output.input.isEmpty, mayWrite(client) { clientInput(client, output.input) }
        case .escapeMenu(var menu):
            let events = menu.feed(bytes)
            clients[id]?.input = .escapeMenu(menu)
            for event in events {
                guard let current = clients[id] else { return }
                switch event {
                case .forward(let input):
                    if mayWrite(current) {
                        clientInput(current, input)
                    } else if !current.warnedReadOnly {
                        clients[id]?.warnedReadOnly = true
                        notice(id, readOnlyReason(current))
                    }
                case .command(let command):
                    escapeCommand(command, current)
                }
            }
        case .raw:
            // The browser's page of a read-only session sends nothing; whatever comes is dropped here too.
            if mayWrite(client) {
                clientInput(client, bytes)
            } else if !client.warnedReadOnly {
                clients[id]?.warnedReadOnly = true
                notice(id, readOnlyReason(client))
            }
        case .none:
            break
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

    mutating func toggleExclusive(_ client: ClientConnection) {
        let key = client.console
        guard client.mode == .readWrite else {
            return notice(client.id, "a read-only key cannot take exclusive write")
        }
        switch consoles[key]?.exclusive {
        case nil:
            consoles[key]?.exclusive = client.id
            record(.exclusiveTaken, key, peer: client.peer, detail: auditDetail(client, mode: "exclusive"))
            noticeAll(key, except: nil, "\(client.who) took exclusive write; everybody else is read-only")
        case client.id?:
            releaseExclusive(key, by: client)
        case let holder?:
            notice(client.id, "\(clients[holder]?.who ?? "someone") holds exclusive write")
        }
    }

    mutating func releaseExclusive(_ key: ConsoleKey, by client: ClientConnection) {
        guard let console = consoles[key], console.exclusive == client.id else { return }
        consoles[key]?.exclusive = nil
        record(.exclusiveReleased, key, peer: client.peer, detail: auditDetail(client, mode: "exclusive"))
        noticeAll(key, except: nil, "\(client.who) released exclusive write")
        for id in console.clients { clients[id]?.warnedReadOnly = false }
    }

    /// A one-line notice, on the doors that show them (the telnet ports carry console bytes only).
    mutating func notice(_ id: ConnectionID, _ text: String) {
        if let door = clients[id]?.door, door.notices, door.noticesApart { return emit(.notice(id, text)) }
        guard let bytes = clients[id]?.door.notice(text) else { return }
        emit(.send(id, bytes))
    }

    mutating func noticeAll(_ key: ConsoleKey, except: ConnectionID?, _ text: String) {
        guard let console = consoles[key] else { return }
        for id in console.clients.sorted() where id != except { notice(id, text) }
    }

    /// What a person typed: to the VM, or held while a migration is pending.
    mutating func clientInput(_ client: ClientConnection, _ bytes: [UInt8]) {
        let key = client.console
        guard let console = consoles[key] else { return }
        switch migrations.clientInput(key, bytes) {
        case .forward:
            guard let vm = console.vm else {
                if feedInput(key, bytes) { return }
                log(.debug, "input from \(client.peer) discarded: \(console.name) is not connected")
                return
            }
            if vms[vm]?.writable == true {
                emit(.send(vm, TelnetEncoder.escaped(bytes)))
            } else {
                // Charged to the VM connection's budget, like every line about it: a person typing into a VM
                // that does not read cannot flood the log.
                budgetConnection = vm
                defer { budgetConnection = nil }
                log(.warning, "input from \(client.peer) discarded: VM \(console.name) is not reading")
            }
        case .held:
            break
        case .dropped(let n):
            log(.warning, "vMotion of \(console.name): hold buffer full, \(n) bytes of input from \(client.peer) discarded")
        }
    }

    mutating func clientClosed(_ id: ConnectionID) {
        guard let client = clients.removeValue(forKey: id) else { return }
        descriptorsInUse -= client.door.descriptors
        if let token = client.token { tokens.release(hash: token.hash, now: monotonicNow) }
        let key = client.console
        guard consoles[key]?.clients.remove(id) != nil else { return }
        let time = monotonicNow
        consoles[key]?.lastActivity = time
        if consoles[key]?.exclusive == id {
            clients[id] = client
            releaseExclusive(key, by: client)
            clients[id] = nil
        }
        if client.skippedUnrecorded > 0 { recordSkip(client) }
        record(.clientDetach, key, peer: client.peer, detail: auditDetail(client))
        noticeAll(key, except: id, "\(client.who) detached")
        feedPeopleChanged(key)
    }

    /// Drops a person (recorded once, with the reason; the detach follows when the connection closes), so the VM
    /// and the others never wait for it. `end`: close it the way its door ends sessions (the daemon's own shutdown
    /// closes every connection itself).
    mutating func dropClient(_ client: ClientConnection, reason: DropReason, end ending: Bool = true) {
        guard clients[client.id] != nil, clients[client.id]?.dropped == nil else { return }
        clients[client.id]?.dropped = reason
        tallies.clientsDropped[reason, default: 0] += 1
        emitRecord(ConsoleEvent(kind: .clientDropped, time: now.date, uuid: client.console.uuid,
                                label: client.console.label, name: consoles[client.console]?.name, peer: client.peer,
                                detail: "\(reason.detail); \(auditDetail(client))", reason: .drop(reason)))
        guard ending else { return }
        if client.door.ending == .exitStatus {
            emit(.endSession(client.id, exitStatus: 1))
        } else {
            emit(.close(client.id, flush: false))
        }
    }

    /// A reader on a skip-ahead door fell behind and skipped bytes: recorded at most once a minute per person.
    mutating func clientSkipped(_ id: ConnectionID, bytes: Int) {
        guard bytes > 0, let client = clients[id] else { return }
        clients[id]?.skippedUnrecorded += bytes
        let time = monotonicNow
        if let last = client.skipRecorded, time - last < 60_000_000_000 { return }
        clients[id]?.skipRecorded = time
        if let current = clients[id] { recordSkip(current) }
    }

    mutating func recordSkip(_ client: ClientConnection) {
        let skipped = client.skippedUnrecorded
        clients[client.id]?.skippedUnrecorded = 0
        record(.clientSkipped, client.console, peer: client.peer,
               detail: "\(ByteCount.text(skipped)) skipped, fell behind; \(auditDetail(client))")
    }
}

extension ConcentratorStateMachine {
    /// authorized_keys changed: every open session of a key re-checked against the keys now in force.
    mutating func keysReloaded(_ keys: AuthorizedKeys, timeZone: TimeZone) {
        keysInForce = (keys, timeZone)
        for id in clients.keys.sorted() {
            guard let client = clients[id], let line = client.key, let console = consoles[client.console] else { continue }
            guard let key = rightsInForce(of: line, peer: client.peer) else {
                // The key is gone (or no line lets this client in now): its connection closes, with every session.
                notice(id, "your key was removed: this session ends")
                dropClient(client, reason: .revoked)
                emit(.closeTransport(id))
                continue
            }
            guard key.permits(vmName: console.name, uuid: console.key.uuid) else {
                notice(id, "your key no longer reaches this console: this session ends")
                dropClient(client, reason: .revoked)
                continue
            }
            if key.readOnly, client.mode == .readWrite {
                clients[id]?.mode = .readOnly
                record(.clientAccessChanged, client.console, peer: client.peer,
                       detail: "read-write -> read-only by a reload; \(auditDetail(client, mode: "read-only"))")
                if console.exclusive == id { releaseExclusive(client.console, by: client) }
                notice(id, "your key is now read-only: what you type does not reach the VM")
            }
        }
    }
}

extension ConcentratorStateMachine {
    /// The authorized_keys line that lets this key in from `peer` now, after a reload (the first line holding the
    /// key whose `from=` and `expiry-time=` let the client in, as at login); before any reload, the line it
    /// authenticated with. Nil: the key is gone, or no line lets this client in any more.
    func rightsInForce(of key: AuthorizedKey, peer: String) -> AuthorizedKey? {
        guard let keysInForce else { return key }
        let verdict = keysInForce.keys.authorize(blob: key.blob, address: Self.address(of: peer), now: now.date,
                                                 timeZone: keysInForce.timeZone)
        if case .granted(let line) = verdict { return line }
        return nil
    }
}

extension SessionRequest.Target {
    /// The name asked for, if the console was named.
    var name: String? {
        if case .name(let name) = self { return name }
        return nil
    }
}

extension SessionRequest.Principal {
    /// Who this is in notices and the audit: the key's comment and fingerprint.
    var identity: Identity? {
        if case let .key(key, fingerprint) = self { return Identity(comment: key.comment, fingerprint: fingerprint) }
        return nil
    }

    /// Whether this person may reach the console at all.
    func permits(_ console: ConsoleState) -> Bool {
        switch self {
        case .anonymous: return true
        case let .key(key, _): return key.permits(vmName: console.name, uuid: console.key.uuid)
        case let .token(grant, _): return grant.console == console.key
        // The other node decided who its people are and what they may do; it asks for one console by key.
        case .node: return true
        }
    }

    /// What this person may do there.
    func mode(telnetPorts: TelnetPortsMode) -> AccessMode {
        switch self {
        case .anonymous: return telnetPorts == .readOnly ? .readOnly : .readWrite
        case let .key(key, _): return key.readOnly ? .readOnly : .readWrite
        case let .token(grant, _): return grant.mode
        case .node: return .readWrite
        }
    }
}
