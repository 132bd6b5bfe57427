import Foundation

/// Shared assignments (`config.cluster`): a new console is served only once its assignment has committed; the
/// database's answer decides its port (`conflict`); other nodes' assignments arrive as news and are bound here
/// too, so every node listens on every assigned port.
extension ConcentratorStateMachine {
    /// A new console's VM connected here: its assignment is written first; it is bound, listed, recorded
    /// (`vm-connect`) and claimed once that has committed.
    mutating func awaitAssignment(_ key: ConsoleKey) {
        cluster.ownership.waiting[key] = WaitingAssignment()
        persistAssignment(key)
    }

    /// A connection carries a known console here: its `vm-connect` is recorded now, or (while its assignment is
    /// on its way) once it has committed; and the console is claimed.
    mutating func clusterCarries(_ key: ConsoleKey, peer: String) {
        if cluster.ownership.waiting[key] != nil {
            consoles[key]?.connectPending = peer
        } else if let port = consoles[key]?.port {
            record(.vmConnect, key, peer: peer, detail: "port \(port)")
        }
        claim(key)
    }

    /// The outcome of an assignment write in cluster mode; false: the one-daemon handling applies (other
    /// failures are retried with back-off).
    mutating func clusterAssignmentWritten(_ key: ConsoleKey, error: StoreFailure?) -> Bool {
        guard let console = consoles[key] else { return true }
        let waiting = cluster.ownership.waiting[key] != nil
        let isNew = cluster.ownership.waiting[key]?.isNew == true
        switch (error?.kind, error?.assignedPort) {
        case (nil, _) where waiting:
            assignmentCommitted(key)
        case (.conflict?, let port?):
            // Another node assigned this console first: its port is the console's.
            if port != console.port {
                log(.notice, "VM \(console.name) (\(key)) has port \(port) in the database (assigned by another node); moving it from \(console.port)")
                move(key, to: port, force: true)
            }
            if waiting { assignmentCommitted(key) } else { markPersisted(key) }
        case (.conflict?, nil):
            nextPort(key)
        case (.unreachable?, _) where isNew:
            refuseWaiting(key, detail: "the database is unreachable; no new port can be assigned",
                          log: "the database is unreachable (\(error?.message ?? "")); the VM is refused until it returns")
        default:
            return false
        }
        return true
    }

    /// The console's assignment is committed: listed, bound, and claimed if its VM is here.
    mutating func assignmentCommitted(_ key: ConsoleKey) {
        cluster.ownership.waiting[key] = nil
        emit(.cancel(.persistRetry(key)))
        if consoles[key]?.vm == nil { consoles[key]?.connectPending = nil }
        markPersisted(key)
        bind(key, isNew: false)
        if carriedHere(key) != nil, cluster.owners[key]?.node != nodeName { claim(key) }
    }

    mutating func markPersisted(_ key: ConsoleKey) {
        guard let console = consoles[key] else { return }
        consoles[key]?.persistFailures = 0
        guard !console.persisted else { return }
        consoles[key]?.persisted = true
        record(.portAssigned, key, detail: "port \(console.port)")
        storeRecovered()
    }

    /// The console's port is held by another console in the database: that port stays reserved here, and the
    /// console tries the next free one at once (32 tries at most, then its VM is refused).
    mutating func nextPort(_ key: ConsoleKey) {
        guard let console = consoles[key] else { return }
        var waiting = cluster.ownership.waiting[key] ?? WaitingAssignment(isNew: false)
        waiting.attempts += 1
        waiting.taken.insert(console.port)
        guard waiting.attempts < 32, let port = pool.allocate(excluding: waiting.taken) else {
            let detail = "no port could be assigned: \(waiting.attempts) ports tried are held by other consoles"
            return refuseWaiting(key, detail: detail, log: detail)
        }
        log(.info, "port \(console.port) is held by another console in the database; trying \(port) for \(console.name)")
        // The port tried stays reserved: another console holds it.
        if console.listener.ref != nil { unbind(key) }
        cluster.ownership.waiting[key] = waiting
        consoles[key]?.port = port
        persistAssignment(key)
        bindWaiting(on: console.port)
    }

    /// The console the database gives `port`, if it waits here for the port to be left: it binds now.
    mutating func bindWaiting(on port: Int) {
        guard let waiting = consoles.values.first(where: { $0.port == port && $0.persisted && $0.listener.ref == nil }),
              !consoles.values.contains(where: { $0.port == port && $0.key != waiting.key && $0.listener.ref != nil })
        else { return }
        pool.reserve(port)
        emit(.cancel(.listenerRetry(waiting.key)))
        bind(waiting.key, isNew: false)
    }

    /// A new console whose assignment cannot commit: its VM is refused (`port-refused`), the console goes.
    mutating func refuseWaiting(_ key: ConsoleKey, detail: String, log line: String) {
        guard let console = consoles[key] else { return }
        cluster.ownership.waiting[key] = nil
        emit(.cancel(.persistRetry(key)))
        let peer = console.vm.flatMap { vms[$0]?.peer }
        if let last = cluster.ownership.unreachableLogged, monotonicNow - last < 60_000_000_000 {
            // At most one line a minute; the refusal is recorded regardless.
        } else {
            cluster.ownership.unreachableLogged = monotonicNow
            log(.error, "cannot assign a port to VM \(console.name) (\(key)): \(line)")
        }
        record(.portRefused, uuid: key.uuid, label: key.label, name: console.name, peer: peer, detail: detail)
        unbind(key)
        consoles[key] = nil
        pool.release(console.port)
        if let id = console.vm {
            vms[id]?.role = .retired
            closeVM(id, reason: .refused)
        }
        for id in console.clients.sorted() {
            if let client = clients[id] { dropClient(client, reason: .expired) }
        }
    }

    /// Moves a console to the port the database gives it. A port held here by another console is a conflict
    /// the database settles later: logged, and (unless `force`) the console stays where it is.
    @discardableResult
    mutating func move(_ key: ConsoleKey, to port: Int, force: Bool) -> Bool {
        guard let console = consoles[key], console.port != port else { return true }
        if let other = consoles.values.first(where: { $0.port == port && $0.key != key }) {
            log(.error, "port \(port) is held here by VM \(other.name) (\(other.key)), but the database gives it to VM \(console.name) (\(key))")
            guard force else { return false }
        }
        let listening = console.listener.ref != nil
        if listening { unbind(key) }
        pool.release(console.port)
        pool.reserve(port)
        consoles[key]?.port = port
        if listening { bind(key, isNew: false) }
        bindWaiting(on: console.port)
        return true
    }

    /// Assignments other nodes committed, and those they removed.
    mutating func assignmentsNews(_ assignments: [Assignment], removed: [ConsoleKey]) {
        for a in assignments.sorted(by: { ($0.uuid, $0.label) < ($1.uuid, $1.label) }) {
            let key = ConsoleKey(uuid: a.uuid, label: a.label)
            guard let console = consoles[key] else {
                adoptAssignment(a, key)
                continue
            }
            if cluster.ownership.waiting[key] != nil {
                // Committed by another node meanwhile: its port is the console's; this node's own write no
                // longer counts.
                consoles[key]?.assignmentGeneration += 1
                move(key, to: a.port, force: true)
                assignmentCommitted(key)
                continue
            }
            if console.port != a.port, move(key, to: a.port, force: false) {
                log(.notice, "VM \(console.name) (\(key)) moves from port \(console.port) to \(a.port) (assigned by another node)")
            }
            if console.vm == nil, console.name != a.name { consoles[key]?.name = a.name }
            if !console.persisted { markPersisted(key) }
        }
        for key in removed.sorted(by: { $0.description < $1.description }) {
            assignmentRemovedElsewhere(key)
        }
    }

    /// Another node's console, unknown here: known (no VM), its port reserved and bound.
    mutating func adoptAssignment(_ a: Assignment, _ key: ConsoleKey) {
        guard (1...65535).contains(a.port) else {
            return log(.error, "the database gives VM \(a.name) (\(key)) port \(a.port), which is no TCP port; ignored")
        }
        if let pending = pendingDeletes.removeValue(forKey: key) {
            // Removed here, assigned again elsewhere: this node's delete is abandoned.
            emit(.cancel(.deleteRetry(key)))
            if pending.port != a.port { pool.release(pending.port) }
        }
        var console = ConsoleState(key: key, name: a.name, port: a.port, persisted: true, createdAt: a.createdAt,
                                   since: a.lastSeen, config: config)
        let idle = min(max(0, now.date.timeIntervalSince(a.lastSeen)), 10 * 365 * 86400)
        console.lastActivity = monotonicNow - Int64(idle * 1e9)
        let holder = consoles.values.first { $0.port == a.port }
        consoles[key] = console
        pool.reserve(a.port)
        // A console of this node's whose own write is still on its way holds the port only in memory (it binds
        // once committed): its write meets the conflict and moves it. Only a bound holder makes this one wait.
        if let holder, holder.listener.ref != nil {
            log(.error, "port \(a.port) is held here by VM \(holder.name) (\(holder.key)), but the database gives it to VM \(a.name) (\(key)); its listener waits")
            consoles[key]?.listenerError = "port \(a.port) is held here by VM \(holder.name)"
            schedule(.listenerRetry(key), seconds: config.retryInterval)
            return
        }
        bind(key, isNew: false)
    }

    /// Another node removed the console's assignment: it goes here too, unless its VM is connected here (then
    /// the assignment is written again).
    mutating func assignmentRemovedElsewhere(_ key: ConsoleKey) {
        guard let console = consoles[key], cluster.ownership.waiting[key] == nil, pendingDeletes[key] == nil else { return }
        if console.vm != nil || migrations.isPending(key) {
            persistAssignment(key)
            return
        }
        log(.info, "VM \(console.name) (\(key)): its assignment of port \(console.port) was removed by another node")
        for id in console.clients.sorted() {
            if let client = clients[id] { dropClient(client, reason: .expired) }
        }
        unbind(key)
        emit(.cancel(.persistRetry(key)))
        consoles[key] = nil
        cluster.owners[key] = nil
        pool.release(console.port)
    }
}
