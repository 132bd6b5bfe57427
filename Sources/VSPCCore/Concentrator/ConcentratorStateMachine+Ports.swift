import Foundation

/// The consoles' ports and what is kept of them: binding, assignment writes, expiry, scrollback saves.
extension ConcentratorStateMachine {
    /// Binds the console's port. A new assignment that finds its port taken moves to the next free one; a known
    /// assignment keeps its port and retries later. The assignment is written before the port is listed.
    mutating func bind(_ key: ConsoleKey, isNew: Bool, attempt: Int = 0, taken: Set<Int> = []) {
        guard !shuttingDown, let console = consoles[key] else { return }
        // `--telnet-ports off`: the port is kept (listed, stable) but nobody listens on it; people use SSH.
        if config.telnetPorts == .off {
            settlePort(key)
            if isNew { persistAssignment(key) }
            return
        }
        let ref = ListenerRef(console: key, generation: nextListenerGeneration)
        nextListenerGeneration += 1
        consoles[key]?.listener = .binding(ref, isNew: isNew, attempt: attempt, taken: taken)
        emit(.bind(ref, port: console.port))
    }

    mutating func listenerBound(_ ref: ListenerRef) {
        let key = ref.console
        guard !shuttingDown, let console = consoles[key], case let .binding(current, isNew, _, _) = console.listener,
              current == ref else {
            emit(.unbind(ref)) // a console that expired, or a bind that was superseded
            return
        }
        consoles.modify(key) {
            $0.listener = .bound(ref)
            $0.listenerError = nil
        }
        settlePort(key)
        descriptorsInUse += 1
        if isNew { persistAssignment(key) }
    }

    mutating func listenerFailed(_ ref: ListenerRef, addressInUse: Bool, message: String) {
        let key = ref.console
        guard !shuttingDown, let console = consoles[key], case let .binding(current, isNew, attempt, taken) = console.listener,
              current == ref else { return }
        consoles.modify(key) {
            $0.listener = .closed
            $0.listenerError = message
        }
        let failed = console.port
        if isNew, addressInUse, attempt < 32, let next = pool.allocate(excluding: taken.union([failed])) {
            log(.warning, "port \(failed) is taken by another process; trying \(next) for \(console.name)")
            // The taken port stays reserved in the pool, so no other VM tries it again.
            consoles[key]?.port = next
            bind(key, isNew: true, attempt: attempt + 1, taken: taken.union([failed]))
            return
        }
        log(.error, "cannot listen on \(config.listenHost):\(failed) for VM \(console.name) (\(key)): \(message); will retry every \(Int(config.retryInterval)) s")
        settlePort(key)
        record(.portBindFailed, key, detail: "port \(failed): \(message)")
        if isNew { persistAssignment(key) }
        schedule(.listenerRetry(key), seconds: config.retryInterval)
    }

    mutating func retryListener(_ key: ConsoleKey) {
        guard let console = consoles[key], case .closed = console.listener else { return }
        bind(key, isNew: false)
    }

    /// Closes the console's listener (bound or being bound).
    mutating func unbind(_ key: ConsoleKey) {
        guard let console = consoles[key] else { return }
        emit(.cancel(.listenerRetry(key)))
        switch console.listener {
        case .bound(let ref):
            descriptorsInUse -= 1
            emit(.unbind(ref))
        case .binding(let ref, _, _, _):
            emit(.unbind(ref))
        case .closed:
            break
        }
        consoles[key]?.listener = .closed
    }

    /// The console's port is decided: it is listed, and a new console's `vm-connect` names that port.
    mutating func settlePort(_ key: ConsoleKey) {
        guard let console = consoles[key] else { return }
        consoles.modify(key) {
            $0.portSettled = true
            $0.connectPending = nil
        }
        if let peer = console.connectPending { record(.vmConnect, key, peer: peer, detail: "port \(console.port)") }
    }

    /// Writes the console's assignment. The console is listed (marked unsaved) and served meanwhile; a failed
    /// write is retried with back-off.
    mutating func persistAssignment(_ key: ConsoleKey) {
        guard !shuttingDown, let console = consoles[key] else { return }
        let generation = console.assignmentGeneration + 1
        consoles[key]?.assignmentGeneration = generation
        let assignment = Assignment(uuid: key.uuid, label: key.label, name: console.name, port: console.port,
                                    createdAt: console.createdAt, lastSeen: now.date)
        emit(.persist([.upsertAssignment(assignment)], token: .assignment(key, generation: generation)))
    }

    mutating func assignmentWritten(_ key: ConsoleKey, generation: Int, error: StoreFailure?) {
        guard let console = consoles[key], console.assignmentGeneration == generation else { return }
        if config.cluster != nil, clusterAssignmentWritten(key, error: error) { return }
        if let error {
            consoles[key]?.persistFailures += 1
            storeFailed(error)
            schedule(.persistRetry(key), seconds: backoff(console.persistFailures))
            return
        }
        consoles[key]?.persistFailures = 0
        guard !console.persisted else { return }
        consoles[key]?.persisted = true
        record(.portAssigned, key, detail: "port \(console.port)")
        storeRecovered()
    }

    /// 1 s, 2 s, 4 s ... up to `retryInterval`.
    func backoff(_ failures: Int) -> Double {
        min(config.retryInterval, Double(1 << min(max(failures - 1, 0), 16)))
    }

    /// Assignments that could not be written: one log line, then at most one a minute while it lasts.
    mutating func storeFailed(_ error: StoreFailure) {
        if storeFailingSince == nil { storeFailingSince = monotonicNow }
        if let last = storeFailureLogged, monotonicNow - last < 60_000_000_000 { return }
        storeFailureLogged = monotonicNow
        let unsaved = consoles.values.filter { !$0.persisted }.count
        log(.error, "cannot write to the database (\(error.message)); \(unsaved) VM serial port\(unsaved == 1 ? "" : "s") served unsaved, \(pendingDeletes.count) removal\(pendingDeletes.count == 1 ? "" : "s") pending; retrying")
    }

    /// One line once every write that failed has gone through.
    mutating func storeRecovered() {
        guard let since = storeFailingSince, consoles.values.allSatisfy(\.persisted), pendingDeletes.isEmpty else { return }
        storeFailingSince = nil
        storeFailureLogged = nil
        log(.notice, "the database takes writes again after \(Int((monotonicNow - since) / 1_000_000_000)) s; every assignment is saved")
    }

    /// Removes a console for good: its listener closes, its assignment is deleted, and its port returns to the
    /// pool once the delete has committed.
    mutating func removeConsole(_ key: ConsoleKey) {
        guard let console = consoles[key] else { return }
        unbind(key)
        emit(.cancel(.persistRetry(key)))
        consoles[key] = nil
        if console.persisted || console.assignmentGeneration > 0 {
            pendingDeletes[key] = PendingDelete(port: console.port, generation: 0)
            deleteAssignment(key)
        } else {
            pool.release(console.port)
        }
    }

    mutating func deleteAssignment(_ key: ConsoleKey) {
        guard !shuttingDown, pendingDeletes[key] != nil else { return }
        let generation = nextDeleteGeneration
        nextDeleteGeneration += 1
        pendingDeletes[key]?.generation = generation
        emit(.persist([.deleteAssignment(uuid: key.uuid, label: key.label)], token: .deletion(key, generation: generation)))
    }

    mutating func assignmentDeleted(_ key: ConsoleKey, generation: Int, error: StoreFailure?) {
        guard let pending = pendingDeletes[key], pending.generation == generation else { return }
        if let error {
            pendingDeletes[key]?.failures += 1
            storeFailed(error)
            schedule(.deleteRetry(key), seconds: backoff(pending.failures + 1))
            return
        }
        pendingDeletes[key] = nil
        pool.release(pending.port)
        storeRecovered()
    }

    /// Removes consoles that had no VM and no client for `vmExpireTime`; their ports return to the pool.
    /// Consoles in use get their `last_seen` refreshed, so idle time survives a restart or a kill -9.
    mutating func expireIdleConsoles() {
        let limit = Int64(nanos(config.vmExpireTime))
        let ordered = consoles.values.sorted { $0.key.description < $1.key.description }
        let touches = ordered.filter { !isIdle($0) && $0.persisted }.map {
            StoreOp.touchAssignment(uuid: $0.key.uuid, label: $0.key.label, name: $0.name, at: now.date)
        }
        if !touches.isEmpty { emit(.persist(touches, token: nil)) }
        for console in ordered where isIdle(console) && console.persisted && monotonicNow - console.lastActivity > limit
            && !ownedElsewhere(console.key) {
            record(.portExpired, console.key, detail: "port \(console.port)")
            removeConsole(console.key)
        }
    }

    /// Saves the scrollback of consoles that printed since their last save. While the disk is slow, a console
    /// whose previous snapshot is still queued is skipped (it stays dirty), so at most one snapshot per console
    /// waits in memory. `final` (at shutdown) saves every dirty console regardless.
    mutating func saveScrollback(final: Bool) {
        guard config.scrollbackBytes > 0 else { return }
        if config.cluster != nil { return saveScrollbackFenced(final: final) }
        var ops: [StoreOp] = []
        var keys: [ConsoleKey] = []
        // Only the consoles that printed are sorted (every 2 s, over a fleet).
        let due = consoles.values.filter { $0.scrollbackDirty && (final || !scrollbackSaving.contains($0.key)) }
        for key in due.map(\.key).sorted(by: { $0.description < $1.description }) {
            guard let op = takeScrollbackOp(key) else { continue }
            keys.append(key)
            ops.append(op)
        }
        guard !ops.isEmpty else { return }
        scrollbackSaving.formUnion(keys)
        emit(.persist(ops, token: .scrollback(keys)))
    }

    /// The console's next scrollback write, and it is marked saved: after a failed save the whole ring, else
    /// only what was printed since the last save (disk writes grow with output, not ring size).
    mutating func takeScrollbackOp(_ key: ConsoleKey) -> StoreOp? {
        guard let console = consoles.modify(key, { console -> ConsoleState in
            defer {
                console.scrollbackUnsaved = 0
                console.scrollbackRewrite = false
            }
            return console
        }) else { return nil }
        if console.scrollbackRewrite {
            return .saveScrollback(uuid: key.uuid, label: key.label, data: console.scrollback.contents(), at: now.date)
        }
        return .appendScrollback(uuid: key.uuid, label: key.label,
                                 data: console.scrollback.contents(last: console.scrollbackUnsaved),
                                 keep: config.scrollbackBytes, at: now.date)
    }

    mutating func scrollbackWritten(_ keys: [ConsoleKey], error: StoreFailure?) {
        if error?.kind == .fenced, config.cluster != nil { return scrollbackFenced(keys) }
        scrollbackSaving.subtract(keys)
        for key in keys { cluster.ownership.savingUnder[key] = nil }
        if error != nil {
            // Try again next time, rewriting the whole ring: what this save carried is not on disk.
            for key in keys { consoles[key]?.scrollbackRewrite = true }
        }
    }
}

extension ConcentratorStateMachine {
    /// Consoles whose port is being bound right now (after start: the known assignments not yet bound or failed).
    public var listenersBinding: Int {
        consoles.values.reduce(0) { count, console in
            if case .binding = console.listener { return count + 1 }
            return count
        }
    }

    /// Whether the daemon holds an assignment for this console.
    public func knows(_ key: ConsoleKey) -> Bool { consoles[key] != nil }
}
