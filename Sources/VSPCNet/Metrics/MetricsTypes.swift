import VSPCCore

/// What the daemon is doing right now, read on the event loop when Prometheus scrapes.
/// The gauges `vspc_vms_connected`, `vspc_consoles`, `vspc_clients{door}`, `vspc_ports_free` and
/// `vspc_vmotions_in_progress` are set from it.
public struct MetricsSnapshot: Sendable, Equatable {
    public var vmsConnected: Int
    public var consoles: Int
    /// Attached people by door (`telnet`, `ssh`, `tail`: `Door.all`'s names). Other keys are ignored, so a
    /// typo cannot create a series; a missing door reads 0.
    public var clientsByDoor: [String: Int]
    public var portsFree: Int
    public var vmotionsInProgress: Int
    /// What the console log files took and lost (nil: console logs off).
    public var consoleLog: ConsoleLogStatistics?
    /// Console lines that matched each watch pattern, since start.
    public var consoleMatches: [String: Int] = [:]
    /// Several daemons (`--db postgresql://`): leases, nodes, feeds, cross-node migrations (nil: one daemon).
    public var cluster: ClusterStatistics?
    /// Writes the store holds uncommitted and the oldest one's age in seconds (nil: the store does not say).
    public var storeQueue: StoreQueueStatistics?

    public init(
        vmsConnected: Int = 0,
        consoles: Int = 0,
        clientsByDoor: [String: Int] = [:],
        portsFree: Int = 0,
        vmotionsInProgress: Int = 0
    ) {
        self.vmsConnected = vmsConnected
        self.consoles = consoles
        self.clientsByDoor = clientsByDoor
        self.portsFree = portsFree
        self.vmotionsInProgress = vmotionsInProgress
    }
}

/// The store's queue of uncommitted writes: `vspc_store_queue_writes`, `vspc_store_lag_seconds`.
public struct StoreQueueStatistics: Sendable, Equatable {
    public var writes: Int
    public var lagSeconds: Double
    public init(writes: Int, lagSeconds: Double) {
        self.writes = writes
        self.lagSeconds = lagSeconds
    }
}

/// What this node of a cluster holds and sees, at scrape time.
public struct ClusterStatistics: Sendable, Equatable {
    /// Consoles this node owns.
    public var leases: Int
    public var nodesAlive: Int
    public var nodesDead: Int
    /// Feeds this node reads from other owners (in), and serves to other nodes (out).
    public var feedsIn: Int
    public var feedsOut: Int
    /// Cross-node vMotions seen here, by result (`complete`: found here and claimed; `notfound`: no row in time).
    public var vmotions: [String: Int]

    public init(leases: Int = 0, nodesAlive: Int = 0, nodesDead: Int = 0, feedsIn: Int = 0, feedsOut: Int = 0,
                vmotions: [String: Int] = [:]) {
        self.leases = leases
        self.nodesAlive = nodesAlive
        self.nodesDead = nodesDead
        self.feedsIn = feedsIn
        self.feedsOut = feedsOut
        self.vmotions = vmotions
    }
}

/// How a vMotion ended: the `result` label of `vspc_vmotions_total`.
public enum VMotionResult: String, CaseIterable, Sendable {
    /// VMOTION-COMPLETE moved the console to the destination.
    case complete
    /// The source sent VMOTION-ABORT.
    case abort
    /// VMOTION-BEGIN was answered with NOTNOW.
    case notnow
    /// No VMOTION-COMPLETE before `--vmotion-timeout` (or the source closed and no destination came).
    case timeout
    /// A PEER or COMPLETE with a wrong or replayed cookie was rejected.
    case rejected
}
