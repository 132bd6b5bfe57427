import Foundation

/// What the concentrator knows of the cluster (`config.cluster`): who owns which console, the nodes, and the
/// feeds of consoles owned elsewhere that this node's people read.
struct ClusterState {
    /// Every console's owner, as the claims and notifications said.
    var owners: [ConsoleKey: Owner] = [:]
    /// The nodes, by name, from the last heartbeat's answer.
    var nodes: [String: NodeStatus] = [:]
    /// Feeds this node opened to consoles' owners, by console; and the console of each feed connection.
    var feeds: [ConsoleKey: FeedState] = [:]
    var feedConsoles: [ConnectionID: ConsoleKey] = [:]
    /// Input for a console's new owner that no feed can take yet (the owner's node is not in the last heartbeat's
    /// answer): it goes into the feed that opens once the nodes are known (bounded like the vMotion hold).
    var parkedInput: [ConsoleKey: [UInt8]] = [:]
    /// Consoles taken over here whose old feed still drains: what their VM printed here meanwhile, held so that
    /// the people get the old owner's last bytes first.
    var drainOutput: [ConsoleKey: [UInt8]] = [:]
    /// What follows the draining feed, in order, when another node's claim followed this node's again before
    /// it ended: each step is what this node's VM printed under its claim (held), then that node's claim, whose
    /// feed drains next. Bounded (`maxDrainSteps`).
    var drainNext: [ConsoleKey: [DrainStep]] = [:]
    /// Feed connections are numbered by the core, downwards from -1, apart from the driver's ids (which are > 0).
    var nextFeedID: ConnectionID = -1
    /// This node's claims, the assignments it waits for, and the limits of their log lines.
    var ownership = OwnershipState()

    mutating func makeFeedID() -> ConnectionID {
        defer { nextFeedID -= 1 }
        return nextFeedID
    }
}

/// A step of a drain after its feed (`drainNext`): what this node printed under the claim of its tenure `tenure`
/// (held until the feed before it ended), then the claim of another node that followed.
struct DrainStep {
    var held: [UInt8]
    var tenure: Int
    var then: Owner
}

/// A feed of a console from its owner, on this node's connection `id`.
struct FeedState {
    var id: ConnectionID
    var owner: Owner
    /// The owner accepted (`feedOpened`); before that, input waits in `pendingInput` (bounded like the vMotion
    /// hold buffer; what did not fit is counted in `pendingDropped`).
    var open = false
    var pendingInput: [UInt8] = []
    var pendingDropped = 0
    /// This node carries the console now (a vMotion completed here); the feed stays until the old owner closes
    /// it, so that what it sent before it learned still reaches the people here, in order.
    var draining = false
    /// The feed ended (why): its people stay, waiting for the VM, until an owner news names a live owner.
    var closed: String?

    init(id: ConnectionID, owner: Owner) {
        self.id = id
        self.owner = owner
    }

    /// Keeps input for the owner until the feed is open; returns how many bytes did not fit.
    mutating func hold(_ bytes: [UInt8], limit: Int) -> Int {
        let room = max(0, limit - pendingInput.count)
        pendingInput.append(contentsOf: bytes.prefix(room))
        let dropped = bytes.count - min(room, bytes.count)
        pendingDropped += dropped
        return dropped
    }
}
