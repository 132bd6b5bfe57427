import Foundation

/// vMotion: BEGIN on the source -> GOAHEAD with a secret; PEER from the destination -> PEER-OK; COMPLETE moves
/// the console to the destination. ABORT, the window's expiry or a fresh reconnect resume or drop it.
extension ConcentratorStateMachine {
    mutating func startMigrating(_ key: ConsoleKey, sequence: [UInt8], source: String) {
        consoles[key]!.migration = .init(sequence: sequence, source: source)
        migrating[sequence, default: []].insert(key)
        migratingCount += 1
    }

    mutating func stopMigrating(_ key: ConsoleKey) {
        guard let sequence = consoles[key]?.migration?.sequence else { return }
        migrating[sequence]?.remove(key)
        if migrating[sequence]?.isEmpty == true { migrating[sequence] = nil }
        migratingCount -= 1
    }

    /// "source A, destination B, window N ms" for the events that end a migration; forgets the migration.
    mutating func windowDetail(_ key: ConsoleKey, _ handoff: VMotionStateMachine.Handoff) -> String {
        let migration = consoles[key]?.migration
        consoles[key]?.migration = nil
        return "source \(migration?.source ?? "?"), destination \(migration?.destination ?? "none"), window \(millis(handoff.durationNanos)) ms"
    }

    /// Closes a connection that no longer carries the console (by default: the source of a completed vMotion).
    mutating func closeRetired(_ id: ConnectionID?, reason: DisconnectReason = .migrated) {
        guard let id, vms[id] != nil else { return }
        vms[id]?.role = .retired
        closeVM(id, reason: reason)
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
        guard case .carrying(let key) = vm.role else {
            emit(.send(id, VMwareCommand.message(VMwareCommand.vmotionNotNow, sequence)))
            record(.vmotionNotNow, connection: id, detail: "connection carries no console")
            return
        }
        var secret = [UInt8](repeating: 0, count: Self.secretLength)
        for i in secret.indices { secret[i] = UInt8(truncatingIfNeeded: random.next()) }
        record(.vmotionBegin, key, peer: vm.peer, detail: "sequence \(hex(sequence))")
        // A BEGIN on the source of a migration still waiting for its destination restarts it: the VM gave up
        // on the first one (ESXi retries a vMotion that failed before the destination connected).
        if let stale = consoles[key]!.vmotion.pending, stale.source == id, stale.destination == nil,
           case .resumed(let handoff) = consoles[key]!.vmotion.abort(from: id, now: now.monotonic) {
            stopMigrating(key)
            emit(.cancel(.vmotion(key, generation: stale.generation)))
            deliverHeld(handoff, to: id, key)
            record(.vmotionExpired, key, peer: vm.peer,
                   detail: "restarted by a new VMOTION-BEGIN; \(windowDetail(key, handoff))")
        }
        let current = consoles[key]!.vm
        switch consoles[key]!.vmotion.begin(sequence: sequence, from: id, currentVM: current, secret: secret,
                                            now: now.monotonic) {
        case let .goahead(payload, generation):
            startMigrating(key, sequence: sequence, source: vm.peer)
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
        // The migrations with this cookie's sequence; their secrets are compared in constant time.
        let sequence = Array(cookie.dropLast(Self.secretLength))
        let found = (migrating[sequence] ?? []).sorted { $0.description < $1.description }
            .first { consoles[$0]?.vmotion.matches(cookie: cookie) == true }
        guard let key = found else {
            emit(.send(id, reject))
            record(.vmotionPeerRejected, connection: id, detail: "unknown cookie")
            return
        }
        switch consoles[key]!.vmotion.peer(cookie: cookie, from: id) {
        case .accepted(let sequence):
            vms[id]!.role = .destination(key, early)
            emit(.send(id, VMwareCommand.message(VMwareCommand.vmotionPeerOK, sequence)))
            consoles[key]!.migration?.destination = vm.peer
            record(.vmotionPeer, key, peer: vm.peer,
                   detail: "source \(consoles[key]!.migration?.source ?? "?"), destination \(vm.peer)")
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
        switch consoles[key]!.vmotion.complete(sequence: sequence, from: id, now: now.monotonic) {
        case .switched(let handoff):
            stopMigrating(key)
            if let source = consoles[key]!.vm {
                vms[source]?.role = .retired
                if source == handoff.close { closeVM(source, reason: .migrated) }
            }
            consoles[key]!.vm = id
            vms[id]!.role = .carrying(key)
            vms[id]!.link.adoptedByVMotion()
            flushEarlyOutput(early, to: key)
            deliverHeld(handoff, to: id, key)
            record(.vmotionComplete, key, peer: vm.peer, detail: windowDetail(key, handoff), window: handoff.durationNanos)
            if let uuid = vm.link.vmUUID, uuid != key.uuid {
                log(.warning, "vMotion destination \(vm.peer) says uuid \(uuid) but migrated \(key)")
            }
            if let name = vm.link.vmName, name != consoles[key]!.name { renamed(id, name: name) }
        case .rejected(let reason):
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
        switch consoles[key]!.vmotion.abort(from: id, now: now.monotonic) {
        case .resumed(let handoff):
            stopMigrating(key)
            closeRetired(handoff.close)
            deliverHeld(handoff, to: id, key)
            record(.vmotionAbort, key, peer: vm.peer, detail: windowDetail(key, handoff))
        case .ignored(let reason):
            record(.vmotionAbortIgnored, key, peer: vm.peer, detail: reason)
        }
    }

    mutating func vmotionExpired(_ key: ConsoleKey, generation: Int, reason: String? = nil) {
        guard consoles[key] != nil,
              let handoff = consoles[key]!.vmotion.expire(generation: generation, now: now.monotonic) else { return }
        stopMigrating(key)
        closeRetired(handoff.close)
        let current = consoles[key]!.vm
        if let current, current == handoff.resumeOn {
            deliverHeld(handoff, to: current, key)
        } else if !handoff.held.isEmpty {
            // The VM is down: what was typed waits (briefly) for its next connection, as after a fresh reconnect.
            consoles[key]!.parkedInput = (handoff.held, monotonicNow + Int64(nanos(config.vmotionTimeout)))
            log(.info, "vMotion of \(consoles[key]!.name): \(handoff.held.count) bytes typed during the window are kept for the VM's next connection")
        }
        let source = consoles[key]!.migration?.source
        let window = windowDetail(key, handoff)
        record(.vmotionExpired, key, peer: current.flatMap { vms[$0]?.peer }, detail: reason.map { "\($0); \(window)" } ?? window)
        if current == nil {
            // The source closed expecting a destination that never completed: the VM is down after all.
            consoles[key]!.since = now.date
            record(.vmDisconnect, key, peer: source, detail: "source closed during a vMotion that did not complete")
        }
    }
}

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}

func millis(_ nanos: UInt64) -> String {
    String(format: "%.1f", Double(nanos) / 1_000_000)
}
