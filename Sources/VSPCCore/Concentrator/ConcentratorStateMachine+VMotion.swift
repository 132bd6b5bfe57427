import Foundation

/// vMotion: BEGIN on the source -> GOAHEAD with a secret; PEER from the destination -> PEER-OK; COMPLETE moves
/// the console to the destination. ABORT, the window's expiry or a fresh reconnect resume or drop it.
extension ConcentratorStateMachine {
    /// "source A, destination B, window N ms" for the events that end `migration`.
    func windowDetail(_ migration: VMotionStateMachine.Pending?, _ handoff: VMotionStateMachine.Handoff) -> String {
        "source \(migration?.sourcePeer ?? "?"), destination \(migration?.destinationPeer ?? "none"), window \(millis(handoff.durationNanos)) ms"
    }

    /// The window's timer of a migration that ended before it fired.
    /// With `config.cluster`, the migration's row goes too.
    mutating func cancelWindow(_ key: ConsoleKey, _ ended: VMotionStateMachine.Pending?) {
        guard let ended else { return }
        emit(.cancel(.vmotion(key, generation: ended.generation)))
        withdrawShared(key, ended)
    }

    mutating func withdrawShared(_ key: ConsoleKey, _ ended: VMotionStateMachine.Pending?) {
        guard config.cluster != nil, let ended else { return }
        emit(.cluster(.withdrawVMotion(key, sequence: ended.sequence)))
    }

    /// Whether the console can be forgotten for idleness: no VM, nobody attached, and no migration pending.
    func isIdle(_ console: ConsoleState) -> Bool {
        console.idle && !migrations.isPending(console.key)
    }

    /// Closes a connection that no longer carries the console (by default: the source of a completed vMotion).
    mutating func closeRetired(_ id: ConnectionID?, reason: DisconnectReason = .migrated) {
        guard let id, vms[id] != nil else { return }
        vms[id]?.role = .retired
        closeVM(id, reason: reason)
    }

    /// The departing source of a console (`departures`), if `id` is one.
    func departure(of id: ConnectionID) -> ConsoleKey? {
        departures.first { $0.value.source == id }?.key
    }

    /// The departing source closed (or its time is up). To a destination here: what the destination printed
    /// meanwhile goes out. To another node: the source is recorded as closed, other nodes' feeds of the console
    /// here end, and the people here follow the new owner with the input that waited. `follow`: false when the
    /// console came back here meanwhile (a COMPLETE here): its connection takes the input instead.
    @discardableResult
    mutating func endDeparture(_ key: ConsoleKey, follow: Bool = true) -> [UInt8] {
        guard let departure = departures.removeValue(forKey: key) else { return [] }
        emit(.cancel(.departure(key)))
        closeRetired(departure.source)
        guard consoles[key] != nil else { return [] }
        guard let to = departure.to else {
            broadcast(key, departure.output)
            return []
        }
        record(.vmotionSourceClosed, key, peer: departure.peer, detail: departure.moved)
        guard follow else { return departure.held }
        if let vm = consoles[key]?.vm {
            // The VM connected here again meanwhile: what was typed is its, and the console stays here.
            if !departure.held.isEmpty { emit(.send(vm, TelnetEncoder.escaped(departure.held))) }
            return []
        }
        consoles[key]?.endTenure()
        // A drain here asks for the claim the source moved to before any that followed it.
        queueDrainStep(key, then: to)
        if let owner = cluster.owners[key], owner.node != nodeName {
            queueDrainStep(key, then: owner)
            if !departure.held.isEmpty {
                log(.info, "vMotion of \(consoles[key]?.name ?? key.description): \(departure.held.count) bytes typed during the window go to node \(owner.node)")
            }
            endNodeSessions(key, owner: owner)
        }
        reconcileFeed(key, replay: true, input: departure.held)
        return []
    }

    /// A vMotion completed on a destination here while its source is still open: the source departs. It is
    /// read until ESXi closes it (or `feedDrainSeconds`), since what it printed before the COMPLETE travels on
    /// its own connection and may come after it; what the destination prints meanwhile waits
    /// (`carriedOutput`), so that the people get the source's last bytes first.
    mutating func departHere(_ key: ConsoleKey, source: ConnectionID) {
        endDeparture(key)
        // However it ends, it ended as the source of a completed vMotion.
        vms[source]?.closeReason = .migrated
        depart(key, Departure(source: source, peer: vms[source]?.peer ?? "?", to: nil, moved: "", held: []))
    }

    /// The console's migration source departs (`departures`): it carries nothing any more, and is read until it
    /// closes or its time (`feedDrainSeconds`) is up.
    mutating func depart(_ key: ConsoleKey, _ departure: Departure) {
        vms[departure.source]?.role = .retired
        departures[key] = departure
        schedule(.departure(key), seconds: Self.feedDrainSeconds)
    }

    /// Output of the connection that carries the console: to the people, the logs and the scrollback, unless
    /// its migration's source still departs here (then it waits, bounded by the early-output limit: past it,
    /// the source is closed and everything goes out).
    mutating func carriedOutput(_ key: ConsoleKey, _ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        if let departure = departures[key], departure.to == nil {
            guard departure.output.count + bytes.count > config.earlyOutputLimit else {
                departures[key]?.output.append(contentsOf: bytes)
                return
            }
            log(.warning, "vMotion of \(consoles[key]?.name ?? key.description): the destination printed more than \(config.earlyOutputLimit) bytes before the source closed; the source is closed now, and what it had not sent yet is lost")
            endDeparture(key)
        }
        broadcast(key, bytes)
    }

    /// Input typed during the window goes to the connection that carries the console now.
    mutating func deliverHeld(_ handoff: VMotionStateMachine.Handoff, to id: ConnectionID, _ key: ConsoleKey) {
        let name = consoles[key]?.name ?? key.description
        if handoff.heldDropped > 0 {
            log(.warning, "vMotion of \(name): \(handoff.heldDropped) bytes of client input exceeded the hold buffer and were discarded")
        }
        guard !handoff.held.isEmpty else { return }
        if vms[id]?.writable == true {
            emit(.send(id, TelnetEncoder.escaped(handoff.held)))
        } else {
            log(.warning, "vMotion of \(name): held input discarded, VM is not reading")
        }
    }

    mutating func vmotionBegin(_ id: ConnectionID, sequence: [UInt8]) {
        guard let vm = vms[id] else { return }
        guard case .carrying(let key) = vm.role, consoles[key] != nil else {
            emit(.send(id, VMwareCommand.message(VMwareCommand.vmotionNotNow, sequence)))
            record(.vmotionNotNow, connection: id, detail: "connection carries no console")
            return
        }
        var secret = [UInt8](repeating: 0, count: Self.secretLength)
        for i in secret.indices { secret[i] = UInt8(truncatingIfNeeded: random.next()) }
        record(.vmotionBegin, key, peer: vm.peer, detail: "sequence \(hex(sequence))")
        // A BEGIN on the source of a migration still waiting for its destination restarts it: the VM gave up
        // on the first one (ESXi retries a vMotion that failed before the destination connected).
        if let stale = migrations.pending(key), stale.source == id, stale.destination == nil,
           case (.resumed(let handoff), let ended) = migrations.update(key, { $0.abort(from: id, now: now.monotonic) }) {
            cancelWindow(key, ended)
            deliverHeld(handoff, to: id, key)
            record(.vmotionExpired, key, peer: vm.peer,
                   detail: "restarted by a new VMOTION-BEGIN; \(windowDetail(ended, handoff))")
        }
        let current = consoles[key]?.vm
        switch migrations.update(key, {
            $0.begin(sequence: sequence, from: id, currentVM: current, secret: secret, now: now.monotonic,
                     sourcePeer: vm.peer)
        }).result {
        case let .goahead(payload, generation):
            if config.cluster != nil {
                return publishVMotion(key, sequence: sequence, secret: secret, generation: generation, source: id)
            }
            // Writes are ordered: everything queued for the VM leaves before the GOAHEAD.
            emit(.send(id, VMwareCommand.message(VMwareCommand.vmotionGoahead, payload)))
            record(.vmotionGoahead, key, peer: vm.peer, detail: "sequence \(hex(sequence)), source \(vm.peer)")
            schedule(.vmotion(key, generation: generation), seconds: config.vmotionTimeout)
        case .notNow(let reason):
            emit(.send(id, VMwareCommand.message(VMwareCommand.vmotionNotNow, sequence)))
            record(.vmotionNotNow, key, peer: vm.peer, detail: reason)
        }
    }

    mutating func vmotionPeer(_ id: ConnectionID, cookie: [UInt8]) {
        guard let vm = vms[id] else { return }
        let reject = VMwareCommand.message(VMwareCommand.unknownSuboptionRcvd2, [VMwareCommand.vmotionPeer])
        guard case .negotiating(let early) = vm.role else {
            emit(.send(id, reject))
            record(.vmotionPeerRejected, connection: id, detail: "connection already carries a console")
            return
        }
        guard let key = migrations.console(forCookie: cookie, secretLength: Self.secretLength) else {
            if findRemoteVMotion(id, cookie: cookie) { return }
            emit(.send(id, reject))
            record(.vmotionPeerRejected, connection: id, detail: "unknown cookie")
            return
        }
        switch migrations.update(key, { $0.peer(cookie: cookie, from: id, address: vm.peer) }).result {
        case .accepted(let sequence):
            vms[id]?.role = .destination(key, early)
            emit(.send(id, VMwareCommand.message(VMwareCommand.vmotionPeerOK, sequence)))
            record(.vmotionPeer, key, peer: vm.peer,
                   detail: "source \(migrations.pending(key)?.sourcePeer ?? "?"), destination \(vm.peer)")
        case .rejected(let reason):
            emit(.send(id, reject))
            record(.vmotionPeerRejected, key, peer: vm.peer, detail: reason)
        }
    }

    mutating func vmotionComplete(_ id: ConnectionID, sequence: [UInt8]) {
        guard let vm = vms[id] else { return }
        let reject = VMwareCommand.message(VMwareCommand.unknownSuboptionRcvd2, [VMwareCommand.vmotionComplete])
        guard case .destination(let key, let early) = vm.role, consoles[key] != nil else {
            emit(.send(id, reject))
            record(.vmotionCompleteRejected, connection: id, detail: "no accepted VMOTION-PEER")
            return
        }
        if let shared = vm.remoteVMotion { return completeRemoteVMotion(id, shared, sequence: sequence, early: early) }
        switch migrations.update(key, { $0.complete(sequence: sequence, from: id, now: now.monotonic) }) {
        case (.switched(let handoff), let ended):
            cancelWindow(key, ended)
            if let source = consoles[key]?.vm {
                vms[source]?.role = .retired
                if source == handoff.close { departHere(key, source: source) }
            }
            consoles[key]?.vm = id
            consoles[key]?.beginTenure()
            vms[id]?.role = .carrying(key)
            vms[id]?.link.adoptedByVMotion()
            flushEarlyOutput(early, to: key)
            deliverHeld(handoff, to: id, key)
            record(.vmotionComplete, key, peer: vm.peer, detail: windowDetail(ended, handoff), window: handoff.durationNanos)
            if let uuid = vm.link.vmUUID, uuid != key.uuid {
                log(.warning, "vMotion destination \(vm.peer) says uuid \(uuid) but migrated \(key)")
            }
            if let name = vm.link.vmName, name != consoles[key]?.name { renamed(id, name: name) }
        case (.rejected(let reason), _):
            emit(.send(id, reject))
            record(.vmotionCompleteRejected, key, peer: vm.peer, detail: reason)
        }
    }

    mutating func vmotionAbort(_ id: ConnectionID) {
        guard let vm = vms[id] else { return }
        guard case .carrying(let key) = vm.role else {
            log(.warning, "VMOTION-ABORT from \(vm.peer), which carries no console; ignored")
            return
        }
        switch migrations.update(key, { $0.abort(from: id, now: now.monotonic) }) {
        case (.resumed(let handoff), let ended):
            cancelWindow(key, ended)
            closeRetired(handoff.close)
            deliverHeld(handoff, to: id, key)
            record(.vmotionAbort, key, peer: vm.peer, detail: windowDetail(ended, handoff))
        case (.ignored(let reason), _):
            record(.vmotionAbortIgnored, key, peer: vm.peer, detail: reason)
        }
    }

    mutating func vmotionExpired(_ key: ConsoleKey, generation: Int, reason: String? = nil) {
        guard consoles[key] != nil else { return }
        let (expired, ended) = migrations.update(key) { $0.expire(generation: generation, now: now.monotonic) }
        guard let handoff = expired else { return }
        withdrawShared(key, ended)
        closeRetired(handoff.close)
        let current = consoles[key]?.vm
        if let current, current == handoff.resumeOn {
            deliverHeld(handoff, to: current, key)
        } else if !handoff.held.isEmpty {
            // The VM is down: what was typed waits (briefly) for its next connection, as after a fresh reconnect.
            let until = monotonicNow + Int64(nanos(config.vmotionTimeout))
            consoles[key]?.parkedInput = (handoff.held, until)
            log(.info, "vMotion of \(consoles[key]?.name ?? key.description): \(handoff.held.count) bytes typed during the window are kept for the VM's next connection")
        }
        let window = windowDetail(ended, handoff)
        record(.vmotionExpired, key, peer: current.flatMap { vms[$0]?.peer }, detail: reason.map { "\($0); \(window)" } ?? window)
        if current == nil {
            // The source closed expecting a destination that never completed: the VM is down after all.
            consoles[key]?.since = now.date
            record(.vmDisconnect, key, peer: ended?.sourcePeer, detail: "source closed during a vMotion that did not complete")
        }
    }
}

func hex(_ bytes: [UInt8]) -> String { ClusterNoticeText.hex(bytes) }

func millis(_ nanos: UInt64) -> String {
    String(format: "%.1f", Double(nanos) / 1_000_000)
}
