import Foundation

/// Feeds (`config.cluster`): people on this node reading a console that another live node owns. One feed per
/// console, opened for its first person here and closed with its last; its bytes are broadcast as the VM's
/// would be (but not logged to files: only the owner does that), and the people's input goes to the owner.
/// On the owner a feed is a person on the `.node` door, first given what the console printed since the claim
/// it asks from.
extension ConcentratorStateMachine {
    /// The news of cross-node vMotion and feeds; false for news handled elsewhere (+Cluster.swift).
    mutating func clusterMoveNews(_ news: ClusterNews) -> Bool {
        switch news {
        case let .vmotionPublished(key, generation): vmotionPublished(key, generation: generation)
        case let .vmotionFound(id, shared): vmotionFound(id, shared)
        case let .feedOpened(id, owner): feedOpened(id, owner: owner)
        case let .feedBytes(id, bytes): feedBytes(id, bytes)
        case let .feedClosed(id, reason): feedClosed(id, reason: reason)
        case let .failed(.publishVMotion(shared, generation), failure):
            vmotionPublishFailed(shared, generation: generation, failure)
        case let .failed(.findVMotion(id, _, _), _): vmotionFound(id, nil)
        case let .failed(.openFeed(id, _, _, _, _), failure): feedClosed(id, reason: failure.message)
        default: return false
        }
        return true
    }

    /// The owner of a console changed (`cluster.owners[key]` already says `new`). The ownership handler calls
    /// this for every owner that changed, by a claim of this node or another's, before it looks for stale VM
    /// connections. A migration of the console pending here ends (it completed on the new owner) and its held
    /// input goes to the feed; feeders of it here are sent to the new owner; the feed follows the owner.
    mutating func ownerChanged(_ key: ConsoleKey, old: Owner?, new: Owner?) {
        guard let me = config.cluster?.node, consoles[key] != nil else { return }
        // This node carries the console and its claim is in flight: another node's claim heard of now is older
        // (the node its VM came from, whose feed may still drain here). Nothing here follows it.
        if let new, new.node != me, cluster.ownership.claimsInFlight.contains(key), carriedHere(key) != nil { return }
        // A source still departing here from an earlier move is done: the owner changed again. (One departing to
        // a destination here stays when this node's own claim is answered: its last bytes may still come.)
        if departures[key]?.to != nil || new?.node != me { endDeparture(key) }
        var held: [UInt8] = []
        // Another node took the console while this node still drains the feed of its previous owner: the drain
        // goes on (that node sends what it printed under the claim asked, then ends the feed), and the feed
        // follows the new owner once it ended (`endDrain`).
        if let new, new.node != me {
            held = migratedAway(key, to: new)
            // Its source departs: `endDeparture` ends the other nodes' feeds and follows the owner once it closed.
            if departures[key] != nil { return }
            consoles[key]?.endTenure()
            queueDrainStep(key, then: new)
            if !held.isEmpty {
                log(.info, "vMotion of \(consoles[key]?.name ?? key.description): \(held.count) bytes typed during the window go to node \(new.node)")
            }
            endNodeSessions(key, owner: new)
        }
        reconcileFeed(key, replay: true, input: held)
    }

    /// The nodes changed (a heartbeat's answer): feeds follow the owners that are alive.
    mutating func nodesChanged() {
        guard config.cluster != nil else { return }
        var keys = Set(cluster.feeds.keys)
        for console in consoles.values where console.vm == nil && !console.clients.isEmpty { keys.insert(console.key) }
        keys.formUnion(cluster.parkedInput.keys)
        for key in keys.sorted(by: { $0.description < $1.description }) { reconcileFeed(key, replay: true) }
    }

    /// Feeds open now (`vspc_cluster_forwarded_sessions`): `outgoing`, this node's people read consoles owned
    /// elsewhere (one feed per console); `incoming`, other nodes read consoles owned here.
    public var forwardedSessions: (outgoing: Int, incoming: Int) {
        (cluster.feeds.values.filter { $0.closed == nil }.count, clients.values.filter { $0.door == .node }.count)
    }

    /// The epoch the driver's ACCEPT names for a feed of the console this node serves: this node's claim as
    /// the owners map knows it (nil: not known to be this node's yet).
    public func feedAcceptEpoch(_ key: ConsoleKey) -> Int64? {
        guard let me = config.cluster?.node, let owner = cluster.owners[key], owner.node == me else { return nil }
        return owner.epoch
    }

    /// How a person attaching is told the console is: up (here, or on the owner node its feed comes from), or
    /// down.
    func upOrDown(_ console: ConsoleState) -> String {
        if console.vm != nil { return "up" }
        guard let feed = cluster.feeds[console.key], feed.closed == nil else { return "down" }
        return "up on node \(feed.owner.node)"
    }

    /// The people here, without other nodes' feeds (those read from the owner, not through this node).
    func localPeople(_ key: ConsoleKey) -> [ConnectionID] {
        (consoles[key]?.clients ?? []).filter { clients[$0]?.door != .node }.sorted()
    }

    /// Opens, keeps, moves or closes the console's feed: it is wanted while people are here (or input waits for
    /// the owner), the VM is not here, and another node that is alive owns it. `replay`: a feed opened now asks
    /// for what the owner printed since its claim (people were reading already); otherwise from now.
    mutating func reconcileFeed(_ key: ConsoleKey, replay: Bool, input: [UInt8] = []) {
        guard let me = config.cluster?.node, let console = consoles[key] else {
            cluster.parkedInput[key] = nil
            return
        }
        if let vm = console.vm, let parked = cluster.parkedInput.removeValue(forKey: key) {
            // The VM came back here before its new owner's node was known: what was typed is its.
            emit(.send(vm, TelnetEncoder.escaped(parked)))
        }
        // The source departs: the feed follows the new owner once it closed; input meanwhile waits.
        if holdForDeparture(key, input) { return }
        // A feed draining after a takeover ends on its own (`endDrain`); input meanwhile waits for what follows.
        if cluster.feeds[key]?.draining == true {
            if !input.isEmpty {
                let room = max(0, config.vmotionHoldLimit - (cluster.parkedInput[key]?.count ?? 0))
                cluster.parkedInput[key, default: []].append(contentsOf: input.prefix(room))
            }
            return
        }
        let owner = cluster.owners[key].flatMap { owner -> Owner? in
            owner.node != me && console.vm == nil && cluster.nodes[owner.node]?.alive == true ? owner : nil
        }
        let people = !localPeople(key).isEmpty
        if let feed = cluster.feeds[key] {
            let keep = feed.closed == nil && (people || !feed.pendingInput.isEmpty || !input.isEmpty)
                && owner?.node == feed.owner.node
            if keep {
                if !input.isEmpty { feedInput(key, input) }
                return
            }
            closeFeed(key)
            if feed.closed == nil, people, owner == nil, console.vm == nil, cluster.owners[key]?.node != me {
                // The owner is gone (its lease ran out): the people stay, waiting for the VM.
                waitForOwner(key, feed.owner, reason: "owner node \(feed.owner.node) is no longer alive")
                return
            }
            if feed.closed != nil, people, owner == nil { cluster.feeds[key] = feed }
        }
        guard let owner else {
            parkForUnknownOwner(key, input)
            return
        }
        let parked = cluster.parkedInput.removeValue(forKey: key) ?? []
        guard people || !input.isEmpty || !parked.isEmpty else { return }
        openFeed(key, from: owner, sinceEpoch: replay ? owner.epoch : nil, input: parked + input)
    }

    /// Input for a console another node owns whose node the last heartbeat's answer did not name (it started
    /// since): kept for the feed that opens once the nodes are known, and a heartbeat goes now to learn them.
    mutating func parkForUnknownOwner(_ key: ConsoleKey, _ input: [UInt8]) {
        guard !input.isEmpty, let me = config.cluster?.node, let named = cluster.owners[key], named.node != me,
              consoles[key]?.vm == nil, cluster.nodes[named.node] == nil else { return }
        let room = max(0, config.vmotionHoldLimit - (cluster.parkedInput[key]?.count ?? 0))
        cluster.parkedInput[key, default: []].append(contentsOf: input.prefix(room))
        if input.count > room {
            log(.warning, "\(consoles[key]?.name ?? key.description): \(input.count - room) bytes of input for node \(named.node) exceeded the hold buffer and were discarded")
        }
        emit(.cluster(.heartbeat(consoles: consolesOwnedHere)))
    }

    mutating func openFeed(_ key: ConsoleKey, from owner: Owner, sinceEpoch: Int64?, input: [UInt8]) {
        guard let link = cluster.nodes[owner.node]?.link else { return }
        let id = cluster.makeFeedID()
        var feed = FeedState(id: id, owner: owner)
        _ = feed.hold(input, limit: config.vmotionHoldLimit)
        cluster.feeds[key] = feed
        cluster.feedConsoles[id] = key
        emit(.cluster(.openFeed(id, key, node: owner.node, link: link, sinceEpoch: sinceEpoch)))
    }

    /// Forgets the console's feed, closing its connection if it is still open.
    mutating func closeFeed(_ key: ConsoleKey) {
        guard let feed = cluster.feeds.removeValue(forKey: key) else { return }
        guard feed.closed == nil else { return }
        cluster.feedConsoles[feed.id] = nil
        emit(.close(feed.id, flush: true))
    }

    /// The feed is gone: its people stay, told so, until an owners news names a live owner.
    mutating func waitForOwner(_ key: ConsoleKey, _ owner: Owner, reason: String) {
        var feed = FeedState(id: 0, owner: owner)
        feed.closed = reason
        cluster.feeds[key] = feed
        log(.info, "feed of \(consoles[key]?.name ?? key.description) from node \(owner.node) ended: \(reason)")
        noticeAll(key, except: nil, "console owner node \(owner.node) is gone; waiting for the VM")
    }

    mutating func feedOpened(_ id: ConnectionID, owner: Owner) {
        guard let key = cluster.feedConsoles[id], cluster.feeds[key]?.id == id else { return }
        guard let (pending, dropped) = cluster.feeds.modify(key, { feed -> ([UInt8], Int) in
            defer {
                feed.pendingInput = []
                feed.pendingDropped = 0
            }
            feed.open = true
            // A draining feed asked for one claim keeps naming it: the owner's ACCEPT names its claim now, which
            // may be a later one (then this feed gets the claim asked only, and the later one is still owed).
            let asked = feed.owner.epoch
            feed.owner = feed.draining && asked != SessionRequest.sinceLastClaim ? Owner(node: owner.node, epoch: asked) : owner
            return (feed.pendingInput, feed.pendingDropped)
        }) else { return }
        if dropped > 0 {
            log(.warning, "feed of \(consoles[key]?.name ?? key.description): \(dropped) bytes of client input for it exceeded the hold buffer before it opened, and were discarded")
        }
        if !pending.isEmpty { emit(.send(id, pending)) }
        // A feed opened only to hand over held input ends once it is sent.
        reconcileFeed(key, replay: true)
    }

    /// Console output from the owner: to the people here and the scrollback, as the VM's would be.
    mutating func feedBytes(_ id: ConnectionID, _ bytes: [UInt8]) {
        guard let key = cluster.feedConsoles[id], cluster.feeds[key]?.id == id else { return }
        let time = monotonicNow
        consoles[key]?.lastActivity = time
        broadcast(key, bytes, fromFeed: true)
    }

    mutating func feedClosed(_ id: ConnectionID, reason: String) {
        guard let key = cluster.feedConsoles.removeValue(forKey: id), let feed = cluster.feeds[key], feed.id == id
        else { return }
        if feed.draining { return endDrain(key) }
        cluster.feeds[key] = nil
        guard !localPeople(key).isEmpty else { return }
        waitForOwner(key, feed.owner, reason: reason)
    }

    /// A person's input for a console whose VM is not here: sent on its feed, or kept until the feed opens.
    /// False: there is no feed to take it.
    @discardableResult
    mutating func feedInput(_ key: ConsoleKey, _ bytes: [UInt8]) -> Bool {
        if config.cluster != nil, holdForDeparture(key, bytes) { return true }
        guard config.cluster != nil, let feed = cluster.feeds[key], feed.closed == nil else { return false }
        if feed.open {
            emit(.send(feed.id, bytes))
            return true
        }
        // What does not fit is counted, and logged once the feed opens.
        let limit = config.vmotionHoldLimit
        cluster.feeds.modify(key) { _ = $0.hold(bytes, limit: limit) }
        return true
    }

    /// A person attached (or left): the console's feed follows its people.
    mutating func feedPeopleChanged(_ key: ConsoleKey) {
        guard config.cluster != nil else { return }
        // People already waiting here (a closed feed) have read it all along: they get what they missed.
        reconcileFeed(key, replay: cluster.feeds[key] != nil)
    }

    /// Other nodes' feeds of a console another node owns now: closed (they open one to the new owner).
    mutating func endNodeSessions(_ key: ConsoleKey, owner: Owner) {
        endNodeSessions(key, why: "node \(owner.node) owns it now")
    }

    mutating func endNodeSessions(_ key: ConsoleKey, why: String) {
        for id in consoles[key]?.clients.sorted() ?? [] where clients[id]?.door == .node {
            log(.info, "closing the feed of \(consoles[key]?.name ?? key.description) for \(clients[id]?.peer ?? "?"): \(why)")
            emit(.close(id, flush: true))
        }
    }

    // MARK: the owner's side

    /// A feed asked by another node: served by the console's owner only (the node whose VM connection carries
    /// it, or that holds it). One asked from a claim of this node that another node's has followed (a node that
    /// had not heard of it yet) gets what was printed under that claim, then ends. False: not served live (the
    /// session ends).
    mutating func acceptsFeed(_ id: ConnectionID, door: Door, peer: String, key: ConsoleKey,
                              request: SessionRequest) -> Bool {
        guard case .node(let node) = request.principal else { return true }
        guard let me = config.cluster?.node, let console = consoles[key] else {
            refuse(id, door: door, reason: .expired)
            return false
        }
        if let since = request.sinceEpoch, let range = console.replayRange(since: since), let end = range.end {
            log(.info, "the feed of \(console.name) for node \(node) (\(peer)) gets what was printed here since epoch \(since) until another node claimed it, then ends")
            let bytes = console.printed(from: range.start, to: end)
            if !bytes.isEmpty { emit(.send(id, bytes)) }
            emit(.close(id, flush: true))
            return false
        }
        if console.vm != nil || cluster.owners[key]?.node == me || departures[key] != nil { return true }
        log(.info, "refused the feed of \(console.name) for node \(node) (\(peer)): not the owner")
        refuse(id, door: door, reason: .expired)
        return false
    }

    /// A feed accepted from a claim (`sinceEpoch`, any but nil) first gets what the console printed here since
    /// that claim (`ConsoleState.replayRange`).
    mutating func replaySinceClaim(_ id: ConnectionID, key: ConsoleKey, sinceEpoch: Int64?) {
        guard let since = sinceEpoch, let console = consoles[key], let range = console.replayRange(since: since),
              range.end == nil else { return }
        let bytes = console.printed(from: range.start, to: nil)
        if !bytes.isEmpty { emit(.send(id, bytes)) }
    }

    /// A person's session began: a feed from another node gets the replay it asked for; a person here on a
    /// console owned elsewhere gets the console's feed.
    mutating func clusterSessionStarted(_ id: ConnectionID, key: ConsoleKey, request: SessionRequest) {
        guard config.cluster != nil else { return }
        if case .node = request.principal {
            replaySinceClaim(id, key: key, sinceEpoch: request.sinceEpoch)
        } else {
            feedPeopleChanged(key)
        }
    }

    // MARK: draining the old owner's feed after a takeover

    /// Seconds a drained feed is waited for at most (the old owner closes it once it learns of the claim).
    /// A safety net for a node that never answers: a loaded node takes its time, and what it still owes is
    /// lost when this ends first, so it is well beyond the delays seen under load.
    static var feedDrainSeconds: Double { 10 }

    /// Steps a drain keeps after its feed (`ClusterState.drainNext`): as many as the tenures a node keeps.
    static var maxDrainSteps: Int { 4 }

    /// This node carries the console now. A feed of it from the old owner (open, or still opening) is kept until
    /// that node closes it (or `feedDrainSeconds`): the bytes it sent before it learned of the claim still reach
    /// the people here, and what the VM prints here waits for them (`drainOutput`). `heardOfSourceClaim`: the
    /// news of the source's claim came here (it ended this node's previous tenure, `previousTenure`). `source`:
    /// the source's node and its claim as the shared migration names it (`sinceLastClaim`: not known).
    mutating func drainFeed(_ key: ConsoleKey, from source: Owner, heardOfSourceClaim: Bool, previousTenure: Int?) {
        let sourceNode = source.node
        if let feed = cluster.feeds[key], feed.closed == nil {
            guard feed.draining else { return startDrain(key) }
            // Still draining from an earlier COMPLETE here: the console went to another node and came back
            // meanwhile. Unless its news came (and queued that node's claim), the source's node is asked, after
            // the feed before, for what it printed under its claim (its latest, if the migration did not say).
            guard let previousTenure else { return }
            if source.epoch == SessionRequest.sinceLastClaim, heardOfSourceClaim { return }
            queueDrainStep(key, then: source, tenure: previousTenure)
        } else if sourceNode != nodeName, !localPeople(key).isEmpty, cluster.nodes[sourceNode]?.alive == true {
            // No feed from the source's node: the news of its claim had not come here, so the people here missed
            // what the VM printed there. Its node is asked for what it printed under that claim.
            closeFeed(key)
            openFeed(key, from: source, sinceEpoch: source.epoch, input: [])
            log(.info, "vMotion of \(consoles[key]?.name ?? key.description): asking node \(sourceNode) for what the VM printed there, which the people here have not seen")
            startDrain(key)
        } else {
            reconcileFeed(key, replay: false)
        }
    }

    /// The console's feed (just opened, or open) drains: kept until its node ends it, or `feedDrainSeconds`.
    /// No feed: nothing to drain, and the feed follows the owner.
    mutating func startDrain(_ key: ConsoleKey) {
        guard cluster.feeds[key] != nil else { return reconcileFeed(key, replay: false) }
        cluster.feeds[key]?.draining = true
        schedule(.feedDrain(key), seconds: Self.feedDrainSeconds)
    }

    /// While the feed drains, another node's claim followed this node's tenure `tenure` (by default the last;
    /// `then`, `sinceLastClaim` when its epoch is not known here): what this node's VM printed until then waits
    /// for the feed before, and that claim's feed drains after it. Nothing while no feed drains, or when a step
    /// already asks for a later claim (an epoch known here).
    mutating func queueDrainStep(_ key: ConsoleKey, then owner: Owner, tenure: Int? = nil) {
        guard owner.node != nodeName, let feed = cluster.feeds[key], feed.draining, let console = consoles[key],
              let tenure = tenure ?? console.tenures.last?.number else { return }
        let asked = cluster.drainNext[key]?.last?.then ?? feed.owner
        guard owner.epoch == SessionRequest.sinceLastClaim || owner.epoch > asked.epoch else { return }
        let held = cluster.drainOutput.removeValue(forKey: key) ?? []
        cluster.drainNext[key, default: []].append(DrainStep(held: held, tenure: tenure, then: owner))
        log(.info, "vMotion of \(console.name): node \(owner.node)'s claim followed this node's while the feed of node \(feed.owner.node) still drains; it is asked next")
        if var steps = cluster.drainNext[key], steps.count > Self.maxDrainSteps {
            // The oldest claim asked goes; what this node printed before it goes out with the next step's.
            let dropped = steps.removeFirst()
            steps[0].held = dropped.held + steps[0].held
            cluster.drainNext[key] = steps
            log(.warning, "vMotion of \(console.name): more claims followed than a drain keeps; what node \(dropped.then.node) printed under its claim \(dropped.then.epoch) is not asked for")
        }
    }

    /// Output of the console's VM here while its old feed drains: held (bounded: past the early-output limit,
    /// in all the drain holds, the drain ends at once). True: held.
    mutating func holdWhileDraining(_ key: ConsoleKey, _ bytes: [UInt8]) -> Bool {
        guard cluster.feeds[key]?.draining == true else { return false }
        cluster.drainOutput[key, default: []].append(contentsOf: bytes)
        let held = (cluster.drainOutput[key]?.count ?? 0) + (cluster.drainNext[key] ?? []).reduce(0) { $0 + $1.held.count }
        if held > config.earlyOutputLimit {
            log(.warning, "\(consoles[key]?.name ?? key.description): the output held while feeds of other nodes drain passed \(config.earlyOutputLimit) bytes; it goes out now, and what they still owed is lost")
            endDrain(key, askingNext: false)
        }
        return true
    }

    /// The draining feed is done (closed by its node, or its time is up): it goes, and what the VM printed here
    /// meanwhile goes out. If another node's claim followed this node's meanwhile (`drainNext`), what this node
    /// printed until then goes out, and that claim's feed drains next (`askingNext`: false, when the holds
    /// overflowed, nothing more is asked). Last, the feed follows the owner.
    mutating func endDrain(_ key: ConsoleKey, askingNext: Bool = true) {
        guard cluster.feeds[key]?.draining == true else { return }
        emit(.cancel(.feedDrain(key)))
        closeFeed(key)
        guard consoles[key] != nil else {
            cluster.drainNext[key] = nil
            cluster.drainOutput[key] = nil
            return
        }
        while let step = cluster.drainNext[key]?.first {
            cluster.drainNext[key]?.removeFirst()
            if cluster.drainNext[key]?.isEmpty == true { cluster.drainNext[key] = nil }
            let before = consoles[key]?.appended ?? 0
            broadcast(key, step.held)
            if !step.held.isEmpty, let after = consoles[key]?.appended {
                consoles[key]?.placeTenure(step.tenure, from: before, to: after)
            }
            // The VM not here and nothing after: the feed that follows the owner replays that claim.
            guard askingNext, consoles[key]?.vm != nil || cluster.drainNext[key] != nil else { continue }
            guard cluster.nodes[step.then.node]?.link != nil else {
                log(.warning, "\(consoles[key]?.name ?? key.description): node \(step.then.node) is not known here; what it printed under its claim is not asked for")
                continue
            }
            openFeed(key, from: step.then, sinceEpoch: step.then.epoch, input: [])
            return startDrain(key)
        }
        consoles[key]?.skipDrainedBytes()
        let held = cluster.drainOutput.removeValue(forKey: key) ?? []
        let before = consoles[key]?.appended ?? 0
        broadcast(key, held)
        consoles[key]?.tenureTakes(from: before)
        // If another node owns the console by now, its feed replays what it printed since its claim.
        reconcileFeed(key, replay: true)
    }
}
