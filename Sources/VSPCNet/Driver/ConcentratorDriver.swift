import Foundation
import Logging
import NIOCore
import NIOPosix
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
    private var machine: ConcentratorStateMachine
    private var channels: [ConnectionID: Channel] = [:]
    /// SSH sessions, by the id the machine knows them by, and that id by the SSH server's session id.
    var sessions: [ConnectionID: SSHConsoleSession] = [:]
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
    private var pendingOrder: [ConnectionID] = []

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
        guard var buffer = pending.removeValue(forKey: id) else { return }
        if let channel = channels[id] {
            channel.writeAndFlush(buffer, promise: nil)
        } else if let session = sessions[id] {
            session.write(Array(buffer.readableBytesView))
        }
        buffer.clear()
    }

    /// Closes a channel once what was queued for it has been written (or after 10 s for a peer that never reads).
    func closeAfterFlush(_ id: ConnectionID) {
        guard let channel = channels[id] else { return }
        // Writes complete in order: once this empty one has, everything queued before it has left.
        channel.writeAndFlush(ByteBuffer()).whenComplete { _ in channel.close(promise: nil) }
        loop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
    }

    private func flushPending() {
        for id in pendingOrder { flushPending(id) }
        pendingOrder.removeAll(keepingCapacity: true)
    }

    /// A question for the machine (list, status), answered on the loop.
    func read<T>(_ body: (ConcentratorStateMachine) -> T) -> T {
        loop.preconditionInEventLoop()
        return body(machine)
    }

    func register(_ id: ConnectionID, _ channel: Channel) { channels[id] = channel }
    func unregister(_ id: ConnectionID) { channels[id] = nil }

    private func run(_ action: ConcentratorAction) {
        switch action {
        case let .send(id, bytes):
            guard !bytes.isEmpty, channels[id] != nil || sessions[id] != nil else { return }
            if pending[id] == nil {
                pending[id] = ByteBuffer(bytes: bytes)
                pendingOrder.append(id)
            } else {
                pending[id]!.writeBytes(bytes)
            }
        case let .broadcast(ids, bytes):
            let buffer = ByteBuffer(bytes: bytes)
            for id in ids {
                flushPending(id)
                if let channel = channels[id] {
                    channel.writeAndFlush(buffer, promise: nil)
                } else {
                    sessions[id]?.write(bytes)
                }
            }
        case let .close(id, flush):
            flushPending(id)
            if let session = sessions[id] { return session.close(exitStatus: 0) }
            guard let channel = channels[id] else { return }
            if flush { closeAfterFlush(id) } else { channel.close(promise: nil) }
        case let .endSession(id, status):
            flushPending(id)
            endSession(id, exitStatus: status)
        case let .setReading(id, on):
            flushPending(id)
            guard let channel = channels[id] else { return }
            channel.setOption(ChannelOptions.autoRead, value: on).whenSuccess { if on { channel.read() } }
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
            store.enqueue([.event(event.record)], completion: nil)
            log(event.kind.logLevel, event.logLine)
            count(event)
        case let .log(level, message):
            log(level, message)
        case let .query(id, query):
            let store = self.store
            let loop = self.loop
            reads.async { [weak self] in
                let answer = Self.read(query, from: store)
                loop.execute { self?.handle(.queryAnswered(id, answer)) }
            }
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

    /// The counters that follow recorded events (no per-VM labels: a fleet has tens of thousands of VMs).
    private func count(_ event: ConsoleEvent) {
        switch event.kind {
        case .vmConnect: metrics.vmConnected()
        case .vmDisconnect:
            let detail = event.detail ?? ""
            let reason: DisconnectReason = detail.hasPrefix("daemon stopping") ? .shutdown
                : detail.hasPrefix("replaced") ? .replaced : .closed
            metrics.vmDisconnected(reason: reason)
        case .vmotionComplete:
            metrics.vmotion(.complete)
            if let window = event.window { metrics.vmotionWindow(seconds: Double(window) / 1e9) }
        case .vmotionAbort: metrics.vmotion(.abort)
        case .vmotionNotNow: metrics.vmotion(.notnow)
        case .vmotionExpired: metrics.vmotion(.timeout)
        case .vmotionPeerRejected, .vmotionCompleteRejected: metrics.vmotion(.rejected)
        case .clientDropped: metrics.clientDropped(reason: .slow)
        default: break
        }
    }

    /// The gauges, read on the loop at scrape time; the suppressed-events counter catches up here too (the
    /// machine counts them, and a scrape is the only reader).
    func metricsSnapshot() -> MetricsSnapshot {
        loop.preconditionInEventLoop()
        let suppressed = machine.eventsSuppressed
        if suppressed > suppressedReported {
            metrics.eventsSuppressed(suppressed - suppressedReported)
            suppressedReported = suppressed
        }
        let s = machine.daemonStatus()
        return MetricsSnapshot(vmsConnected: s.connected, consoles: s.consoles,
                               clientsByDoor: ["telnet": s.telnetClients, "ssh": s.sshClients ?? 0, "tail": s.tailFollowers],
                               portsFree: s.portsFree, vmotionsInProgress: s.migrating)
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

    private func bind(_ ref: ListenerRef, port: Int) {
        let bootstrap = ServerBootstrap(group: loop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: network.clientWaterMark)
            .childChannelInitializer { [weak self] channel in
                guard let self else { return channel.close() }
                let handler = ConcentratorChannelHandler(id: self.makeID(), kind: .client(ref), driver: self)
                return channel.pipeline.addHandler(handler)
            }
        bootstrap.bind(host: network.listenHost, port: port).whenComplete { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let channel):
                self.listeners[ref] = channel
                self.handle(.listenerBound(ref))
            case .failure(let error):
                let inUse = (error as? IOError)?.errnoCode == EADDRINUSE
                self.handle(.listenerFailed(ref, addressInUse: inUse, message: "\(error)"))
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
