import Foundation

/// Several daemons sharing one PostgreSQL database (`--db postgresql://...`). Each daemon is a node. The node
/// whose VM connection carries a console owns it, at an epoch (a fencing token bumped by every claim); its
/// lease lives as long as its heartbeats. Everything here is a value: the driver runs `ClusterRequest`s against
/// `ClusterRecords` off the event loop and brings back `ClusterNews`.
public struct ClusterConfig: Sendable, Equatable {
    /// `--node`: this daemon's name (default: the host name).
    public var node: String
    /// `--lease-timeout`: a node whose heartbeat is older than this is dead, and its leases are void.
    public var leaseTimeout: Double
    /// Where the other nodes reach this one's internal link (`--cluster-listen`), as `host:port`.
    public var linkAddress: String

    public init(node: String, leaseTimeout: Double = 10, linkAddress: String) {
        self.node = node
        self.leaseTimeout = leaseTimeout
        self.linkAddress = linkAddress
    }

    /// Heartbeats go out three times per lease.
    public var heartbeatInterval: Double { leaseTimeout / 3 }
}

/// Who owns a console, and since which claim.
public struct Owner: Sendable, Equatable, Hashable, Codable {
    public var node: String
    /// The fencing token: every claim bumps it; a write made under a lower epoch is refused.
    public var epoch: Int64

    public init(node: String, epoch: Int64) {
        self.node = node
        self.epoch = epoch
    }
}

/// One daemon of the cluster, as its heartbeats say.
public struct NodeStatus: Sendable, Equatable, Codable {
    public var name: String
    /// Its internal link (`host:port`).
    public var link: String
    public var startedAt: Date
    public var heartbeat: Date
    /// Consoles it owns (its leases).
    public var consoles: Int
    /// Its heartbeat is younger than the lease timeout (by the database's clock).
    public var alive: Bool
    /// For `vspc status`: seconds since its heartbeat, as the answering daemon measures it (nil elsewhere).
    public var heartbeatAge: Double?

    public init(name: String, link: String, startedAt: Date, heartbeat: Date, consoles: Int, alive: Bool) {
        self.name = name
        self.link = link
        self.startedAt = startedAt
        self.heartbeat = heartbeat
        self.consoles = consoles
        self.alive = alive
    }
}

/// A vMotion begun on one node, committed to the database before its GOAHEAD is sent, so that the node the
/// destination reaches can answer its PEER. The sequence and secret are kept as they are on the wire.
public struct SharedVMotion: Sendable, Equatable {
    public var key: ConsoleKey
    public var name: String
    public var port: Int
    public var sequence: [UInt8]
    public var secret: [UInt8]
    public var sourceNode: String
    /// The source's peer address, for the records.
    public var sourcePeer: String
    /// When the BEGIN arrived (wall clock), for the window.
    public var begunAt: Date
    /// The source node's claim of the console when the migration was published, as the database had it (nil:
    /// none, or not read back yet).
    public var sourceEpoch: Int64?

    public init(key: ConsoleKey, name: String, port: Int, sequence: [UInt8], secret: [UInt8], sourceNode: String,
                sourcePeer: String, begunAt: Date, sourceEpoch: Int64? = nil) {
        self.key = key
        self.name = name
        self.port = port
        self.sequence = sequence
        self.secret = secret
        self.sourceNode = sourceNode
        self.sourcePeer = sourcePeer
        self.begunAt = begunAt
        self.sourceEpoch = sourceEpoch
    }

    /// The cookie a destination's PEER carries: the sequence followed by the secret.
    public var cookie: [UInt8] { sequence + secret }
}

/// What the concentrator asks of the cluster (`ConcentratorAction.cluster`). Each is run off the event loop
/// against `ClusterRecords`; its outcome comes back as `ClusterNews`.
public enum ClusterRequest: Sendable, Equatable {
    /// Refresh this node's heartbeat (it owns `consoles`); answered by `.nodes`.
    case heartbeat(consoles: Int)
    /// This node's VM connection carries the console now: take it at epoch+1, whoever held it. Answered by
    /// `.claimed` (or `.failed`).
    case claim(ConsoleKey)
    /// Commit a migration before its GOAHEAD goes out. Answered by `.vmotionPublished` (or `.failed`).
    case publishVMotion(SharedVMotion, generation: Int)
    /// A PEER whose cookie no local migration knows: look in the database, again on every hint and until
    /// `until` (seconds from now). Answered by `.vmotionFound`.
    case findVMotion(ConnectionID, cookie: [UInt8], until: Double)
    /// The migration ended (completed here, aborted, expired): its row goes. No answer.
    case withdrawVMotion(ConsoleKey, sequence: [UInt8])
    /// Open a feed of the console from its owner (`node` at `link`) on connection `id`, starting with what it
    /// printed since the owner's claim at `sinceEpoch` (nil: from now). Answered by `.feedOpened` / `.feedClosed`.
    case openFeed(ConnectionID, ConsoleKey, node: String, link: String, sinceEpoch: Int64?)
    /// A telnet BREAK for the VM, asked on the feed `id` (the escape menu's `b` on this node): the owner sends it.
    /// No answer.
    case sendBreak(ConnectionID)
}

/// What the cluster tells the concentrator (`ConcentratorEvent.cluster`).
public enum ClusterNews: Sendable, Equatable {
    /// The nodes, from a heartbeat's answer.
    case nodes([NodeStatus])
    /// Owners that changed (a claim by any node, from its notification or a re-read); `full`: this is every
    /// owner the database knows (at start, after a reconnect), and consoles missing from it have none.
    case owners([ConsoleKey: Owner], full: Bool)
    /// Assignments committed by other nodes, and assignments they deleted.
    case assignments([Assignment], removed: [ConsoleKey])
    /// This node's claim went through.
    case claimed(ConsoleKey, Owner)
    case vmotionPublished(ConsoleKey, generation: Int)
    /// What a `findVMotion` found (nil: nothing before its time ran out).
    case vmotionFound(ConnectionID, SharedVMotion?)
    /// A request could not be carried out (the database is down, the write was fenced ...).
    case failed(ClusterRequest, StoreFailure)
    /// A feed is open: the owner accepted at this epoch.
    case feedOpened(ConnectionID, owner: Owner)
    /// Console output from the owner.
    case feedBytes(ConnectionID, [UInt8])
    /// The feed ended (the owner closed it, went away, or refused it: `reason`).
    case feedClosed(ConnectionID, reason: String)
    /// Another node's feed `id` of a console here asks for a telnet BREAK (its person's escape menu).
    case breakAsked(ConnectionID)
}

/// The cluster's shared records (PostgreSQL). Every call may block: the driver calls them on a queue of its
/// own, never on an event loop. `ClusterStore` tests may use an in-memory one.
public protocol ClusterRecords: AnyObject, Sendable {
    /// Inserts or refreshes this node's row (name, link, heartbeat = the database's now) and returns every node.
    func heartbeat(node: String, link: String, consoles: Int, leaseTimeout: Double) throws -> [NodeStatus]
    /// Takes the console for `node` at epoch+1 (1 if nobody held it); returns the new owner. Notifies.
    func claim(_ key: ConsoleKey, node: String) throws -> Owner
    /// Every owner.
    func owners() throws -> [ConsoleKey: Owner]
    /// One assignment as committed (after an `assignment` notification), nil if it is gone.
    func assignment(_ key: ConsoleKey) throws -> Assignment?
    /// Whether `owner` still holds the console (the fence of a write).
    func holds(_ key: ConsoleKey, _ owner: Owner) throws -> Bool
    func publish(_ vmotion: SharedVMotion) throws
    /// The migration whose sequence and secret the cookie is, if one is pending.
    func findVMotion(cookie: [UInt8], secretLength: Int) throws -> SharedVMotion?
    func withdrawVMotion(_ key: ConsoleKey, sequence: [UInt8]) throws
    /// Calls `body` (on any thread) for every notification: an owner changed, an assignment changed, a vMotion
    /// was published. Notifications are hints; the records are the truth.
    func listen(_ body: @escaping @Sendable (ClusterNotice) -> Void) throws
}

/// A notification between nodes (PostgreSQL NOTIFY), a hint to re-read.
public enum ClusterNotice: Sendable, Equatable {
    case owner(ConsoleKey, Owner)
    case assignment(ConsoleKey, deleted: Bool)
    case vmotion(sequence: [UInt8])
    /// The connection to the database was lost and made again: notifications may have been missed.
    case reconnected
}
