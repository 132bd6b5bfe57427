import Foundation

/// The admin endpoint: one JSON request line, one JSON answer line, then raw console bytes for `tail`.
extension ConcentratorStateMachine {
    mutating func adminConnected(_ id: ConnectionID, peer: String, uid: UInt32? = nil) {
        admins[id] = AdminConnection(id: id, peer: peer, uid: uid)
        if reserveDescriptors(1) {
            admins[id]?.reserved = true
        } else {
            respond(id, AdminResponse(ok: false, error: "vspcd is at its open-file limit"), thenClose: true)
        }
    }

    mutating func adminClosed(_ id: ConnectionID) {
        guard let admin = admins.removeValue(forKey: id) else { return }
        if admin.reserved { descriptorsInUse -= 1 }
        // A `tail -f` follower is a person on the tail door.
        clientClosed(id)
        if let key = admin.tailed, consoles[key] != nil {
            record(.clientDetach, key, peer: admin.peer, detail: "door=tail mode=read-only")
        }
    }

    mutating func adminLineTooLong(_ id: ConnectionID) {
        guard admins[id]?.answered == false else { return }
        respond(id, AdminResponse(ok: false, error: AdminRequestError.tooLong(AdminProtocol.maxRequestBytes + 1).message),
                thenClose: true)
    }

    mutating func adminLine(_ id: ConnectionID, _ line: [UInt8]) {
        // One request per connection: a line after it (while a history is being read, say) is ignored.
        guard admins[id]?.answered == false, admins[id]?.history == nil else { return }
        let command: AdminCommand
        switch AdminRequest.parseCommand(line) {
        case .failure(let error):
            respond(id, AdminResponse(ok: false, error: error.message), thenClose: true)
            return
        case .success(let c):
            command = c
        }
        switch command {
        case .list:
            respond(id, AdminResponse(ok: true, vms: consoleInfos()), thenClose: true)
        case .status:
            respond(id, AdminResponse(ok: true, status: statusCounters(), daemon: daemonStatus()), thenClose: true)
        case let .tail(vm, label, bytes, follow):
            tail(id, vm: vm, label: label, bytes: bytes, follow: follow)
        case let .forget(vm, label, force):
            forget(id, vm: vm, label: label, force: force)
        case let .history(vm, label, since, limit):
            history(id, PendingHistory(query: vm, label: label, since: since, limit: limit))
        case let .tokenCreate(request):
            createToken(id, request)
        case .tokenList:
            respond(id, AdminResponse(ok: true, tokens: apiTokens.all.map { $0.info(at: now.date) }), thenClose: true)
        case let .tokenRevoke(token):
            revokeToken(id, token)
        case let .url(vm, label, readOnly, ttl):
            mintURL(id, vm: vm, label: label, mode: readOnly ? .readOnly : .readWrite, ttl: ttl)
        }
    }

    mutating func tail(_ id: ConnectionID, vm: String, label: String?, bytes: Int?, follow: Bool) {
        switch findConsole(vm, label: label) {
        case .failure(let error):
            respond(id, AdminResponse(ok: false, error: error.message, candidates: error.candidates), thenClose: true)
        case .success(let key):
            guard let console = consoles[key], let admin = admins[id] else { return }
            let backlog = console.scrollback.contents(last: bytes.map { max(0, $0) })
            respond(id, AdminResponse(ok: true, vm: info(console), backlog: backlog.count), thenClose: false)
            if follow {
                // From here on a person on the tail door: live output, drops and detach like any other.
                attachClient(ClientConnection(id: id, console: key, peer: admin.peer, door: .tail, mode: .readOnly,
                                              identity: nil, since: now.date))
                if !backlog.isEmpty { emit(.send(id, backlog)) }
            } else {
                admins[id]?.tailed = key
                record(.clientAttach, key, peer: admin.peer, detail: "door=tail mode=read-only")
                if !backlog.isEmpty { emit(.send(id, backlog)) }
                // Close only once the backlog has left: a close discards writes still queued.
                emit(.close(id, flush: true))
            }
        }
    }

    /// Removes an assignment; its port returns to the pool. A connected VM only with `force` (its connection and
    /// its people are closed; it gets a new port when it comes back).
    mutating func forget(_ id: ConnectionID, vm: String, label: String, force: Bool) {
        switch findConsole(vm, label: label) {
        case .failure(let error):
            respond(id, AdminResponse(ok: false, error: error.message, candidates: error.candidates), thenClose: true)
        case .success(let key):
            guard let console = consoles[key] else { return }
            if console.vm != nil || migrations.isPending(key), !force {
                respond(id, AdminResponse(ok: false, error: "\(console.name) is connected; forgetting it would close its console (use --force)"),
                        thenClose: true)
                return
            }
            let info = self.info(console)
            // Every connection the console had ends here, and its history says so before the port goes.
            if let vm = console.vm {
                recordDisconnect(key, peer: vms[vm]?.peer, .forgotten)
                closeRetired(vm, reason: .forgotten)
            }
            if case (_, let ended?) = migrations.update(key, { $0.reset(now: now.monotonic) }) {
                closeRetired(ended.destination, reason: .forgotten)
                cancelWindow(key, ended)
            }
            if let contender = console.contender { closeRetired(contender, reason: .forgotten) }
            for id in console.clients.sorted() {
                if let client = clients[id] { dropClient(client, reason: .forgotten) }
            }
            record(.portForgotten, key, detail: "port \(console.port), by vspc forget\(console.vm != nil ? " --force" : "")")
            removeConsole(key)
            respond(id, AdminResponse(ok: true, vm: info), thenClose: true)
        }
    }

    public func daemonStatus() -> DaemonStatus {
        let listed = consoles.values.filter(\.listed)
        let started = startedAt ?? now.date
        // People by door, in one pass: the per-door fields below are read from it.
        var byDoor = Dictionary(uniqueKeysWithValues: Door.all.map { ($0.name, 0) })
        for client in clients.values { byDoor[client.door.name, default: 0] += 1 }
        var status = DaemonStatus(
            version: config.version, startedAt: AdminProtocol.timestamp(started),
            uptimeSeconds: max(0, Int(now.date.timeIntervalSince(started))),
            consoles: listed.count, connected: consoles.values.filter { $0.vm != nil }.count,
            migrating: migrations.count, telnetClients: byDoor[Door.telnet.name] ?? 0,
            tailFollowers: byDoor[Door.tail.name] ?? 0,
            portsUsed: config.portRange.count - pool.available, portsFree: pool.available,
            portRangeStart: config.portRange.lowerBound, portRangeEnd: config.portRange.upperBound,
            descriptors: descriptorsInUse, descriptorLimit: config.descriptorLimit, eventsSuppressed: eventsSuppressed)
        status.unsaved = listed.filter { !$0.persisted }.count
        status.sshClients = byDoor[Door.ssh.name] ?? 0
        status.notListening = listed.filter { !$0.isListening && $0.listenerError != nil }.count
        status.clientsByDoor = byDoor
        status.node = nodeName
        status.nodes = nodeStatuses()
        return status
    }

    mutating func respond(_ id: ConnectionID, _ response: AdminResponse, thenClose: Bool) {
        admins[id]?.answered = true
        var data = (try? JSONEncoder().encode(response)) ?? Data("{\"version\":\(AdminProtocol.version),\"ok\":false}".utf8)
        data.append(0x0A)
        emit(.send(id, Array(data)))
        if thenClose { emit(.close(id, flush: true)) }
    }

    /// The listed consoles (those whose assignment is committed), sorted by name, label, uuid.
    public func consoleInfos() -> [ConsoleInfo] {
        consoles.values.filter(\.listed).map { info($0) }
            .sorted { ($0.name, $0.label, $0.uuid) < ($1.name, $1.label, $1.uuid) }
    }

    func info(_ c: ConsoleState) -> ConsoleInfo {
        ConsoleInfo(name: c.name, uuid: c.key.uuid, label: c.key.label, port: c.port, connected: c.vm != nil,
                    clients: c.clients.count, since: AdminProtocol.timestamp(c.since), listening: c.isListening,
                    listenError: c.isListening ? nil : c.listenerError,
                    migrating: migrations.isPending(c.key), peer: c.vm.flatMap { vms[$0]?.peer }, saved: c.persisted,
                    owner: ownerName(c.key), elsewhere: elsewhere(c))
    }

    /// The console a person means: `VMLookup.choose` over the listed consoles with that label (any label when
    /// nil). Of several, the only connected one is chosen; otherwise the refusal lists them.
    func findConsole(_ query: String, label: String?) -> Result<ConsoleKey, AdminError> {
        switch VMLookup.choose(query, among: liveCandidates(label: label), label: label, scope: .console) {
        case .found(let console):
            return .success(ConsoleKey(uuid: console.uuid, label: console.label))
        case .notFound:
            return .failure(AdminError(VMLookup.notFound(query, among: liveCandidates(), label: label)))
        case .ambiguous(let candidates):
            return .failure(AdminError(VMLookup.ambiguity(query, candidates), candidates: candidates))
        }
    }

    /// The first form of `status`, for scripts that read it.
    public func statusCounters() -> StatusCounters {
        StatusCounters(consoles: consoles.values.filter(\.listed).count,
                       connected: consoles.values.filter { $0.vm != nil }.count,
                       clients: clients.count,
                       migrating: migrations.count, freePorts: pool.available, descriptors: descriptorsInUse,
                       descriptorLimit: config.descriptorLimit,
                       startedAt: startedAt.map(AdminProtocol.timestamp) ?? "")
    }
}

/// A refusal of an admin request, as sent back to the client.
public struct AdminError: Error, Equatable, Sendable {
    public var message: String
    /// For a reference that names several consoles: those consoles.
    public var candidates: [ConsoleCandidate]?
    public init(_ message: String, candidates: [ConsoleCandidate]? = nil) {
        self.message = message
        self.candidates = candidates
    }
}
