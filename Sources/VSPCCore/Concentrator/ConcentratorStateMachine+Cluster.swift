import Foundation

/// Several daemons sharing PostgreSQL (`config.cluster`): ownership, shared assignments, cross-node vMotion and
/// feeds of consoles owned elsewhere. Without `config.cluster` none of this runs.
extension ConcentratorStateMachine {
    mutating func clusterNews(_ news: ClusterNews) {
        guard config.cluster != nil else { return }
        // Cross-node vMotion and feeds (+ClusterVMotion, +ClusterFeed).
        if clusterMoveNews(news) { return }
        switch news {
        case .nodes(let nodes): nodesNews(nodes)
        case let .owners(owners, full): ownersNews(owners, full: full)
        case let .assignments(assignments, removed): assignmentsNews(assignments, removed: removed)
        case let .claimed(key, owner): claimed(key, owner)
        case let .failed(.claim(key), failure): claimFailed(key, failure)
        case .breakAsked(let id):
            // The reader's node checked its person may write; the owner audits the BREAK as the node's.
            if let client = clients[id], client.door == .node { escapeCommand(.sendBreak, client) }
        case .failed, .vmotionPublished, .vmotionFound, .feedOpened, .feedBytes, .feedClosed:
            break // handled by clusterMoveNews, or a failure of a request nobody waits for
        }
    }

    /// This node's name (nil: one daemon alone).
    var nodeName: String? { config.cluster?.node }

    /// At start-up: the first heartbeat goes out at once, then every `heartbeatInterval`.
    mutating func clusterStarted() {
        guard config.cluster != nil else { return }
        schedule(.heartbeat, seconds: 0)
    }

    mutating func heartbeat() {
        guard let cluster = config.cluster else { return }
        emit(.cluster(.heartbeat(consoles: consolesOwnedHere)))
        schedule(.heartbeat, seconds: cluster.heartbeatInterval)
    }

    /// Consoles whose VM connection is here and which this node holds (its leases; `vspc_cluster_leases`).
    public var consolesOwnedHere: Int {
        guard let node = nodeName else { return 0 }
        return consoles.values.reduce(0) { count, console in
            console.vm != nil && cluster.owners[console.key]?.node == node ? count + 1 : count
        }
    }

    mutating func nodesNews(_ nodes: [NodeStatus]) {
        var byName: [String: NodeStatus] = [:]
        for node in nodes { byName[node.name] = node }
        cluster.nodes = byName
        cluster.ownership.nodesAt = monotonicNow
        nodesChanged()
    }

    /// The nodes the last heartbeat's answer gave, alive and dead (`vspc_cluster_nodes`).
    public var clusterNodeCounts: (alive: Int, dead: Int) {
        let alive = cluster.nodes.values.filter(\.alive).count
        return (alive, cluster.nodes.count - alive)
    }

    /// The nodes for `vspc status`, sorted by name, each with the age of its heartbeat. The age is measured
    /// against this node's own heartbeat in the same answer (both by the database's clock) plus the time since
    /// that answer came, so the hosts' clocks need not agree.
    func nodeStatuses() -> [NodeStatus]? {
        guard let node = nodeName else { return nil }
        let since = cluster.ownership.nodesAt.map { Double(monotonicNow - $0) / 1e9 } ?? 0
        let reference = cluster.nodes[node]?.heartbeat
        return cluster.nodes.values.sorted { $0.name < $1.name }.map { status in
            var status = status
            let age = reference.map { $0.timeIntervalSince(status.heartbeat) + since }
                ?? now.date.timeIntervalSince(status.heartbeat)
            status.heartbeatAge = max(0, age)
            return status
        }
    }

    /// The node that owns a console, for `vspc list` (nil: one daemon alone, or nobody known).
    func ownerName(_ key: ConsoleKey) -> String? {
        guard config.cluster != nil else { return nil }
        return cluster.owners[key]?.node
    }

    /// With `config.cluster`: whether the VM is not here and another node that is alive owns the console (the
    /// VM was last connected there). Nil without a cluster.
    func elsewhere(_ console: ConsoleState) -> Bool? {
        guard config.cluster != nil else { return nil }
        guard console.vm == nil, ownedElsewhere(console.key), let owner = cluster.owners[console.key] else { return false }
        return cluster.nodes[owner.node]?.alive == true
    }

    /// Whether another node holds the console (its expiry is that node's business).
    func ownedElsewhere(_ key: ConsoleKey) -> Bool {
        guard let node = nodeName, let owner = cluster.owners[key] else { return false }
        return owner.node != node
    }
}

/// This node's side of ownership and of shared assignments.
struct OwnershipState {
    /// Claims sent and not answered yet.
    var claimsInFlight: Set<ConsoleKey> = []
    /// Failed claims in a row, by console (for the back-off of `.claimRetry`).
    var claimFailures: [ConsoleKey: Int] = [:]
    /// A claim failed and this outage was logged (once; cleared by the next claim that goes through).
    var claimOutageLogged = false
    /// New consoles waiting for their assignment to commit before they are served.
    var waiting: [ConsoleKey: WaitingAssignment] = [:]
    /// When a VM was last refused for an unreachable database (logged at most once a minute).
    var unreachableLogged: Int64?
    /// When the nodes last came (monotonic nanoseconds).
    var nodesAt: Int64?
    /// The epoch each scrollback save in flight was fenced by: a save refused after this node claimed the
    /// console again is outdated, not a sign that the node is stale.
    var savingUnder: [ConsoleKey: Int64] = [:]
}

/// A new console's assignment on its way to the database: the ports found held by other consoles so far.
struct WaitingAssignment {
    /// A console new here (its VM is refused if the database cannot be reached), not one written again.
    var isNew = true
    var attempts = 0
    var taken: Set<Int> = []
}
