import Foundation

/// VM connections on the proxy port: negotiation, identification, output, disconnection.
extension ConcentratorStateMachine {
    mutating func vmConnected(_ id: ConnectionID, peer: String) {
        // A VM costs its connection and, once identified, its console's listener.
        guard !shuttingDown, descriptorsInUse + 2 <= config.descriptorLimit - config.descriptorReserve else {
            log(.error, "refused VM connection from \(peer): open-file limit nearly reached (\(descriptorsInUse) of \(config.descriptorLimit) in use)")
            emit(.close(id, flush: false))
            return
        }
        descriptorsInUse += 1
        let vm = VMConnection(id: id, peer: peer, link: VMLinkStateMachine(acceptedServiceURI: config.serviceURI))
        let opening = vm.link.start()
        vms[id] = vm
        log(.debug, "VM connection from \(peer)")
        schedule(.negotiation(id), seconds: config.negotiationTimeout)
        schedule(.identify(id), seconds: config.negotiationTimeout * 6)
        performLink(id, opening)
    }

    mutating func vmBytes(_ id: ConnectionID, _ bytes: [UInt8]) {
        guard var vm = vms[id], !vm.closing else { return }
        let actions = vm.link.received(bytes)
        vms[id] = vm
        performLink(id, actions)
    }

    mutating func negotiationTimedOut(_ id: ConnectionID) {
        guard var vm = vms[id], !vm.closing else { return }
        let actions = vm.link.negotiationTimedOut()
        vms[id] = vm
        performLink(id, actions)
    }

    mutating func nameTimedOut(_ id: ConnectionID) {
        guard var vm = vms[id], !vm.closing else { return }
        let actions = vm.link.nameTimedOut()
        vms[id] = vm
        performLink(id, actions)
    }

    /// A connection that never comes to carry a console (no identification, a rejected PEER) is closed.
    mutating func identifyTimedOut(_ id: ConnectionID) {
        guard let vm = vms[id], !vm.closing, case .negotiating = vm.role else { return }
        log(.warning, "closing VM connection \(vm.peer): not identified within \(config.negotiationTimeout * 6) s")
        closeVM(id)
    }

    /// Carries out what a connection's link state machine decided.
    mutating func performLink(_ id: ConnectionID, _ actions: [VMLinkAction]) {
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
            case .reject(let message):
                log(.notice, "refused \(vm.peer) on the proxy port: not an ESXi host")
                emit(.send(id, Array(message.utf8)))
                closeVM(id, flush: true)
            case .close(let reason):
                log(.warning, "closing VM connection \(vm.peer): \(reason)")
                closeVM(id)
            case let .log(level, message):
                let mapped: LogLevel = level == .debug ? .debug : (level == .info ? .info : .warning)
                log(mapped, "VM connection \(vm.peer): \(message)")
            }
        }
        guard var vm = vms[id], !vm.closing else { return }
        if !vm.deferred.isEmpty, vm.link.vmUUID != nil { flushDeferredEvents(id) }
        // The uuid-without-name timer starts once the uuid is known.
        if !vm.nameTimerArmed, vm.link.vmUUID != nil, !vm.link.isIdentified {
            vm.nameTimerArmed = true
            vms[id] = vm
            schedule(.name(id), seconds: config.nameTimeout)
        }
    }

    mutating func closeVM(_ id: ConnectionID, flush: Bool = false) {
        guard vms[id] != nil, !vms[id]!.closing else { return }
        vms[id]!.closing = true
        emit(.close(id, flush: flush))
    }

    /// Records an event about a connection that may not carry a console yet. A vMotion destination sends its
    /// PEER before its uuid: such an event waits (with its time) until the connection tells its uuid or closes.
    mutating func record(_ kind: EventKind, connection id: ConnectionID, detail: String) {
        guard let vm = vms[id] else { return }
        let key = vm.console
        let event = ConsoleEvent(kind: kind, time: now.date, uuid: key?.uuid ?? vm.link.vmUUID,
                                 label: key?.label ?? "", name: key.flatMap { consoles[$0]?.name } ?? vm.link.vmName,
                                 peer: vm.peer, detail: detail)
        if event.uuid == nil {
            vms[id]!.deferred.append(event)
        } else {
            emit(.record(event))
        }
    }

    /// Writes a connection's deferred events, with its uuid and name if it has told them by now.
    mutating func flushDeferredEvents(_ id: ConnectionID) {
        guard let vm = vms[id], !vm.deferred.isEmpty else { return }
        vms[id]!.deferred = []
        for var event in vm.deferred {
            event.uuid = vm.link.vmUUID
            event.name = vm.link.vmName
            emit(.record(event))
        }
    }

    mutating func vmClosed(_ id: ConnectionID) {
        guard let vm = vms[id] else { return }
        flushDeferredEvents(id)
        vms[id] = nil
        descriptorsInUse -= 1
        for timer in [TimerID.negotiation(id), .name(id), .identify(id)] { emit(.cancel(timer)) }
        if vm.link.isMidSequence { log(.info, "VM connection \(vm.peer) closed in the middle of a telnet sequence") }
        switch vm.role {
        case .carrying(let key):
            guard consoles[key] != nil else { return }
            consoles[key]!.vmotion.connectionClosed(id)
            guard consoles[key]!.vm == id else { return }
            consoles[key]!.vm = nil
            consoles[key]!.lastActivity = monotonicNow
            if consoles[key]!.vmotion.isPending && !shuttingDown {
                // ESXi closes the source as the destination completes: not the VM going down.
                record(.vmotionSourceClosed, key, peer: vm.peer)
            } else {
                consoles[key]!.since = now.date
                record(.vmDisconnect, key, peer: vm.peer, detail: shuttingDown ? "daemon stopping" : "closed")
            }
            let console = consoles[key]!
            emit(.persist([.touchAssignment(uuid: key.uuid, label: key.label, name: console.name, at: now.date)],
                          token: nil))
        case .destination(let key, _):
            consoles[key]?.vmotion.connectionClosed(id)
            record(.vmotionDestinationClosed, key, peer: vm.peer, detail: "closed before VMOTION-COMPLETE")
        case .negotiating, .retired:
            break
        }
    }

    /// Output from the VM: to every person, every follower and the scrollback.
    mutating func vmOutput(_ id: ConnectionID, _ bytes: [UInt8]) {
        guard let vm = vms[id] else { return }
        switch vm.role {
        case .carrying(let key):
            broadcast(key, bytes)
        case .negotiating(var early):
            // Before identification or COMPLETE: kept (bounded) until the connection carries the console.
            early.append(bytes, limit: config.earlyOutputLimit)
            vms[id]!.role = .negotiating(early)
        case .destination(let key, var early):
            early.append(bytes, limit: config.earlyOutputLimit)
            vms[id]!.role = .destination(key, early)
        case .retired:
            break
        }
    }

    mutating func broadcast(_ key: ConsoleKey, _ bytes: [UInt8]) {
        guard !bytes.isEmpty, consoles[key] != nil else { return }
        if config.scrollbackBytes > 0 {
            consoles[key]!.scrollback.append(bytes)
            consoles[key]!.scrollbackDirty = true
        }
        let console = consoles[key]!
        if !console.clients.isEmpty {
            emit(.broadcast(console.clients.sorted(), TelnetEncoder.escaped(bytes)))
        }
        if !console.followers.isEmpty {
            emit(.broadcast(console.followers.sorted(), bytes))
        }
    }

    /// Output kept while the connection did not carry a console goes out once it does.
    mutating func flushEarlyOutput(_ early: EarlyOutput, to key: ConsoleKey) {
        if early.dropped > 0 {
            log(.warning, "VM \(consoles[key]?.name ?? key.description): \(early.dropped) bytes of early output were discarded")
        }
        broadcast(key, early.bytes)
    }

    mutating func identified(_ id: ConnectionID, uuid: String, name: String, label: String) {
        guard let vm = vms[id], case .negotiating(let early) = vm.role else { return }
        let key = ConsoleKey(uuid: uuid, label: label)
        var reused = false
        var oldName: String?
        var dropped: VMotionStateMachine.Handoff?
        if var console = consoles[key] {
            if let old = console.vm, old != id {
                log(.warning, "VM \(name) (\(key)) reconnected from \(vm.peer); closing its stale connection from \(vms[old]?.peer ?? "?")")
                record(.vmDisconnect, key, peer: vms[old]?.peer, detail: "replaced by a new connection")
                vms[old]?.role = .retired
                closeVM(old)
            }
            if let handoff = console.vmotion.reset(now: now.monotonic) {
                consoles[key] = console
                stopMigrating(key)
                record(.vmotionExpired, key, peer: vm.peer,
                       detail: "VM reconnected afresh; \(windowDetail(key, handoff))")
                closeRetired(handoff.close)
                dropped = handoff
                console = consoles[key]!
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
            guard let port = pool.allocate() else {
                record(.portExhausted, uuid: uuid, label: label, name: name, peer: vm.peer,
                       detail: "no free port left in \(config.portRange.lowerBound)-\(config.portRange.upperBound)")
                vms[id]!.role = .retired
                closeVM(id)
                return
            }
            consoles[key] = ConsoleState(key: key, name: name, port: port, persisted: false, createdAt: now.date,
                                         since: now.date, config: config)
            bind(key, isNew: true)
        }
        consoles[key]!.vm = id
        consoles[key]!.since = now.date
        consoles[key]!.lastActivity = monotonicNow
        vms[id]!.role = .carrying(key)
        record(.vmConnect, key, peer: vm.peer, detail: "port \(consoles[key]!.port)")
        if let oldName { record(.nameChange, key, detail: "\(oldName) -> \(name)") }
        if reused { record(.portReused, key, detail: "port \(consoles[key]!.port)") }
        flushEarlyOutput(early, to: key)
        // Input typed during a migration that the VM's fresh start replaced was meant for this VM.
        if let dropped { deliverHeld(dropped, to: id, key) }
    }

    mutating func renamed(_ id: ConnectionID, name: String) {
        guard let key = vms[id]?.console, let console = consoles[key], console.name != name else { return }
        record(.nameChange, key, detail: "\(console.name) -> \(name)")
        consoles[key]!.name = name
        if console.persisted {
            emit(.persist([.touchAssignment(uuid: key.uuid, label: key.label, name: name, at: now.date)], token: nil))
        }
    }
}
