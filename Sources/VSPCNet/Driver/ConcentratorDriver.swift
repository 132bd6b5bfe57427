import Foundation
import Logging
import NIOCore
import NIOPosix
import VSPCClient
import VSPCCore

/// Carries out what the concentrator decides. It owns the channels, the listeners and the timers, feeds every
/// event into `ConcentratorStateMachine` with the time, and runs the actions that come back, in order. It
/// decides nothing itself. Everything runs on one event loop; events that arrive while actions run (a close
/// that fires channelInactive at once) are queued and handled next, so the machine sees them one at a time.
final class ConcentratorDriver: @unchecked Sendable {
    let loop: EventLoop
    let store: any RecordBackend
    /// Reads for admin clients (`history`), one at a time, off the event loop.
    private let reads = DispatchQueue(label: "vspcd.records.reads", qos: .utility)
    let logger: Logger
    let network: DaemonConfig
    let metrics: VSPCMetrics
    private var suppressedReported = 0
    /// Counts already added to the Prometheus counters, by reason (the machine keeps the totals).
    private var disconnectsReported = EndTallies()
    /// Cross-node vMotions completed here (this node the destination): `vspc_cluster_vmotions_total{result="complete"}`.
    private(set) var crossNodeVMotions = 0
    private var machine: ConcentratorStateMachine
    /// Every connection the machine knows, by its id: channels and SSH sessions alike.
    private var sinks: [ConnectionID: ConnectionSink] = [:]
    /// SSH sessions' ids, by the SSH server's session id.
    var sessionIDs: [Int: ConnectionID] = [:]
    private var listeners: [ListenerRef: Channel] = [:]
    private var timers: [TimerID: (task: Scheduled<Void>, token: Int)] = [:]
    private var timerToken = 0
    private var nextID: ConnectionID = 1
    private var queue: [ConcentratorEvent] = []
    private var running = false
    /// Bytes for one connection decided while handling events, written as one buffer when the queue is empty
    /// (or before anything else touches that connection): a peer that sends a thousand requests in one read
    /// costs one write, not a thousand queued ones.
    private var pending: [ConnectionID: ByteBuffer] = [:]
    /// Where consoles' output goes besides the people: the log files and the watch patterns (set before start).
    var outputSinks: [any ConsoleOutputSink] = []
    /// The console log files among them, for metrics.
    var consoleLogs: (any ConsoleOutputSink)?
    private var pendingOrder: [ConnectionID] = []
    /// The base of console URLs (`--http-public-url`, else the HTTP listener's address once bound; nil: no
    /// HTTP listener, so no console URLs).
    var webBase: String?
    /// Runs the machine's cluster requests (`--db postgresql://`); nil for one daemon alone.
    var cluster: (any ClusterRunner)?

    init(config: DaemonConfig, store: any RecordBackend, logger: Logger, loop: EventLoop, metrics: VSPCMetrics) {
        self.network = config
        self.metrics = metrics
        self.store = store
        self.logger = logger
        self.loop = loop
        self.machine = ConcentratorStateMachine(config: config.concentrator)
    }

    func makeID() -> ConnectionID {
        loop.preconditionInEventLoop()
        defer { nextID += 1 }
        return nextID
    }

    static func now() -> Now {
        Now(monotonic: NIODeadline.now().uptimeNanoseconds, date: Date())
    }

    /// One event into the machine; its actions carried out.
    func handle(_ event: ConcentratorEvent) {
        loop.preconditionInEventLoop()
        switch event {
        case .vmBytes(_, let bytes): metrics.vmOutput(bytes: bytes.count)
        case .clientBytes(_, let bytes): metrics.clientInput(bytes: bytes.count)
        default: break
        }
        queue.append(event)
        guard !running else { return }
        running = true
        var next = 0
        while next < queue.count {
            let actions = machine.handle(queue[next], now: Self.now())
            next += 1
            for action in actions { run(action) }
            if next == queue.count { flushPending() }
        }
        queue.removeAll(keepingCapacity: true)
        running = false
    }

    private func flushPending(_ id: ConnectionID) {
        guard let buffer = pending.removeValue(forKey: id) else { return }
        sinks[id]?.write(buffer)
    }

    private func flushPending() {
        for id in pendingOrder { flushPending(id) }
        pendingOrder.removeAll(keepingCapacity: true)
    }

    /// A request the machine answers at once and in place (a console URL's page or WebSocket), on the loop.
    func answer<T>(_ body: (inout ConcentratorStateMachine) -> T) -> T {
        loop.preconditionInEventLoop()
        return body(&machine)
    }

    /// A question for the machine (list, status), answered on the loop.
    func read<T>(_ body: (ConcentratorStateMachine) -> T) -> T {
        loop.preconditionInEventLoop()
        return body(machine)
    }

    func register(_ id: ConnectionID, _ sink: ConnectionSink) { sinks[id] = sink }
    func unregister(_ id: ConnectionID) { sinks[id] = nil }
    func sink(_ id: ConnectionID) -> ConnectionSink? { sinks[id] }

    private func run(_ action: ConcentratorAction) {
        switch action {
        case let .send(id, bytes):
            guard !bytes.isEmpty, sinks[id] != nil else { return }
            if pending[id] == nil {
                pending[id] = ByteBuffer(bytes: bytes)
                pendingOrder.append(id)
            } else {
                pending[id]!.writeBytes(bytes)
            }
        case let .notice(id, text):
            flushPending(id)
            sinks[id]?.notice(text)
        case let .makeToken(id, uid):
            // The token from the system's generator, and the minter's user name (the password database may be
            // on the network): off the loop.
            let base = webBase
            let loop = self.loop
            reads.async { [weak self] in
                let made = WebConsoleSecrets.makeToken()
                let name = uid.flatMap(WebConsoleSecrets.userName)
                loop.execute { self?.handle(.tokenMade(id, token: made.token, hash: made.hash, base: base, userName: name)) }
            }
        case let .broadcast(ids, bytes):
            let buffer = ByteBuffer(bytes: bytes)
            for id in ids {
                flushPending(id)
                sinks[id]?.write(buffer)
            }
        case let .close(id, flush):
            flushPending(id)
            sinks[id]?.close(flush: flush)
        case let .endSession(id, status):
            flushPending(id)
            sinks[id]?.end(exitStatus: status)
        case .closeTransport(let id):
            flushPending(id)
            sinks[id]?.closeTransport()
        case let .setReading(id, on):
            flushPending(id)
            sinks[id]?.setReading(on)
        case let .bind(ref, port):
            bind(ref, port: port)
        case .unbind(let ref):
            listeners.removeValue(forKey: ref)?.close(promise: nil)
        case let .schedule(timer, after):
            timers[timer]?.task.cancel()
            timerToken += 1
            let token = timerToken
            let task = loop.scheduleTask(in: .nanoseconds(Int64(clamping: after))) { [weak self] in
                guard let self, self.timers[timer]?.token == token else { return }
                self.timers[timer] = nil
                self.handle(.timerFired(timer))
            }
            timers[timer] = (task, token)
        case .cancel(let timer):
            timers.removeValue(forKey: timer)?.task.cancel()
        case let .persist(ops, token):
            guard let token else {
                store.enqueue(ops, completion: nil)
                return
            }
            let loop = self.loop
            let store = self.store
            store.enqueue(ops) { [weak self] error in
                let failure = error.map { store.failure(of: $0) }
                loop.execute { self?.handle(.writeCompleted(token, error: failure)) }
            }
        case .record(let event):
            store.enqueue([.event(event)], completion: nil)
            log(event.kind.logLevel, event.logLine)
            observe(event)
        case let .log(level, message):
            log(level, message)
        case let .consoleOutput(key, bytes):
            let date = Date()
            for sink in outputSinks { sink.append(key, bytes, at: date) }
        case let .query(id, query):
            let store = self.store
            let loop = self.loop
            reads.async { [weak self] in
                let answer = Self.read(query, from: store)
                loop.execute { self?.handle(.queryAnswered(id, answer)) }
            }
        case .cluster(let request):
            cluster?.run(request)
        }
    }

    /// Runs one of the core's reads; on the `reads` queue.
    private static func read(_ query: RecordQuery, from store: any RecordBackend) -> RecordAnswer {
        do {
            switch query {
            case .knownConsoles:
                return .knownConsoles(try store.knownConsoles())
            case let .events(uuid, label, since, limit):
                return .events(try store.events(uuid: uuid, label: label, since: since, limit: limit))
            }
        } catch {
            return .failed(store.failure(of: error))
        }
    }

    /// The counters that follow recorded events, by their kind (no per-VM labels: a fleet has tens of thousands
    /// of VMs). How connections ended is counted by the machine itself (`tallies`), recorded or not.
    private func observe(_ event: ConsoleEvent) {
        switch event.kind {
        case .vmotionComplete:
            metrics.vmotion(.complete)
            if Self.crossNode(event) { crossNodeVMotions += 1 }
            if let window = event.window { metrics.vmotionWindow(seconds: Double(window) / 1e9) }
        case .vmotionAbort: metrics.vmotion(.abort)
        case .vmotionNotNow: metrics.vmotion(.notnow)
        case .vmotionExpired: metrics.vmotion(.timeout)
        case .vmotionPeerRejected, .vmotionCompleteRejected: metrics.vmotion(.rejected)
        default: break
        }
    }

    /// A cross-node vMotion's completion names the node of its source and of its destination
    /// ("source P on node A, destination Q on node B, ..."); a local one names none.
    static func crossNode(_ event: ConsoleEvent) -> Bool {
        (event.detail ?? "").components(separatedBy: " on node ").count > 2
    }

    /// The gauges, read on the loop at scrape time; the counters the machine keeps (suppressed events, how
    /// connections ended) catch up here too, since a scrape is their only reader.
    func metricsSnapshot() -> MetricsSnapshot {
        loop.preconditionInEventLoop()
        let suppressed = machine.eventsSuppressed
        if suppressed > suppressedReported {
            metrics.eventsSuppressed(suppressed - suppressedReported)
            suppressedReported = suppressed
        }
        let tallies = machine.tallies
        if tallies.vmConnections > disconnectsReported.vmConnections {
            metrics.vmConnected(tallies.vmConnections - disconnectsReported.vmConnections)
        }
        for (reason, count) in tallies.vmDisconnects where count > disconnectsReported.vmDisconnects[reason, default: 0] {
            metrics.vmDisconnected(reason: reason, count - disconnectsReported.vmDisconnects[reason, default: 0])
        }
        for (reason, count) in tallies.clientsDropped where count > disconnectsReported.clientsDropped[reason, default: 0] {
            metrics.clientDropped(reason: reason, count - disconnectsReported.clientsDropped[reason, default: 0])
        }
        disconnectsReported = tallies
        let s = machine.daemonStatus()
        var snapshot = MetricsSnapshot(vmsConnected: s.connected, consoles: s.consoles, clientsByDoor: s.clientsByDoor ?? [:],
                                       portsFree: s.portsFree, vmotionsInProgress: s.migrating)
        snapshot.consoleLog = consoleLogs?.statistics()
        snapshot.consoleMatches = tallies.consoleMatches
        return snapshot
    }

    private func log(_ level: LogLevel, _ message: String) {
        switch level {
        case .debug: logger.debug("\(message)")
        case .info: logger.info("\(message)")
        case .notice: logger.notice("\(message)")
        case .warning: logger.warning("\(message)")
        case .error: logger.error("\(message)")
        case .critical: logger.critical("\(message)")
        }
    }

    /// Opens a console's listener: a TCP server channel whose connections are people on the telnet door. A
    /// test on an embedded event loop puts its own here.
    lazy var openListener: (ListenerRef, Int) -> EventLoopFuture<Channel> = { [unowned self] ref, port in
        ServerBootstrap(group: self.loop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: self.network.clientWaterMark)
            .childChannelInitializer { [weak self] channel in
                guard let self else { return channel.close() }
                let handler = ConcentratorChannelHandler(id: self.makeID(), kind: .telnet(ref), driver: self)
                return channel.pipeline.addHandler(handler)
            }
            .bind(host: self.network.listenHost, port: port)
    }

    private func bind(_ ref: ListenerRef, port: Int) {
        openListener(ref, port).whenComplete { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let channel):
                self.listeners[ref] = channel
                self.handle(.listenerBound(ref))
            case .failure(let error):
                let inUse = (error as? IOError)?.errnoCode == EADDRINUSE
                // The plain sentence for the log, `vspc list` and history; SwiftNIO's own words at debug level.
                self.logger.debug("bind of port \(port) for \(ref): \(error)")
                self.handle(.listenerFailed(ref, addressInUse: inUse, message: SocketErrorText.listenReason(error)))
            }
        }
    }

    /// Stops everything: the machine closes listeners and connections and saves scrollback; timers are cancelled.
    func shutdown() {
        handle(.shutdown)
        for (_, timer) in timers { timer.task.cancel() }
        timers.removeAll()
    }
}
