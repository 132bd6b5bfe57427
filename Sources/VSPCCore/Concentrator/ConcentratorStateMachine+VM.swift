import Foundation

/// VM connections on the proxy port: negotiation, identification, output, disconnection.
extension ConcentratorStateMachine {
    mutating func vmConnected(_ id: ConnectionID, peer: String) {
        tallies.vmConnections += 1
        let address = Self.address(of: peer)
        guard config.proxyAllow.allows(address) else {
            return refuseVM(id, peer: peer, address: address, why: "not in --proxy-allow")
        }
        if let address, let why = tooManyUnidentified(from: address) {
            return refuseVM(id, peer: peer, address: address, why: why)
        }
        // A VM costs its connection and, once identified, its console's listener.
        guard !shuttingDown, descriptorsInUse + 2 <= config.descriptorLimit - config.descriptorReserve else {
            log(.error, "refused VM connection from \(peer): open-file limit nearly reached (\(descriptorsInUse) of \(config.descriptorLimit) in use)")
            tallies.vmDisconnects[shuttingDown ? .shutdown : .refused, default: 0] += 1
            emit(.close(id, flush: false))
            return
        }
        descriptorsInUse += 1
        var vm = VMConnection(id: id, peer: peer, link: VMLinkStateMachine(acceptedServiceURI: config.serviceURI))
        vm.address = address
        if let address {
            vm.unidentified = true
            unidentifiedTotal += 1
            unidentifiedByAddress[address, default: [:]][id] = monotonicNow
        }
        let opening = vm.link.start()
        vms[id] = vm
        log(.debug, "VM connection from \(peer)")
        schedule(.negotiation(id), seconds: config.negotiationTimeout)
        schedule(.identify(id), seconds: config.identifyTimeout)
        performLink(id, opening)
    }

    /// The address part of `ip:port` (IPv6 addresses contain colons too; the port is after the last one).
    static func address(of peer: String) -> IPAddress? {
        guard let colon = peer.lastIndex(of: ":") else { return IPAddress(peer) }
        return IPAddress(String(peer[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")))
    }

    mutating func vmBytes(_ id: ConnectionID, _ bytes: [UInt8]) {
        guard let vm = vms[id], !vm.closing else { return }
        if vm.readingForLiveness {
            // Backed up, and read only because another connection claims its console: that it sends anything
            // proves it alive. What it sent is discarded (counted): its replies would have nowhere to go.
            vms.modify(id) {
                $0.discardedWhileBackedUp += bytes.count
                $0.readingForLiveness = false
            }
            emit(.setReading(id, false))
            takeoverProbeAnswered(id)
            return
        }
        guard let actions = vms.modify(id, { $0.link.received(bytes) }) else { return }
        budgetConnection = id
        defer { budgetConnection = nil }
        performLink(id, actions)
        // Whatever a console's connection sends while another claims the console shows it is alive.
        if let key = vms[id]?.console, consoles[key]?.vm == id, consoles[key]?.contender != nil {
            takeoverProbeAnswered(id)
        }
    }

    mutating func negotiationTimedOut(_ id: ConnectionID) {
        guard vms[id]?.closing == false, let actions = vms.modify(id, { $0.link.negotiationTimedOut() }) else { return }
        performLink(id, actions, closing: .timeout)
    }

    mutating func nameTimedOut(_ id: ConnectionID) {
        guard vms[id]?.closing == false, let actions = vms.modify(id, { $0.link.nameTimedOut() }) else { return }
        performLink(id, actions, closing: .timeout)
    }

    /// The VM has left what it was sent unread past `vmStuckTimeout`.
    mutating func stuckTimedOut(_ id: ConnectionID) {
        guard let vm = vms[id], !vm.closing, !vm.writable else { return }
        log(.warning, "closing VM connection \(vm.peer): it has not read what it was sent for \(Int(config.vmStuckTimeout)) s")
        closeVM(id, reason: .stuck)
    }

    /// A connection that never comes to carry a console (no identification, a rejected PEER) is closed.
    mutating func identifyTimedOut(_ id: ConnectionID) {
        guard let vm = vms[id], !vm.closing, case .negotiating = vm.role else { return }
        log(.warning, "closing VM connection \(vm.peer): not identified within \(config.identifyTimeout) s")
        closeVM(id, reason: .timeout)
    }

    /// Carries out what a connection's link state machine decided; a close it asks for is for `closing`.
    mutating func performLink(_ id: ConnectionID, _ actions: [VMLinkAction], closing: DisconnectReason = .error) {
        for action in actions {
            guard let vm = vms[id], !vm.closing else { return }
            switch action {
            case .send(let bytes):
                emit(.send(id, bytes))
            case .vmData(let bytes):
                vmOutput(id, bytes)
            case let .identified(uuid, name, label):
                emit(.cancel(.negotiation(id)))
                emit(.cancel(.name(id)))
                identified(id, uuid: uuid, name: name, label: label)
            case .renamed(let name):
                renamed(id, name: name)
            case .vmotionBegin(let sequence):
                vmotionBegin(id, sequence: sequence)
            case .vmotionPeer(let cookie):
                vmotionPeer(id, cookie: cookie)
            case .vmotionComplete(let sequence):
                vmotionComplete(id, sequence: sequence)
            case .vmotionAbort:
                vmotionAbort(id)
            case .timingMark:
                takeoverProbeAnswered(id)
            case .reject(let message):
                log(.notice, "refused \(vm.peer) on the proxy port: not an ESXi host")
                emit(.send(id, Array(message.utf8)))
                closeVM(id, reason: .refused, flush: true)
            case .close(let reason):
                log(.warning, "closing VM connection \(vm.peer): \(reason)")
                closeVM(id, reason: closing)
            case let .log(level, message):
                let mapped: LogLevel = level == .debug ? .debug : (level == .info ? .info : .warning)
                log(mapped, "VM connection \(vm.peer): \(message)")
            }
        }
        guard let vm = vms[id], !vm.closing else { return }
        if vm.unidentified, !vm.role.isNegotiating { leftUnidentified(id) }
        if !vm.deferred.isEmpty, vm.link.vmUUID != nil { flushDeferredEvents(id) }
        // The uuid-without-name timer starts once the uuid is known.
        if !vm.nameTimerArmed, vm.link.vmUUID != nil, vm.link.proxyAccepted, !vm.link.isIdentified {
            vms[id]?.nameTimerArmed = true
            schedule(.name(id), seconds: config.nameTimeout)
        }
    }

    /// Closes a VM connection for `reason` (the first reason given is the one recorded and counted).
    mutating func closeVM(_ id: ConnectionID, reason: DisconnectReason, flush: Bool = false) {
        guard let vm = vms[id], !vm.closing else { return }
        vms.modify(id) {
            $0.closing = true
            if $0.closeReason == nil { $0.closeReason = reason }
        }
        if !vm.writable { emit(.cancel(.stuck(id))) }
        emit(.close(id, flush: flush))
    }

    /// Records an event about a connection that may not carry a console yet. A vMotion destination sends its
    /// PEER before its uuid: such an event waits (with its time) until the connection tells its uuid or closes.
    mutating func record(_ kind: EventKind, connection id: ConnectionID, detail: String) {
        guard let event = connectionEvent(kind, id, detail: detail) else { return }
        if event.uuid == nil {
            if vms[id]?.deferred.count ?? 16 < 16 { vms[id]?.deferred.append(event) } else { eventsSuppressed += 1 }
        } else {
            emitRecord(event)
        }
    }

    /// Writes a connection's deferred events, with its uuid and name if it has told them by now.
    mutating func flushDeferredEvents(_ id: ConnectionID) {
        guard let vm = vms[id], !vm.deferred.isEmpty else { return }
        vms[id]?.deferred = []
        for var event in vm.deferred {
            event.uuid = vm.link.vmUUID
            event.name = vm.link.vmName
            emit(.record(event))
        }
    }

    mutating func vmClosed(_ id: ConnectionID, error: Bool = false) {
        guard let vm = vms[id] else { return }
        flushDeferredEvents(id)
        leftUnidentified(id)
        if vm.discardedWhileBackedUp > 0 {
            log(.info, "VM connection \(vm.peer): \(vm.discardedWhileBackedUp) bytes it sent while backed up were discarded")
        }
        if vm.budget.suppressed > 0 { summariseSuppressed(id, vm.budget.suppressed) }
        vms[id] = nil
        descriptorsInUse -= 1
        let reason = vm.closeReason ?? (error ? .error : shuttingDown ? .shutdown : .closed)
        tallies.vmDisconnects[reason, default: 0] += 1
        for timer in [TimerID.negotiation(id), .name(id), .identify(id)] { emit(.cancel(timer)) }
        if !vm.writable { emit(.cancel(.stuck(id))) }
        if vm.link.isMidSequence { log(.info, "VM connection \(vm.peer) closed in the middle of a telnet sequence") }
        switch vm.role {
        case .carrying(let key):
            guard consoles[key] != nil else { return }
            migrations.update(key) { $0.connectionClosed(id) }
            guard consoles[key]?.vm == id else { return }
            let time = monotonicNow
            consoles.modify(key) {
                $0.vm = nil
                $0.lastActivity = time
            }
            if let pending = migrations.pending(key), !shuttingDown {
                // ESXi closes the source as the destination completes: not the VM going down.
                record(.vmotionSourceClosed, key, peer: vm.peer)
                // With `config.cluster` the destination may be on another node: the window (or the owners news
                // of its COMPLETE there) ends the migration.
                if pending.destination == nil, config.cluster == nil {
                    // No destination to complete it: the migration ends now, and its held input is released.
                    emit(.cancel(.vmotion(key, generation: pending.generation)))
                    vmotionExpired(key, generation: pending.generation, reason: "source closed with no destination")
                }
            } else {
                let date = now.date
                consoles[key]?.since = date
                recordDisconnect(key, peer: vm.peer, reason)
            }
            guard let console = consoles[key] else { return }
            emit(.persist([.touchAssignment(uuid: key.uuid, label: key.label, name: console.name, at: now.date)],
                          token: nil))
            // A newcomer waiting on the probe takes over at once.
            if let contender = console.contender, let waiting = vms[contender], case let .contending(_, early, name) = waiting.role {
                consoles[key]?.contender = nil
                emit(.cancel(.takeoverProbe(contender)))
                vms[contender]?.role = .negotiating(early)
                attach(contender, key: key, name: name, early: early)
            }
            // The VM went away here: if another node owns the console, the people here read it from there.
            reconcileFeed(key, replay: true)
        case .destination(let key, _):
            migrations.update(key) { $0.connectionClosed(id) }
            record(.vmotionDestinationClosed, key, peer: vm.peer, detail: "closed before VMOTION-COMPLETE")
        case .contending(let key, _, _):
            if consoles[key]?.contender == id { consoles[key]?.contender = nil }
            emit(.cancel(.takeoverProbe(id)))
        case .retired:
            if let key = departure(of: id) { endDeparture(key) }
        case .negotiating:
            break
        }
    }

    /// `vm-disconnect`, with its typed reason and the reason's text.
    mutating func recordDisconnect(_ key: ConsoleKey, peer: String?, _ reason: DisconnectReason) {
        emitRecord(ConsoleEvent(kind: .vmDisconnect, time: now.date, uuid: key.uuid, label: key.label,
                                name: consoles[key]?.name, peer: peer, detail: reason.detail,
                                reason: .disconnect(reason)))
        statusLine(.vmDisconnect, key)
    }

    /// Output from the VM: to every person, every follower and the scrollback.
    mutating func vmOutput(_ id: ConnectionID, _ bytes: [UInt8]) {
        guard let vm = vms[id] else { return }
        switch vm.role {
        case .carrying(let key):
            carriedOutput(key, bytes)
        case .negotiating(var early):
            // Before identification or COMPLETE: kept (bounded) until the connection carries the console.
            early.append(bytes, limit: config.earlyOutputLimit)
            vms[id]?.role = .negotiating(early)
        case .destination(let key, var early):
            early.append(bytes, limit: config.earlyOutputLimit)
            vms[id]?.role = .destination(key, early)
        case .contending(let key, var early, let name):
            early.append(bytes, limit: config.earlyOutputLimit)
            vms[id]?.role = .contending(key, early, name: name)
        case .retired:
            // The last bytes of a source whose console moved to another node still go out.
            if let key = departure(of: id) { broadcast(key, bytes) }
        }
    }

    /// `fromFeed`: the bytes came from the console's owner on another node, which alone logs and saves them.
    mutating func broadcast(_ key: ConsoleKey, _ bytes: [UInt8], fromFeed: Bool = false) {
        guard !bytes.isEmpty else { return }
        if !fromFeed, config.cluster != nil, holdWhileDraining(key, bytes) { return }
        if config.keepsOutput, !fromFeed { emit(.consoleOutput(key, bytes)) }
        let scrollback = config.scrollbackBytes
        guard let people = consoles.modify(key, { console -> Set<ConnectionID> in
            if scrollback > 0 {
                console.scrollback.append(bytes)
                console.appended += bytes.count
                if !fromFeed {
                    console.scrollbackUnsaved = min(scrollback, console.scrollbackUnsaved + bytes.count)
                }
            }
            return console.clients
        }), !people.isEmpty else { return }
        // One buffer per framing, for all the doors that frame bytes that way, in one pass.
        var telnet: [ConnectionID] = [], raw: [ConnectionID] = []
        for id in people.sorted() {
            switch clients[id]?.door.framing {
            case .telnet?: telnet.append(id)
            case .raw?: raw.append(id)
            case nil: break
            }
        }
        if !telnet.isEmpty { emit(.broadcast(telnet, Door.Framing.telnet.frame(bytes))) }
        if !raw.isEmpty { emit(.broadcast(raw, bytes)) }
    }

    /// Output kept while the connection did not carry a console goes out once it does.
    mutating func flushEarlyOutput(_ early: EarlyOutput, to key: ConsoleKey) {
        if early.dropped > 0 {
            log(.warning, "VM \(consoles[key]?.name ?? key.description): \(early.dropped) bytes of early output were discarded")
        }
        carriedOutput(key, early.bytes)
    }

    /// A connection told its uuid, name and label. If the console's own connection is still open, that one is
    /// probed first (`DO TIMING-MARK`, which any telnet peer answers): a live connection keeps the console and
    /// the newcomer is refused; a silent one (a host that died, a half-open connection) is replaced.
    mutating func identified(_ id: ConnectionID, uuid: String, name: String, label: String) {
        guard let vm = vms[id], case .negotiating(let early) = vm.role else { return }
        let key = ConsoleKey(uuid: uuid, label: label)
        if let old = consoles[key]?.vm, old != id, let holder = vms[old], !holder.closing {
            guard consoles[key]?.contender == nil else {
                record(.vmTakeoverRefused, key, peer: vm.peer, detail: "another new connection is already claiming this console")
                vms[id]?.role = .retired
                closeVM(id, reason: .refused)
                return
            }
            consoles[key]?.contender = id
            vms[id]?.role = .contending(key, early, name: name)
            emit(.send(old, TelnetEncoder.negotiate(.do, TelnetOption.timingMark)))
            if !holder.writable {
                // It is not read while backed up: read it again, to see whether it says anything at all.
                vms[old]?.readingForLiveness = true
                emit(.setReading(old, true))
            }
            schedule(.takeoverProbe(id), seconds: config.takeoverProbeTimeout)
            log(.info, "VM \(name) (\(key)): new connection from \(vm.peer) while \(holder.peer) is open; probing \(holder.peer)")
            return
        }
        attach(id, key: key, name: name, early: early)
    }

    /// The console's connection answered the probe: it is alive, and the newcomer is refused.
    mutating func takeoverProbeAnswered(_ holder: ConnectionID) {
        guard let vm = vms[holder], let key = vm.console, consoles[key]?.vm == holder,
              let contender = consoles[key]?.contender else { return }
        consoles[key]?.contender = nil
        emit(.cancel(.takeoverProbe(contender)))
        record(.vmTakeoverRefused, key, peer: vms[contender]?.peer,
               detail: "\(vm.peer) still carries this console and answered a probe")
        vms[contender]?.role = .retired
        closeVM(contender, reason: .refused)
    }

    /// The console's connection stayed silent: the newcomer takes the console over.
    mutating func takeoverProbeTimedOut(_ contender: ConnectionID) {
        guard let vm = vms[contender], !vm.closing, case let .contending(key, early, name) = vm.role else { return }
        consoles[key]?.contender = nil
        vms[contender]?.role = .negotiating(early)
        attach(contender, key: key, name: name, early: early)
    }

    /// Makes the connection the console's (creating the console and binding its port for a new VM).
    mutating func attach(_ id: ConnectionID, key: ConsoleKey, name: String, early: EarlyOutput) {
        guard let vm = vms[id] else { return }
        let (uuid, label) = (key.uuid, key.label)
        var reused = false
        var created = false
        var oldName: String?
        var dropped: VMotionStateMachine.Handoff?
        if var console = consoles[key] {
            if let old = console.vm, old != id {
                log(.warning, "VM \(name) (\(key)) reconnected from \(vm.peer); closing its stale connection from \(vms[old]?.peer ?? "?")")
                recordDisconnect(key, peer: vms[old]?.peer, .replaced)
                vms[old]?.role = .retired
                closeVM(old, reason: .replaced)
            }
            if case (let handoff?, let ended) = migrations.update(key, { $0.reset(now: now.monotonic) }) {
                consoles[key] = console
                cancelWindow(key, ended)
                record(.vmotionExpired, key, peer: vm.peer,
                       detail: "VM reconnected afresh; \(windowDetail(ended, handoff))")
                closeRetired(handoff.close)
                dropped = handoff
                guard let current = consoles[key] else { return }
                console = current
            }
            if console.name != name {
                oldName = console.name
                console.name = name
            }
            if console.persisted {
                reused = true
                emit(.persist([.touchAssignment(uuid: uuid, label: label, name: name, at: now.date)], token: nil))
            }
            consoles[key] = console
        } else {
            // A VM whose removal has not reached the disk yet gets its port back.
            let reclaimed = pendingDeletes.removeValue(forKey: key)
            if reclaimed != nil { emit(.cancel(.deleteRetry(key))) }
            if reclaimed == nil, let why = refuseNewAssignment(from: vm.address) {
                let decision = assignmentRefusalLog.refusal(from: vm.address, now: monotonicNow)
                if decision.suppressedBefore > 0 {
                    log(.warning, "… \(grouped(decision.suppressedBefore)) more new port assignments refused in the last minute")
                }
                if decision.log {
                    record(.portRefused, uuid: uuid, label: label, name: name, peer: vm.peer, detail: why)
                } else {
                    eventsSuppressed += 1
                }
                vms[id]?.role = .retired
                closeVM(id, reason: .refused)
                return
            }
            guard let port = reclaimed?.port ?? pool.allocate() else {
                record(.portExhausted, uuid: uuid, label: label, name: name, peer: vm.peer,
                       detail: "no free port left in \(config.portRange.lowerBound)-\(config.portRange.upperBound)")
                vms[id]?.role = .retired
                closeVM(id, reason: .refused)
                return
            }
            consoles[key] = ConsoleState(key: key, name: name, port: port, persisted: false, createdAt: now.date,
                                         since: now.date, config: config)
            created = true
        }
        let (date, time) = (now.date, monotonicNow)
        let parked = consoles.modify(key) { console -> (bytes: [UInt8], until: Int64)? in
            console.vm = id
            console.beginTenure()
            console.since = date
            console.lastActivity = time
            // A new console's port is decided by its bind: its vm-connect waits for it (`settlePort`).
            if created { console.connectPending = vm.peer }
            defer { console.parkedInput = nil }
            return console.parkedInput
        } ?? nil
        vms[id]?.role = .carrying(key)
        reconcileFeed(key, replay: false) // the VM is here: a feed of the console from another node ends
        if let address = vm.address, knownAddresses.count < 65536 { knownAddresses.insert(address) }
        if created, config.cluster != nil {
            awaitAssignment(key)
        } else if created {
            bind(key, isNew: true)
        } else if config.cluster != nil {
            clusterCarries(key, peer: vm.peer)
        } else if let port = consoles[key]?.port {
            record(.vmConnect, key, peer: vm.peer, detail: "port \(port)")
        }
        if let oldName { record(.nameChange, key, detail: "\(oldName) -> \(name)") }
        if reused, let port = consoles[key]?.port { record(.portReused, key, detail: "port \(port)") }
        flushEarlyOutput(early, to: key)
        // Input typed during a migration that the VM's fresh start replaced was meant for this VM.
        if let dropped { deliverHeld(dropped, to: id, key) }
        if let parked, parked.until >= monotonicNow { emit(.send(id, TelnetEncoder.escaped(parked.bytes))) }
    }

    mutating func renamed(_ id: ConnectionID, name: String) {
        guard let key = vms[id]?.console, let console = consoles[key], console.name != name else { return }
        record(.nameChange, key, detail: "\(console.name) -> \(name)")
        consoles[key]?.name = name
        if console.persisted {
            emit(.persist([.touchAssignment(uuid: key.uuid, label: key.label, name: name, at: now.date)], token: nil))
        }
    }
}
