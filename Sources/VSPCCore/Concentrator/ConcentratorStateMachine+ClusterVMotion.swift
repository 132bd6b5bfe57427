import Foundation

/// vMotion across nodes (`config.cluster`): the source's BEGIN lands on this node and the destination's PEER on
/// another, or the other way round. The migration is committed to the database before its GOAHEAD goes out; a
/// node that gets a PEER no local migration knows asks the database; the destination's node claims the console
/// on COMPLETE, and the source's node learns it from the owners news, ends its migration and feeds its people
/// (and the input it held) from the new owner.
extension ConcentratorStateMachine {
    // MARK: the source's node

    /// BEGIN with `config.cluster`: the migration is shared before the GOAHEAD (sent on `.vmotionPublished`).
    /// The window's timer runs from now, so a publication that never comes back still ends.
    mutating func publishVMotion(_ key: ConsoleKey, sequence: [UInt8], secret: [UInt8], generation: Int,
                                 source: ConnectionID) {
        guard let me = config.cluster?.node, let console = consoles[key], let vm = vms[source] else { return }
        let shared = SharedVMotion(key: key, name: console.name, port: console.port, sequence: sequence,
                                   secret: secret, sourceNode: me, sourcePeer: vm.peer, begunAt: now.date)
        emit(.cluster(.publishVMotion(shared, generation: generation)))
        schedule(.vmotion(key, generation: generation), seconds: config.vmotionTimeout)
    }

    /// The migration is in the database: its GOAHEAD goes out now (if it is still the one pending).
    mutating func vmotionPublished(_ key: ConsoleKey, generation: Int) {
        guard let pending = migrations.pending(key), pending.generation == generation, pending.sourceOpen,
              let vm = vms[pending.source], !vm.closing else { return }
        emit(.send(pending.source, VMwareCommand.message(VMwareCommand.vmotionGoahead, pending.sequence + pending.secret)))
        record(.vmotionGoahead, key, peer: vm.peer, detail: "sequence \(hex(pending.sequence)), source \(vm.peer)")
    }

    /// The migration could not be shared: NOTNOW, and the source carries on (with what was typed meanwhile).
    mutating func vmotionPublishFailed(_ shared: SharedVMotion, generation: Int, _ failure: StoreFailure) {
        let key = shared.key
        guard let pending = migrations.pending(key), pending.generation == generation,
              case (.resumed(let handoff), _) = migrations.update(key, { $0.abort(from: pending.source, now: now.monotonic) })
        else { return }
        emit(.cancel(.vmotion(key, generation: generation)))
        closeRetired(handoff.close)
        if let vm = vms[pending.source], !vm.closing {
            emit(.send(pending.source, VMwareCommand.message(VMwareCommand.vmotionNotNow, pending.sequence)))
            deliverHeld(handoff, to: pending.source, key)
        }
        record(.vmotionNotNow, key, peer: pending.sourcePeer,
               detail: "the migration could not be shared with the other nodes: \(failure.message)")
    }

    /// Another node owns the console now: a migration of it pending here (its source is this node's) was
    /// completed there. It ends, and what was typed during the window is returned, for the feed from the new
    /// owner. A source still open departs (`departures`): it is read until it closes, since what it printed
    /// before the COMPLETE may arrive after the news; the input waits with it.
    mutating func migratedAway(_ key: ConsoleKey, to owner: Owner) -> [UInt8] {
        guard let (pending, handoff) = endPendingMigration(key) else { return [] }
        let moved = "moved to node \(owner.node) at epoch \(owner.epoch), window \(millis(handoff.durationNanos)) ms"
        if handoff.heldDropped > 0 {
            log(.warning, "vMotion of \(consoles[key]?.name ?? key.description): \(handoff.heldDropped) bytes of client input exceeded the hold buffer and were discarded")
        }
        guard pending.sourceOpen, consoles[key]?.vm == pending.source else {
            log(.info, "vMotion of \(consoles[key]?.name ?? key.description): \(moved)")
            return handoff.held
        }
        let (date, time) = (now.date, monotonicNow)
        consoles.modify(key) {
            $0.vm = nil
            $0.since = date
            $0.lastActivity = time
        }
        depart(key, Departure(source: pending.source, peer: pending.sourcePeer, to: owner, moved: moved, held: handoff.held))
        return []
    }

    /// Ends the console's migration pending here, which completed on another node: its window's timer goes, and
    /// a connection the handoff closes is closed. Nil: none pending.
    mutating func endPendingMigration(_ key: ConsoleKey) -> (VMotionStateMachine.Pending, VMotionStateMachine.Handoff)? {
        guard let pending = migrations.pending(key),
              case let (handoff?, _) = migrations.update(key, { $0.expire(generation: pending.generation, now: now.monotonic) })
        else { return nil }
        emit(.cancel(.vmotion(key, generation: pending.generation)))
        closeRetired(handoff.close)
        return (pending, handoff)
    }

    /// A migration of the console pending here ended on another node before its news came (the VM is back here
    /// from `node`): it ends, and the input it held is returned.
    mutating func migratedElsewhere(_ key: ConsoleKey, node: String) -> [UInt8] {
        guard let (pending, handoff) = endPendingMigration(key) else { return [] }
        if pending.sourceOpen { closeRetired(pending.source) }
        log(.info, "vMotion of \(consoles[key]?.name ?? key.description): completed on another node; the VM is back here from node \(node)")
        return handoff.held
    }

    /// Input for a console whose source departs: it waits for the new owner's feed. False: none departs.
    mutating func holdForDeparture(_ key: ConsoleKey, _ bytes: [UInt8]) -> Bool {
        guard let departure = departures[key], departure.to != nil else { return false }
        let held = departure.held
        let room = max(0, config.vmotionHoldLimit - held.count)
        departures[key]?.held.append(contentsOf: bytes.prefix(room))
        if bytes.count > room {
            log(.warning, "vMotion of \(consoles[key]?.name ?? key.description): \(bytes.count - room) bytes of client input exceeded the hold buffer and were discarded")
        }
        return true
    }

    // MARK: the destination's node

    /// A PEER whose cookie no local migration knows: with `config.cluster` the database is asked (the
    /// connection waits, its identify timer running). False: nothing to ask (the PEER is refused).
    mutating func findRemoteVMotion(_ id: ConnectionID, cookie: [UInt8]) -> Bool {
        guard config.cluster != nil, let vm = vms[id], vm.findingVMotion == nil else { return false }
        vms[id]?.findingVMotion = cookie
        emit(.cluster(.findVMotion(id, cookie: cookie, until: config.vmotionTimeout)))
        log(.debug, "VM connection \(vm.peer): VMOTION-PEER for a migration not begun here; asking the other nodes")
        return true
    }

    /// What the database said of a PEER's cookie: a migration begun on another node (PEER-OK, the connection is
    /// its destination), or nothing (refused, as an unknown cookie).
    mutating func vmotionFound(_ id: ConnectionID, _ found: SharedVMotion?) {
        guard let vm = vms[id], !vm.closing, let cookie = vm.findingVMotion else { return }
        vms[id]?.findingVMotion = nil
        guard case .negotiating(let early) = vm.role else { return }
        guard let shared = found, constantTimeEqual(shared.cookie, cookie) else {
            emit(.send(id, VMwareCommand.message(VMwareCommand.unknownSuboptionRcvd2, [VMwareCommand.vmotionPeer])))
            record(.vmotionPeerRejected, connection: id, detail: "unknown cookie")
            return
        }
        let key = shared.key
        knowConsole(shared)
        vms.modify(id) {
            $0.role = .destination(key, early)
            $0.remoteVMotion = shared
        }
        leftUnidentified(id)
        emit(.send(id, VMwareCommand.message(VMwareCommand.vmotionPeerOK, shared.sequence)))
        record(.vmotionPeer, key, peer: vm.peer,
               detail: "source \(shared.sourcePeer) on node \(shared.sourceNode), destination \(vm.peer)")
    }

    /// The console of a migration begun elsewhere: known here already (its assignment is shared), or made from
    /// the migration's row, its port reserved and bound.
    mutating func knowConsole(_ shared: SharedVMotion) {
        let key = shared.key
        guard let console = consoles[key] else {
            if pool.isInUse(shared.port) {
                log(.warning, "VM \(shared.name) (\(key)) migrates here on port \(shared.port), which another console here holds")
            }
            var console = ConsoleState(key: key, name: shared.name, port: shared.port, persisted: true,
                                       createdAt: now.date, since: now.date, config: config)
            console.lastActivity = monotonicNow
            consoles[key] = console
            pool.reserve(shared.port)
            bind(key, isNew: false)
            return
        }
        if case .closed = console.listener, console.listenerError == nil, !console.portSettled {
            bind(key, isNew: false)
        }
    }

    /// COMPLETE on a destination whose migration began on another node: the connection carries the console,
    /// this node claims it, and the migration's row goes.
    mutating func completeRemoteVMotion(_ id: ConnectionID, _ shared: SharedVMotion, sequence: [UInt8],
                                        early: EarlyOutput) {
        guard let vm = vms[id], let me = config.cluster?.node else { return }
        let key = shared.key
        guard constantTimeEqual(sequence, shared.sequence) else {
            emit(.send(id, VMwareCommand.message(VMwareCommand.unknownSuboptionRcvd2, [VMwareCommand.vmotionComplete])))
            record(.vmotionCompleteRejected, key, peer: vm.peer, detail: "VMOTION-COMPLETE carries another sequence")
            return
        }
        // A source of this console still departing here is done, and a migration of it from here that completed
        // elsewhere (its news not come yet) ends: the VM is here again, on this destination.
        let heldForNewOwner = endDeparture(key, follow: false) + migratedElsewhere(key, node: shared.sourceNode)
        if let old = consoles[key]?.vm, old != id {
            // A connection of this console still open here is stale: the VM is on the destination now.
            recordDisconnect(key, peer: vms[old]?.peer, .replaced)
            vms[old]?.role = .retired
            closeVM(old, reason: .replaced)
        }
        // Other nodes' feeds of this console here were served under this node's earlier claim, which the
        // source's node's followed: they end (their readers follow the claim this COMPLETE makes).
        endNodeSessions(key, why: "it comes back here from node \(shared.sourceNode), under a new claim")
        // This node's tenure before this COMPLETE, and whether the news of the source's claim came here: it
        // ended that tenure, and a drain here asks for that node's claim last.
        let previousTenure = consoles[key]?.tenures.last
        let heardOfSourceClaim = previousTenure?.movedAway == true
            && cluster.drainNext[key]?.last?.then.node == shared.sourceNode
        let (date, time) = (now.date, monotonicNow)
        consoles.modify(key) {
            $0.vm = id
            $0.since = date
            $0.lastActivity = time
            // Another node carried it in between (the source's): this node's earlier tenure ended there.
            $0.endTenure()
            $0.beginTenure()
        }
        vms.modify(id) {
            $0.role = .carrying(key)
            $0.remoteVMotion = nil
            $0.link.adoptedByVMotion()
        }
        // Through `claim`, which marks the claim in flight: an older owner's notification arriving meanwhile
        // must not make this node think its new connection stale.
        claim(key)
        emit(.cluster(.withdrawVMotion(key, sequence: shared.sequence)))
        // The VM is here now: a feed of this console from its old owner ends once the old owner closes it (it
        // may still carry what the source printed last); what the VM prints here waits for it.
        drainFeed(key, from: Owner(node: shared.sourceNode, epoch: shared.sourceEpoch ?? SessionRequest.sinceLastClaim),
                  heardOfSourceClaim: heardOfSourceClaim, previousTenure: previousTenure?.number)
        flushEarlyOutput(early, to: key)
        if !heldForNewOwner.isEmpty { emit(.send(id, TelnetEncoder.escaped(heldForNewOwner))) }
        let seconds = min(max(0, now.date.timeIntervalSince(shared.begunAt)), 86400)
        let window = UInt64(seconds * 1e9)
        record(.vmotionComplete, key, peer: vm.peer,
               detail: "source \(shared.sourcePeer) on node \(shared.sourceNode), destination \(vm.peer) on node \(me), window \(millis(window)) ms",
               window: window)
        if let uuid = vm.link.vmUUID, uuid != key.uuid {
            log(.warning, "vMotion destination \(vm.peer) says uuid \(uuid) but migrated \(key)")
        }
        if let name = vm.link.vmName, name != consoles[key]?.name { renamed(id, name: name) }
    }
}
