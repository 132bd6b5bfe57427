import Foundation

/// The concentrator's decisions, as a pure state machine: the consoles and their ports, the VM connections and
/// their vMotion handoffs, the people attached, the admin requests. Events come in with the time (`Now`);
/// actions come out for the driver to carry out (write, close, bind, arm a timer, persist, record, log).
/// Randomness (the vMotion secret) comes from the generator it is given. No I/O, no clock, no locks: the
/// driver calls it from one event loop.
public struct ConcentratorStateMachine {
    public internal(set) var config: ConcentratorConfig
    var random: any RandomNumberGenerator

    var consoles: [ConsoleKey: ConsoleState] = [:]
    var pool: PortPool
    var vms: [ConnectionID: VMConnection] = [:]
    var clients: [ConnectionID: ClientConnection] = [:]
    var admins: [ConnectionID: AdminConnection] = [:]
    /// The pending migrations, each kept once, with their index for the PEER lookup.
    var migrations: VMotionTable
    /// Consoles that moved (to a destination here, or to another node) while their migration's source was still
    /// open here: the source is read until it closes (or `feedDrainSeconds`), because what it sent before the
    /// destination's COMPLETE may come after it (on its own connection), or after the owners news.
    var departures: [ConsoleKey: Departure] = [:]
    /// Consoles whose scrollback snapshot is queued for the disk (at most one each).
    var scrollbackSaving: Set<ConsoleKey> = []
    /// Descriptors in use by connections and listeners (from the baseline the process held at start-up).
    var descriptorsInUse = 0
    var shuttingDown = false
    var startedAt: Date?
    var nextListenerGeneration = 1
    var pendingDeletes: [ConsoleKey: PendingDelete] = [:]
    var nextDeleteGeneration = 1
    /// Since when assignment writes fail (nil: the database takes writes), and when that was last logged.
    var storeFailingSince: Int64?
    var storeFailureLogged: Int64?
    /// The VM connection whose input is being handled: what it causes is charged to its event budget.
    var budgetConnection: ConnectionID?
    /// Events and log lines left out by the budgets, since start-up.
    public internal(set) var eventsSuppressed = 0
    /// The authorized keys in force, by fingerprint, once a reload has said (nil: what authentication said
    /// holds). A session opened later on a connection authenticated before (OpenSSH multiplexing) gets these
    /// rights, not the ones taken at authentication.
    var keysInForce: (keys: AuthorizedKeys, timeZone: TimeZone)?
    /// The one-time console URLs (`vspc url`), by their token's hash.
    public internal(set) var tokens = ConsoleTokens()
    /// Refusals recorded this minute, per connection (`peer ADDRESS`) and per key (`key FINGERPRINT`).
    var refusalBudgets: [String: EventBudget] = [:]
    static let refusalsPerMinute = 10
    /// How connections ended since start-up, recorded or not.
    public internal(set) var tallies = EndTallies()
    /// Which refused proxy peers get a log line (each address at most once a minute, a bounded number a minute).
    var refusalLog = AddressLogLimiter()
    /// The same for refused port assignments (recorded, not only logged).
    var assignmentRefusalLog = AddressLogLimiter()
    /// Proxy connections not identified yet, by address, with when each connected (monotonic nanoseconds).
    var unidentifiedByAddress: [IPAddress: [ConnectionID: Int64]] = [:]
    var unidentifiedTotal = 0
    /// New assignments by address in the current minute, from when that minute began.
    var assignmentsThisMinute: [IPAddress: Int] = [:]
    var assignmentMinute = Int64.min
    /// Addresses that have carried a console since start-up (they may use the pool's reserve).
    var knownAddresses: Set<IPAddress> = []
    /// The JSON API's tokens (hashes only), and the budgets of their read audit.
    public internal(set) var apiTokens = APITokens()

    /// Several daemons sharing PostgreSQL (`config.cluster`): owners, nodes, feeds.
    var cluster = ClusterState()

    /// The event being handled: its time, and the actions decided so far.
    var now = Now(monotonic: 0, date: Date(timeIntervalSince1970: 0))
    var out: [ConcentratorAction] = []

    /// Length of the secret in GOAHEAD; a PEER's cookie is the sequence followed by it.
    public static let secretLength = 8

    public init(config: ConcentratorConfig, random: any RandomNumberGenerator = SystemRandomNumberGenerator()) {
        self.config = config
        self.random = random
        self.pool = PortPool(range: config.portRange)
        self.migrations = VMotionTable(maxHeldBytes: config.vmotionHoldLimit)
    }

    /// Handles one event and returns what the driver must do, in order.
    public mutating func handle(_ event: ConcentratorEvent, now: Now) -> [ConcentratorAction] {
        self.now = now
        switch event {
        case let .start(assignments, scrollback, baseline): start(assignments, scrollback, baseline)
        case let .started(detail): record(.daemonStart, detail: detail)
        case .shutdown: shutdown()
        case let .reconfigure(expire, retention, allow): reconfigure(vmExpireTime: expire, retention: retention, proxyAllow: allow)
        case let .vmConnected(id, peer): vmConnected(id, peer: peer)
        case let .vmBytes(id, bytes): vmBytes(id, bytes)
        case let .vmClosed(id, error): vmClosed(id, error: error)
        case let .sessionStarted(id, door, peer, request): sessionStarted(id, door: door, peer: peer, request: request)
        case let .clientBytes(id, bytes): clientBytes(id, bytes)
        case let .clientSkipped(id, bytes): clientSkipped(id, bytes: bytes)
        case let .clientEnded(id, reason): if let client = clients[id] { dropClient(client, reason: reason, end: false) }
        case let .keysReloaded(keys, timeZone): keysReloaded(keys, timeZone: timeZone)
        case let .clientClosed(id): clientClosed(id)
        case let .adminConnected(id, peer, uid): adminConnected(id, peer: peer, uid: uid)
        case let .tokenMade(id, token, hash, base, name): tokenMade(id, token: token, hash: hash, base: base, userName: name)
        case let .adminLine(id, line): adminLine(id, line)
        case let .adminLineTooLong(id): adminLineTooLong(id)
        case let .adminClosed(id): adminClosed(id)
        case let .writabilityChanged(id, writable): writabilityChanged(id, writable: writable)
        case let .listenerBound(ref): listenerBound(ref)
        case let .listenerFailed(ref, inUse, message): listenerFailed(ref, addressInUse: inUse, message: message)
        case let .timerFired(timer): timerFired(timer)
        case let .writeCompleted(token, error): writeCompleted(token, error: error)
        case let .queryAnswered(id, answer): queryAnswered(id, answer)
        case let .consoleLineMatched(key, pattern, line): consoleLineMatched(key, pattern: pattern, line: line)
        case let .tokensLoaded(tokens): apiTokens = APITokens(tokens)
        case let .apiCalled(call): apiCalled(call)
        case let .cluster(news): clusterNews(news)
        }
        defer { out = [] }
        return out
    }

    // MARK: emitting

    mutating func emit(_ action: ConcentratorAction) { out.append(action) }

    mutating func log(_ level: LogLevel, _ message: String) {
        guard withinBudget() else { return }
        out.append(.log(level, message))
    }

    /// Emits a record, unless the connection being handled has used up its budget for this minute.
    mutating func emitRecord(_ event: ConsoleEvent) {
        guard withinBudget() else { return }
        out.append(.record(event))
    }

    /// Charges one event or log line to the connection being handled (if any); reports what the last minute
    /// suppressed before the first line of the next.
    mutating func withinBudget() -> Bool {
        let (limit, time) = (config.eventsPerConnectionPerMinute, monotonicNow)
        guard let id = budgetConnection,
              let (allowed, summary) = vms.modify(id, { $0.budget.spend(now: time, limit: limit) })
        else { return true }
        if summary > 0 { summariseSuppressed(id, summary) }
        if !allowed { eventsSuppressed += 1 }
        return allowed
    }

    mutating func summariseSuppressed(_ id: ConnectionID, _ count: Int) {
        guard let event = connectionEvent(.eventsSuppressed, id, detail: "… \(grouped(count)) more suppressed") else { return }
        out.append(.record(event))
    }

    /// An event about a VM connection: the console it carries, else the uuid and name it told (maybe none yet).
    func connectionEvent(_ kind: EventKind, _ id: ConnectionID, detail: String) -> ConsoleEvent? {
        guard let vm = vms[id] else { return nil }
        let key = vm.console
        return ConsoleEvent(kind: kind, time: now.date, uuid: key?.uuid ?? vm.link.vmUUID, label: key?.label ?? "",
                            name: key.flatMap { consoles[$0]?.name } ?? vm.link.vmName, peer: vm.peer, detail: detail)
    }

    mutating func schedule(_ timer: TimerID, seconds: Double) {
        out.append(.schedule(timer, afterNanos: nanos(seconds)))
    }

    /// Records an event about a console (its uuid, label and current name).
    mutating func record(_ kind: EventKind, _ key: ConsoleKey, peer: String? = nil, detail: String? = nil,
                         window: UInt64? = nil) {
        emitRecord(ConsoleEvent(kind: kind, time: now.date, uuid: key.uuid, label: key.label,
                                name: consoles[key]?.name, peer: peer, detail: detail, window: window))
        statusLine(kind, key)
    }

    mutating func record(_ kind: EventKind, uuid: String? = nil, label: String = "", name: String? = nil,
                         peer: String? = nil, detail: String? = nil) {
        emitRecord(ConsoleEvent(kind: kind, time: now.date, uuid: uuid, label: label, name: name,
                                peer: peer, detail: detail))
    }

    var monotonicNow: Int64 { Int64(clamping: now.monotonic) }

    // MARK: descriptors

    /// Reserves descriptors for a person's or the admin tool's connection; false (and nothing reserved) when too
    /// close to the limit. These may dip into the reserve that new VMs must leave free, so people can still reach
    /// the consoles and `vspc` still answers when VMs have taken their share.
    mutating func reserveDescriptors(_ n: Int) -> Bool {
        if descriptorsInUse + n > config.descriptorLimit - config.descriptorReserve / 4 { return false }
        descriptorsInUse += n
        return true
    }

    // MARK: start-up and shutdown

    /// Loads the known assignments and binds their ports, so people can wait on a VM's port while it boots.
    mutating func start(_ assignments: [Assignment], _ scrollback: [ConsoleKey: [UInt8]], _ baseline: Int) {
        startedAt = now.date
        descriptorsInUse = baseline
        for a in assignments {
            let key = ConsoleKey(uuid: a.uuid, label: a.label)
            var console = ConsoleState(key: key, name: a.name, port: a.port, persisted: true, createdAt: a.createdAt,
                                       since: a.lastSeen, config: config)
            if let bytes = scrollback[key] { console.scrollback.append(bytes) }
            // Idle time counts from when the VM or a client was last seen, not from this start-up, so a daemon
            // restarted more often than --vm-expire-time still expires dead VMs.
            let idle = min(max(0, now.date.timeIntervalSince(a.lastSeen)), 10 * 365 * 86400)
            console.lastActivity = monotonicNow - Int64(idle * 1e9)
            consoles[key] = console
            pool.reserve(a.port)
            bind(key, isNew: false)
        }
        log(.info, "loaded \(assignments.count) port assignments")
        schedule(.expirySweep, seconds: config.expirySweepInterval)
        if config.scrollbackBytes > 0 { schedule(.scrollbackSave, seconds: config.scrollbackSaveInterval) }
        schedule(.prune, seconds: config.pruneDelay)
        clusterStarted()
    }

    /// Saves the scrollback and closes every listener and connection; timers are cancelled by the driver.
    mutating func shutdown() {
        guard !shuttingDown else { return }
        shuttingDown = true
        saveScrollback(final: true)
        for key in consoles.keys.sorted(by: { $0.description < $1.description }) {
            unbind(key)
            guard let console = consoles[key] else { continue }
            for id in console.clients.sorted() {
                if let client = clients[id] { dropClient(client, reason: .shutdown, end: false) }
                emit(.close(id, flush: false))
            }
        }
        for id in vms.keys.sorted() { closeVM(id, reason: .shutdown) }
    }

    /// Applies what a reload changed; the expiry sweep follows the new expiry time at once.
    mutating func reconfigure(vmExpireTime: Double, retention: Retention, proxyAllow: AddressAllowList) {
        let sweepChanged = config.expirySweepInterval != ConcentratorConfig.sweep(vmExpireTime)
        config.vmExpireTime = vmExpireTime
        config.retention = retention
        config.proxyAllow = proxyAllow
        // Connections from networks no longer allowed are closed now, each recorded (vm-disconnect, disallowed).
        for id in vms.keys.sorted() {
            guard let vm = vms[id], !vm.closing, !proxyAllow.allows(vm.address) else { continue }
            log(.notice, "closing VM connection \(vm.peer): no longer in --proxy-allow")
            closeVM(id, reason: .disallowed)
        }
        if sweepChanged, startedAt != nil, !shuttingDown { schedule(.expirySweep, seconds: config.expirySweepInterval) }
    }

    mutating func timerFired(_ timer: TimerID) {
        guard !shuttingDown else { return }
        switch timer {
        case .negotiation(let id): negotiationTimedOut(id)
        case .name(let id): nameTimedOut(id)
        case .identify(let id): identifyTimedOut(id)
        case .stuck(let id): stuckTimedOut(id)
        case .takeoverProbe(let id): takeoverProbeTimedOut(id)
        case let .vmotion(key, generation): vmotionExpired(key, generation: generation)
        case .listenerRetry(let key): retryListener(key)
        case .persistRetry(let key): persistAssignment(key)
        case .deleteRetry(let key): deleteAssignment(key)
        case .expirySweep:
            expireIdleConsoles()
            tokens.sweep(now: monotonicNow)
            schedule(.expirySweep, seconds: config.expirySweepInterval)
        case .scrollbackSave:
            saveScrollback(final: false)
            schedule(.scrollbackSave, seconds: config.scrollbackSaveInterval)
        case .prune:
            emit(.persist([.prune(config.retention)], token: nil))
            schedule(.prune, seconds: config.pruneInterval)
        case .heartbeat: heartbeat()
        case .claimRetry(let key): claimRetry(key)
        case .feedDrain(let key):
            // Logged: what that node still owed the people here is lost.
            if cluster.feeds[key]?.draining == true {
                log(.warning, "\(consoles[key]?.name ?? key.description): the feed from node \(cluster.feeds[key]?.owner.node ?? "?") did not end within \(Int(Self.feedDrainSeconds)) s after the vMotion here; it is closed, and what it had not sent yet is lost")
            }
            endDrain(key)
        case .departure(let key):
            if departures[key] != nil {
                log(.warning, "\(consoles[key]?.name ?? key.description): the vMotion source did not close within \(Int(Self.feedDrainSeconds)) s after the console moved; it is closed, and what it had not sent yet is lost")
            }
            endDeparture(key)
        }
    }

    mutating func writeCompleted(_ token: WriteToken, error: StoreFailure?) {
        switch token {
        case let .assignment(key, generation): assignmentWritten(key, generation: generation, error: error)
        case let .deletion(key, generation): assignmentDeleted(key, generation: generation, error: error)
        case .scrollback(let keys): scrollbackWritten(keys, error: error)
        }
    }

    /// A connection's outbound buffer went over (or back under) its water mark.
    mutating func writabilityChanged(_ id: ConnectionID, writable: Bool) {
        if vms[id] != nil {
            // Back-pressure: a VM that does not read what it is sent is not read either, and is closed if it
            // stays so (its replies would otherwise pile up without bound).
            vms.modify(id) {
                $0.writable = writable
                $0.readingForLiveness = false
            }
            emit(.setReading(id, writable))
            if writable {
                emit(.cancel(.stuck(id)))
            } else {
                schedule(.stuck(id), seconds: config.vmStuckTimeout)
            }
        } else if !writable, let client = clients[id] {
            // A reader past its bound (its channel's water mark): on byte-exact doors it is dropped, and the close
            // tells it that it missed data. (Skip-ahead doors' sinks skip instead, and report it.)
            dropClient(client, reason: .slow)
        }
    }
}

/// 1234567 as "1,234,567".
func grouped(_ n: Int) -> String {
    let digits = Array(String(n.magnitude))
    var out = ""
    for (i, d) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(d)
    }
    return n < 0 ? "-" + out : out
}
