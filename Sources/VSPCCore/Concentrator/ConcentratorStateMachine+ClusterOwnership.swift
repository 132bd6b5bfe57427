import Foundation

/// Ownership (`config.cluster`): the node whose VM connection carries a console claims it at epoch+1; a node that
/// learns of a newer claim by another node while its own connection is still open is stale and closes it (its
/// people stay). The owner's scrollback saves are fenced by its epoch.
extension ConcentratorStateMachine {
    /// A local VM connection carries the console now: claim it. A new console claims once its assignment has
    /// committed (`assignmentCommitted`).
    mutating func claim(_ key: ConsoleKey) {
        guard config.cluster != nil, consoles[key] != nil, cluster.ownership.waiting[key] == nil else { return }
        emit(.cancel(.claimRetry(key)))
        cluster.ownership.claimsInFlight.insert(key)
        emit(.cluster(.claim(key)))
    }

    mutating func claimRetry(_ key: ConsoleKey) {
        guard config.cluster != nil, carriedHere(key) != nil else {
            cluster.ownership.claimFailures[key] = nil
            return
        }
        claim(key)
    }

    /// The VM connection that carries the console here, if one is open.
    func carriedHere(_ key: ConsoleKey) -> ConnectionID? {
        guard let id = consoles[key]?.vm, let vm = vms[id], !vm.closing, case .carrying(key) = vm.role else { return nil }
        return id
    }

    mutating func claimed(_ key: ConsoleKey, _ owner: Owner) {
        cluster.ownership.claimsInFlight.remove(key)
        cluster.ownership.claimFailures[key] = nil
        if cluster.ownership.claimOutageLogged {
            cluster.ownership.claimOutageLogged = false
            log(.notice, "claims of consoles go through again")
        }
        // This node's claim at that epoch names its tenure, even if another is known newer: a feed asked from it
        // still gets what was printed here under it (`acceptsFeed`).
        if owner.node == nodeName { nameTenure(key, owner.epoch) }
        if let known = cluster.owners[key], known.epoch > owner.epoch {
            // Another node claimed after this one: this claim's result is stale and changes nothing; if the
            // connection it was made for is still open here, that connection is the stale one.
            if known.node != owner.node { staleOwnerSeen(key, known) }
            return
        }
        setOwner(key, owner)
    }

    /// Keeps a console's owner, and lets the feeds and migrations follow (before any stale check, so a
    /// migration's source ends as moved, not as stale).
    mutating func setOwner(_ key: ConsoleKey, _ owner: Owner?) {
        let old = cluster.owners[key]
        guard old != owner else { return }
        cluster.owners[key] = owner
        if let owner, owner.node == nodeName { nameTenure(key, owner.epoch) }
        ownerChanged(key, old: old, new: owner)
    }

    /// This node's claim of the console came back with `epoch`: it names the tenure going on.
    mutating func nameTenure(_ key: ConsoleKey, _ epoch: Int64) {
        consoles.modify(key) { console in
            guard let last = console.tenures.indices.last, console.tenures[last].end == nil else { return }
            console.tenures[last].epoch = max(console.tenures[last].epoch ?? epoch, epoch)
        }
    }

    mutating func claimFailed(_ key: ConsoleKey, _ failure: StoreFailure) {
        cluster.ownership.claimsInFlight.remove(key)
        guard carriedHere(key) != nil else {
            cluster.ownership.claimFailures[key] = nil
            return
        }
        let failures = (cluster.ownership.claimFailures[key] ?? 0) + 1
        cluster.ownership.claimFailures[key] = failures
        if !cluster.ownership.claimOutageLogged {
            cluster.ownership.claimOutageLogged = true
            let name = consoles[key]?.name ?? key.description
            log(.warning, "cannot claim VM \(name) (\(key)) in the database (\(failure.message)); serving it anyway and retrying")
        }
        schedule(.claimRetry(key), seconds: backoff(failures))
    }

    /// Owners from the database. Another node's claim newer than this node's (or with this node's unknown) while
    /// the console's VM connection is open here: this node is stale, and closes that connection.
    mutating func ownersNews(_ owners: [ConsoleKey: Owner], full: Bool) {
        guard let node = nodeName else { return }
        if full {
            // Consoles the database has no owner for have none, except those this node carries and holds (a
            // claim of its own may have committed after the database was read).
            for (key, known) in cluster.owners where owners[key] == nil {
                if known.node == node, carriedHere(key) != nil { continue }
                setOwner(key, nil)
            }
        }
        for key in owners.keys.sorted(by: { $0.description < $1.description }) {
            guard let owner = owners[key] else { continue }
            let known = cluster.owners[key]
            if let known, known.epoch > owner.epoch { continue } // an older hint
            setOwner(key, owner)
            guard owner.node != node else { continue }
            // A claim of this node's own is on its way: its answer says whose epoch is newer (`claimed`).
            if cluster.ownership.claimsInFlight.contains(key) { continue }
            staleOwnerSeen(key, owner)
        }
    }

    /// Another node owns the console: if its VM connection is still open here, it is stale and closes (recorded
    /// `vm-disconnect`, owned elsewhere); the console and its people stay. A console in a migration is left to
    /// the migration, which ends when its new owner is known.
    mutating func staleOwnerSeen(_ key: ConsoleKey, _ owner: Owner?) {
        guard let id = carriedHere(key), !migrations.isPending(key), let peer = vms[id]?.peer else { return }
        let detail = owner.map { "owned by node \($0.node) since epoch \($0.epoch)" }
            ?? "owned by another node (a write made under this node's claim was fenced)"
        let name = consoles[key]?.name ?? key.description
        log(.warning, "VM \(name) (\(key)) is \(detail); closing its stale connection from \(peer)")
        emitRecord(ConsoleEvent(kind: .vmDisconnect, time: now.date, uuid: key.uuid, label: key.label,
                                name: consoles[key]?.name, peer: peer, detail: detail,
                                reason: .disconnect(.ownedElsewhere)))
        statusLine(.vmDisconnect, key)
        let (date, time) = (now.date, monotonicNow)
        consoles.modify(key) {
            $0.vm = nil
            $0.since = date
            $0.lastActivity = time
        }
        cluster.ownership.claimFailures[key] = nil
        emit(.cancel(.claimRetry(key)))
        consoles[key]?.endTenure()
        vms[id]?.role = .retired
        closeVM(id, reason: .ownedElsewhere)
        // Its people are fed from the new owner now, from that owner's claim on.
        reconcileFeed(key, replay: true)
    }

    /// The scrollback saves of a cluster node: only consoles it owns, each in a write of its own fenced by its
    /// claim (so a fenced write names its console). Consoles owned elsewhere (or by nobody known) are saved by
    /// their owner, not here; a console carried here whose claim is not answered yet (a first claim, or one
    /// after the VM came back) keeps what it printed (bounded by its ring) for its first save once it is.
    mutating func saveScrollbackFenced(final: Bool) {
        guard let node = nodeName else { return }
        let due = consoles.values.filter { $0.scrollbackDirty && (final || !scrollbackSaving.contains($0.key)) }
        for key in due.map(\.key).sorted(by: { $0.description < $1.description }) {
            guard let owner = cluster.owners[key], owner.node == node else {
                if cluster.owners[key] == nil, carriedHere(key) != nil { continue }
                if cluster.ownership.claimsInFlight.contains(key) { continue }
                consoles.modify(key) {
                    $0.scrollbackUnsaved = 0
                    $0.scrollbackRewrite = false
                }
                continue
            }
            if cluster.ownership.claimsInFlight.contains(key) { continue }
            guard let op = takeScrollbackOp(key) else { continue }
            scrollbackSaving.insert(key)
            cluster.ownership.savingUnder[key] = owner.epoch
            emit(.persist([.fenced(key, owner, [op])], token: .scrollback([key])))
        }
    }

    /// A fenced scrollback save: another node claimed these consoles since, so this node is stale for them,
    /// unless this node has claimed one again since the save went (or is claiming it): that save was outdated,
    /// and the next rewrites the whole ring.
    mutating func scrollbackFenced(_ keys: [ConsoleKey]) {
        scrollbackSaving.subtract(keys)
        guard let node = nodeName else { return }
        for key in keys {
            let under = cluster.ownership.savingUnder.removeValue(forKey: key)
            let known = cluster.owners[key]
            let claimedSince = known.map { $0.node == node && $0.epoch > (under ?? .max) } ?? false
            if cluster.ownership.claimsInFlight.contains(key) || claimedSince {
                consoles[key]?.scrollbackRewrite = true
                continue
            }
            if known?.node == node { setOwner(key, nil) }
            staleOwnerSeen(key, known?.node == node ? nil : known)
        }
    }
}
