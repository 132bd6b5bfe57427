import Foundation

/// One console: one serial port of one VM, with its stable port, its listener and the people attached.
struct ConsoleState {
    let key: ConsoleKey
    var name: String
    var port: Int
    /// The assignment is committed to the database (only then is it listed).
    var persisted: Bool
    /// Bumped on every write of the assignment, so only the latest write's outcome counts.
    var assignmentGeneration = 0
    /// Failed writes of the assignment in a row (for the back-off).
    var persistFailures = 0
    /// The port is decided (bound, or found taken for good): the console is listed, saved or not.
    var portSettled = false
    /// A new console's VM connected from this peer: its `vm-connect` is recorded once the port is decided.
    var connectPending: String?
    var createdAt: Date
    /// When the VM connected, or was last seen if it is down.
    var since: Date
    var listener: ListenerState = .closed
    var listenerError: String?
    /// The connection that carries the console now.
    var vm: ConnectionID?
    /// The people attached, over every door (telnet, SSH, `tail -f` ...).
    var clients: Set<ConnectionID> = []
    /// Input typed during a migration that ended with the VM disconnected, for its next connection until `until`.
    var parkedInput: (bytes: [UInt8], until: Int64)?
    /// The person holding exclusive write (everybody else is read-only meanwhile).
    var exclusive: ConnectionID?
    /// A connection waiting to take the console over while the open one is probed.
    var contender: ConnectionID?
    /// Monotonic nanoseconds of the last VM or client activity (may be before the daemon started).
    var lastActivity: Int64 = 0
    var scrollback: ScrollbackRing
    /// The allowance of `console-match` records (`--watch`), a minute at a time.
    var matchBudget = EventBudget()
    /// Bytes printed since the last save (at most the ring's capacity): what the next save appends.
    var scrollbackUnsaved = 0
    /// The last save failed: the next one rewrites the whole ring instead of appending.
    var scrollbackRewrite = false
    /// Something to save.
    var scrollbackDirty: Bool { scrollbackUnsaved > 0 || scrollbackRewrite }
    /// Bytes appended to the scrollback ring since the console was made here: positions in its stream.
    var appended = 0
    /// With `config.cluster`: this node's last tenures of the console (times a VM connection here carried it,
    /// one per claim), oldest first. A feed asking from one of their claims gets what was printed since.
    var tenures: [Tenure] = []
    /// Tenures begun here: the next one's `number`.
    var tenuresBegun = 0

    /// A VM connection here carries the console from now on (a connect, or a vMotion's COMPLETE).
    mutating func beginTenure() {
        if let last = tenures.indices.last, tenures[last].end == nil { tenures[last].end = appended }
        tenuresBegun += 1
        tenures = Array((tenures + [Tenure(number: tenuresBegun, start: appended)]).suffix(4))
    }

    /// What this node's VM printed under tenure `number` (held while a drain ran) went out now, from `start` to
    /// `end` in the console's stream: that tenure is there.
    mutating func placeTenure(_ number: Int, from start: Int, to end: Int) {
        guard let index = tenures.firstIndex(where: { $0.number == number }) else { return }
        tenures[index].start = start
        if tenures[index].end != nil { tenures[index].end = end }
    }

    /// The old owner's feed drained into the ring after this tenure began (while this node's own output was
    /// held): those bytes are that node's, so this node's tenure starts after them.
    mutating func skipDrainedBytes() {
        guard let last = tenures.indices.last, tenures[last].end == nil else { return }
        tenures[last].start = appended
    }

    /// What this node's VM printed while a drain held it went out now, from `position` on: a tenure that
    /// ended meanwhile (another node claimed the console) at that position ends after it instead.
    mutating func tenureTakes(from position: Int) {
        guard let last = tenures.indices.last, tenures[last].movedAway, tenures[last].end == position else { return }
        tenures[last].end = appended
    }

    /// Another node carries the console now: this node's tenure ends here.
    mutating func endTenure() {
        guard let last = tenures.indices.last, tenures[last].end == nil else { return }
        tenures[last].end = appended
        tenures[last].movedAway = true
    }

    /// What a feed asking from this node's claim `since` gets first: from the start of that claim's tenure (the
    /// latest for `sinceLastClaim`; the one going on for a claim not known here) up to where another node's claim
    /// ended this node's tenures (nil: up to now, and the feed goes on live). Nil: nothing to give.
    func replayRange(since: Int64) -> (start: Int, end: Int?)? {
        var index = since == SessionRequest.sinceLastClaim ? tenures.indices.last : tenures.lastIndex { $0.epoch == since }
        if index == nil, let last = tenures.indices.last, tenures[last].end == nil { index = last }
        guard let index else { return nil }
        return (tenures[index].start, tenures[index...].first { $0.movedAway }?.end)
    }

    /// What was printed from `start` to `end` (nil: now), as far as the ring still holds it.
    func printed(from start: Int, to end: Int?) -> [UInt8] {
        let end = min(end ?? appended, appended)
        let from = max(start, appended - scrollback.count)
        guard end > from else { return [] }
        return Array(scrollback.contents(last: appended - from).prefix(end - from))
    }

    init(key: ConsoleKey, name: String, port: Int, persisted: Bool, createdAt: Date, since: Date,
         config: ConcentratorConfig) {
        self.key = key
        self.name = name
        self.port = port
        self.persisted = persisted
        self.createdAt = createdAt
        self.since = since
        self.scrollback = ScrollbackRing(capacity: config.scrollbackBytes)
    }

    /// Listed by `vspc list`: saved, or its port decided (a full disk never hides a console).
    var listed: Bool { persisted || portSettled }

    /// No VM and nobody attached (a pending migration, kept by the concentrator, also keeps it in use).
    var idle: Bool { vm == nil && clients.isEmpty }

    var isListening: Bool {
        if case .bound = listener { return true }
        return false
    }
}

/// A console's listener: being bound (with what to do if the port is taken), bound, or closed.
enum ListenerState {
    /// `isNew`: the assignment is not written yet, and a taken port moves it to another one.
    case binding(ListenerRef, isNew: Bool, attempt: Int, taken: Set<Int>)
    case bound(ListenerRef)
    /// Not bound; a retry may be armed.
    case closed

    var ref: ListenerRef? {
        switch self {
        case .binding(let ref, _, _, _), .bound(let ref): return ref
        case .closed: return nil
        }
    }
}

/// A connection on the proxy port.
struct VMConnection {
    let id: ConnectionID
    let peer: String
    var link: VMLinkStateMachine
    var role: Role = .negotiating(EarlyOutput())
    /// Closing: nothing more it says is acted on.
    var closing = false
    /// Its outbound buffer is under the high water mark.
    var writable = true
    var nameTimerArmed = false
    /// Why vspcd closed it (nil: the peer closed it).
    var closeReason: DisconnectReason?
    /// The peer's address (nil when it cannot be read).
    var address: IPAddress?
    /// Counted among the connections not identified yet (until it carries or claims a console, or closes).
    var unidentified = false
    /// Bytes it sent while it was backed up (read only to see it is alive, and discarded).
    var discardedWhileBackedUp = 0
    /// Backed up, and read again only to learn whether it is alive (a takeover probe waits on it).
    var readingForLiveness = false
    /// Events about this connection waiting for its uuid (a vMotion destination sends PEER before its uuid).
    var deferred: [ConsoleEvent] = []
    /// With `config.cluster`: the cookie of its PEER that no local migration knew, while the database is asked.
    var findingVMotion: [UInt8]?
    /// With `config.cluster`: the migration begun on another node that this destination was accepted for.
    var remoteVMotion: SharedVMotion?
    /// How many events and log lines it may still cause this minute.
    var budget = EventBudget()

    /// One case per state, each with only what that state needs.
    enum Role {
        /// Not identified yet; its console output is kept (bounded) until it carries a console.
        case negotiating(EarlyOutput)
        /// The connection of this console.
        case carrying(ConsoleKey)
        /// An accepted vMotion destination waiting for COMPLETE.
        case destination(ConsoleKey, EarlyOutput)
        /// Identified as a console whose connection is still open: waits while that connection is probed.
        case contending(ConsoleKey, EarlyOutput, name: String)
        /// Replaced or migrated away: its close is not the VM going down.
        case retired
    }

    var console: ConsoleKey? {
        role.console
    }
}

extension VMConnection.Role {
    var isNegotiating: Bool {
        if case .negotiating = self { return true }
        return false
    }

    var console: ConsoleKey? {
        switch self {
        case .carrying(let key), .destination(let key, _): return key
        case .negotiating, .retired, .contending: return nil
        }
    }
}

/// A per-connection allowance of events and log lines: `limit` a minute; the rest are counted, and the count
/// is reported when the next minute starts or the connection closes.
struct EventBudget {
    var windowStart = Int64.min
    var used = 0
    var suppressed = 0

    /// Whether one more may go out now; `summary` is the number suppressed in the minute that just ended.
    mutating func spend(now: Int64, limit: Int) -> (allowed: Bool, summary: Int) {
        if windowStart == .min || now - windowStart >= 60_000_000_000 {
            let summary = suppressed
            windowStart = now
            used = 1
            suppressed = 0
            return (true, summary)
        }
        if used < limit {
            used += 1
            return (true, 0)
        }
        suppressed += 1
        return (false, 0)
    }
}

/// VM output that arrived before the connection carried a console.
struct EarlyOutput {
    var bytes: [UInt8] = []
    var dropped = 0

    mutating func append(_ data: [UInt8], limit: Int) {
        let room = max(0, limit - bytes.count)
        bytes.append(contentsOf: data.prefix(room))
        dropped += data.count - min(room, data.count)
    }
}

/// A person attached to a console, over any door.
struct ClientConnection {
    let id: ConnectionID
    let console: ConsoleKey
    let peer: String
    let door: Door
    /// Read-only by the key's option or `--telnet-ports read-only`; exclusive write by another makes it so too.
    /// A reload that makes the key read-only makes an open session so.
    var mode: AccessMode
    /// Who the person is: the SSH key's comment and fingerprint.
    let identity: Identity?
    /// The authorized_keys line that let the person in (re-checked when the file is reloaded).
    var key: AuthorizedKey?
    /// The one-time console URL that let the person in (the web door): its token's id and who minted it.
    var token: (id: String, minter: String, hash: String)?
    let since: Date
    /// How what the person sends is read: the door's `input`.
    var input: InputReader
    /// The one-line notice that typing does not reach the VM was shown.
    var warnedReadOnly = false
    /// Why vspcd dropped it (recorded once; its detach is recorded when it closes).
    var dropped: DropReason?
    /// Bytes it skipped (falling behind) not recorded yet, and when a skip was last recorded.
    var skippedUnrecorded = 0
    var skipRecorded: Int64?

    init(id: ConnectionID, console: ConsoleKey, peer: String, door: Door, mode: AccessMode, identity: Identity?,
         since: Date) {
        self.id = id
        self.console = console
        self.peer = peer
        self.door = door
        self.mode = mode
        self.identity = identity
        self.since = since
        self.input = InputReader(door.input)
    }

    /// How the person is named in notices and `w`: the key's comment, or the peer address.
    var who: String { identity.map { $0.comment.isEmpty ? $0.fingerprint : $0.comment } ?? peer }
}

/// The reader of a person's input, one case per `Door.Input`.
enum InputReader {
    case telnet(ClientLinkStateMachine)
    case escapeMenu(EscapeMenu)
    case raw
    case none

    init(_ input: Door.Input) {
        switch input {
        case .telnet: self = .telnet(ClientLinkStateMachine())
        case .escapeMenu: self = .escapeMenu(EscapeMenu())
        case .raw: self = .raw
        case .none: self = .none
        }
    }
}

/// A connection on the admin endpoint: one request, one answer, then perhaps a followed console.
struct AdminConnection {
    let id: ConnectionID
    var peer = "local"
    /// The console this connection tailed once (recorded as a read-only attach over the `tail` door); a
    /// `tail -f` becomes a person on the `tail` door instead.
    var tailed: ConsoleKey?
    var answered = false
    var reserved = false
    /// A `history` request waiting for the records.
    var history: PendingHistory?
    /// The peer's user id on the admin Unix socket (nil over TCP): who mints console URLs.
    var uid: UInt32?
    /// A `url` request waiting for the driver's token.
    var minting: PendingMint?
}

/// A removed assignment whose delete has not committed yet: its port stays reserved until it has, so a failed
/// delete can never leave two VMs on one port.
struct PendingDelete {
    var port: Int
    var generation: Int
    var failures = 0
}

/// A console's migration source, still read after the console moved (`departures`): to a destination here
/// (`to` nil), or to another node's claim `to`.
struct Departure {
    var source: ConnectionID
    var peer: String
    var to: Owner?
    /// To another node: "moved to node N at epoch E, window W ms", for the `vmotion-source-closed` event.
    var moved: String
    /// To another node: input for the new owner, held during the window and typed here since (bounded like the
    /// vMotion hold).
    var held: [UInt8]
    /// To a destination here: what it printed since the COMPLETE, until the source closes.
    var output: [UInt8] = []
}

/// A time this node's VM connection carried a console (`config.cluster`): where it began in the console's stream
/// (`ConsoleState.appended`), where it ended (another node took the console, or the VM connected here anew),
/// and the epoch of this node's claim for it (nil until the claim is answered).
struct Tenure: Equatable {
    /// Its place among the console's tenures here (`ConsoleState.tenuresBegun`).
    var number = 0
    var start: Int
    var end: Int?
    var epoch: Int64?
    /// It ended because another node claimed the console (not because the VM reconnected here).
    var movedAway = false
}
