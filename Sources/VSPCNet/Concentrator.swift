import Foundation
import Logging
import NIOCore
import NIOPosix
import VSPCStore

/// One console: one serial port of one VM, with its stable port, its listener and its attached clients.
final class Console {
    let key: ConsoleKey
    var name: String
    var port: Int
    /// The assignment is committed to the database (only then is it listed).
    var persisted: Bool
    var createdAt: Date
    var listener: Channel?
    var listenerError: String?
    var retryTimer: Scheduled<Void>?
    var vm: VMConnectionHandler?
    var since: Date
    var clients: [ConnectionID: ClientHandler] = [:]
    var followers: [ConnectionID: AdminHandler] = [:]
    var vmotion: VMotionStateMachine
    /// The pending migration's sequence, and the addresses of its source and destination, for its events.
    var migrationSequence: [UInt8]?
    var migrationSource: String?
    var migrationDestination: String?
    var lastActivity: NIODeadline = .now()
    var scrollback: ScrollbackRing
    var scrollbackDirty = false

    init(key: ConsoleKey, name: String, port: Int, persisted: Bool, createdAt: Date, since: Date,
         scrollbackBytes: Int, maxHeldBytes: Int) {
        self.key = key
        self.name = name
        self.port = port
        self.persisted = persisted
        self.createdAt = createdAt
        self.since = since
        self.vmotion = VMotionStateMachine(maxHeldBytes: maxHeldBytes)
        self.scrollback = ScrollbackRing(capacity: scrollbackBytes)
    }

    var idle: Bool { vm == nil && clients.isEmpty && followers.isEmpty && !vmotion.isPending }
}

/// The heart of the daemon: the consoles, their ports, the VM connections and the vMotion handoffs.
/// Every method runs on the concentrator's single event loop; nothing here blocks it (the store writes on
/// its own thread).
final class Concentrator: @unchecked Sendable {
    let config: DaemonConfig
    let store: Store
    let logger: Logger
    let loop: EventLoop
    let group: EventLoopGroup

    private(set) var consoles: [ConsoleKey: Console] = [:]
    private var pool: PortPool
    private var nextID: ConnectionID = 1
    private var vmConnections: [ConnectionID: VMConnectionHandler] = [:]
    /// Consoles with a migration pending, by the migration's sequence, for the PEER lookup. The sequence is
    /// not secret (the VM sends it in the clear); the secret is then compared in constant time.
    private var migrating: [[UInt8]: Set<ConsoleKey>] = [:]
    private var migratingCount = 0
    /// Length of the secret in GOAHEAD; a PEER's cookie is the sequence followed by it.
    static let secretLength = 8

    private func startMigrating(_ console: Console, sequence: [UInt8]) {
        console.migrationSequence = sequence
        migrating[sequence, default: []].insert(console.key)
        migratingCount += 1
    }

    private func stopMigrating(_ console: Console) {
        guard let sequence = console.migrationSequence else { return }
        console.migrationSequence = nil
        migrating[sequence]?.remove(console.key)
        if migrating[sequence]?.isEmpty == true { migrating[sequence] = nil }
        migratingCount -= 1
    }
    /// Consoles whose scrollback snapshot is queued for the disk.
    private var scrollbackSaving: Set<ConsoleKey> = []
    /// Descriptors in use by connections and listeners.
    private(set) var descriptorsInUse = 0
    private var timers: [RepeatedTask] = []
    var shuttingDown = false
    let startedAt = Date()

    init(config: DaemonConfig, store: Store, logger: Logger, group: EventLoopGroup) {
        self.config = config
        self.store = store
        self.logger = logger
        self.group = group
        self.loop = group.next()
        self.pool = PortPool(range: config.portRange)
    }

    func makeID() -> ConnectionID {
        defer { nextID += 1 }
        return nextID
    }

    private func record(_ kind: String, _ console: Console? = nil, uuid: String? = nil, label: String = "",
                        name: String? = nil, peer: String? = nil, detail: String? = nil) {
        store.enqueue(.event(NewEvent(kind: kind, uuid: console?.key.uuid ?? uuid,
                                      label: console?.key.label ?? label, name: console?.name ?? name,
                                      peer: peer, detail: detail)))
    }

    /// Records an event about a connection that may not carry a console yet. A vMotion destination sends its
    /// PEER before its uuid: such an event waits (with its time) until the connection tells its uuid or closes.
    private func record(_ kind: String, connection vm: VMConnectionHandler, detail: String) {
        let event = NewEvent(kind: kind, uuid: vm.console?.key.uuid ?? vm.machine.vmUUID,
                             label: vm.console?.key.label ?? "", name: vm.console?.name ?? vm.machine.vmName,
                             peer: vm.peer, detail: detail)
        if event.uuid == nil {
            vm.deferredEvents.append(event)
        } else {
            store.enqueue(.event(event))
        }
    }

    /// Writes a connection's deferred events, with its uuid and name if it has told them by now.
    func flushDeferredEvents(_ vm: VMConnectionHandler) {
        guard !vm.deferredEvents.isEmpty else { return }
        let events = vm.deferredEvents.map { event -> StoreOp in
            var e = event
            e.uuid = vm.machine.vmUUID
            e.name = vm.machine.vmName
            return .event(e)
        }
        vm.deferredEvents = []
        store.enqueue(events)
    }

    // MARK: start-up and shutdown

    /// Loads the known assignments and reopens their listeners, so people can wait on a VM's port.
    func start(assignments: [Assignment], scrollback: [ConsoleKey: [UInt8]], descriptorBaseline: Int) {
        loop.preconditionInEventLoop()
        // Descriptors the process holds already (stdio, the database, the event loop, the proxy and admin ports).
        descriptorsInUse = descriptorBaseline
        for a in assignments {
            let key = ConsoleKey(uuid: a.uuid, label: a.label)
            let console = Console(key: key, name: a.name, port: a.port, persisted: true, createdAt: a.createdAt,
                                  since: a.lastSeen, scrollbackBytes: config.scrollbackBytes,
                                  maxHeldBytes: config.vmotionHoldLimit)
            if let bytes = scrollback[key] { console.scrollback.append(bytes) }
            // Idle time counts from when the VM or a client was last seen, not from this start-up, so a
            // daemon restarted more often than --vm-expire-time still expires dead VMs.
            let idleSeconds = min(max(0, Date().timeIntervalSince(a.lastSeen)), 10 * 365 * 86400)
            console.lastActivity = .now() - .milliseconds(Int64(idleSeconds * 1000))
            consoles[key] = console
            pool.reserve(a.port)
            openListener(console, isNew: false)
        }
        logger.info("loaded \(assignments.count) port assignments")
        let sweep = TimeAmount.milliseconds(Int64(max(0.05, min(60, config.vmExpireTime / 4)) * 1000))
        timers.append(loop.scheduleRepeatedTask(initialDelay: sweep, delay: sweep) { [weak self] _ in
            self?.expireIdleConsoles()
        })
        if config.scrollbackBytes > 0 {
            let every = TimeAmount.milliseconds(Int64(config.scrollbackSaveInterval * 1000))
            timers.append(loop.scheduleRepeatedTask(initialDelay: every, delay: every) { [weak self] _ in
                self?.saveScrollback()
            })
        }
        let hourly = TimeAmount.hours(1)
        timers.append(loop.scheduleRepeatedTask(initialDelay: .seconds(5), delay: hourly) { [weak self] _ in
            guard let self else { return }
            self.store.enqueue(.prune(self.config.retention))
        })
    }

    /// Stops timers, saves scrollback and closes every connection and listener.
    func shutdown() -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        shuttingDown = true
        timers.forEach { $0.cancel() }
        saveScrollback(final: true)
        var futures: [EventLoopFuture<Void>] = []
        for console in consoles.values {
            console.retryTimer?.cancel()
            if let l = console.listener { futures.append(l.close().recover { _ in }) }
            for c in console.clients.values { c.close() }
            for f in console.followers.values { f.close() }
        }
        for vm in vmConnections.values { vm.close() }
        return EventLoopFuture.andAllComplete(futures, on: loop)
    }

    // MARK: descriptors

    /// Reserves descriptors for a person's or the admin tool's connection; false (and nothing reserved) when too
    /// close to the limit. These may dip into the reserve that new VMs must leave free, so people can still
    /// reach the consoles and `vspc` still answers when VMs have taken their share.
    func reserveDescriptors(_ n: Int) -> Bool {
        if descriptorsInUse + n > config.descriptorLimit - config.descriptorReserve / 4 { return false }
        descriptorsInUse += n
        return true
    }

    func releaseDescriptors(_ n: Int) { descriptorsInUse -= n }

    // MARK: VM connections

    /// A VM connected to the proxy port. Returns false (and closes it) when the daemon is near its descriptor limit.
    func vmConnected(_ vm: VMConnectionHandler) -> Bool {
        // A VM costs its connection and, once identified, its console's listener.
        guard !shuttingDown, descriptorsInUse + 2 <= config.descriptorLimit - config.descriptorReserve else {
            logger.error("refused VM connection from \(vm.peer): open-file limit nearly reached (\(descriptorsInUse) of \(config.descriptorLimit) in use)")
            vm.role = .retired
            vm.close()
            return false
        }
        descriptorsInUse += 1
        vmConnections[vm.id] = vm
        logger.debug("VM connection from \(vm.peer)")
        return true
    }

    func vmDisconnected(_ vm: VMConnectionHandler) {
        guard vmConnections.removeValue(forKey: vm.id) != nil else { return }
        releaseDescriptors(1)
        flushDeferredEvents(vm)
        let now = NIODeadline.now()
        switch vm.role {
        case .vm(let console):
            console.vmotion.connectionClosed(vm.id)
            if console.vm === vm {
                console.vm = nil
                console.lastActivity = now
                if console.vmotion.isPending && !shuttingDown {
                    // ESXi closes the source as the destination completes: not the VM going down.
                    logger.info("VM \(console.name) (\(console.key)): vMotion source \(vm.peer) closed")
                    record("vmotion-source-closed", console, peer: vm.peer)
                } else {
                    console.since = Date()
                    let reason = shuttingDown ? "daemon stopping" : "closed"
                    logger.info("VM \(console.name) (\(console.key)) disconnected: \(reason)")
                    record("vm-disconnect", console, peer: vm.peer, detail: reason)
                }
                store.enqueue(.touchAssignment(uuid: console.key.uuid, label: console.key.label,
                                               name: console.name, at: Date()))
            }
        case .destination(let console):
            console.vmotion.connectionClosed(vm.id)
            logger.warning("vMotion destination \(vm.peer) for \(console.name) closed before VMOTION-COMPLETE")
            record("vmotion-destination-closed", console, peer: vm.peer)
        case .negotiating, .retired:
            break
        }
    }

    /// Output from the VM: to every client, every follower and the scrollback.
    func vmOutput(_ vm: VMConnectionHandler, _ bytes: [UInt8]) {
        switch vm.role {
        case .vm(let console):
            broadcast(console, bytes)
        case .negotiating, .destination:
            // Before identification or before COMPLETE: keep it (bounded) until the connection carries the console.
            let room = 256 * 1024 - vm.pendingOutput.count
            vm.pendingOutput.append(contentsOf: bytes.prefix(max(0, room)))
            if bytes.count > room { vm.pendingOutputDropped += bytes.count - max(0, room) }
        case .retired:
            break
        }
    }

    private func broadcast(_ console: Console, _ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        if config.scrollbackBytes > 0 {
            console.scrollback.append(bytes)
            console.scrollbackDirty = true
        }
        if !console.clients.isEmpty {
            let encoded = TelnetEncoder.escaped(bytes)
            for client in console.clients.values where !client.send(raw: encoded) {
                logger.warning("dropping client \(client.peer) of \(console.name): it stopped reading (\(client.queuedBytes) bytes queued)")
                record("client-dropped", console, peer: client.peer, detail: "stopped reading")
                client.close()
            }
        }
        for follower in console.followers.values { follower.stream(bytes) }
    }

    private func flushPendingOutput(_ vm: VMConnectionHandler, to console: Console) {
        if vm.pendingOutputDropped > 0 {
            logger.warning("VM \(console.name): \(vm.pendingOutputDropped) bytes of early output were discarded")
        }
        let bytes = vm.pendingOutput
        vm.pendingOutput = []
        vm.pendingOutputDropped = 0
        broadcast(console, bytes)
    }

    func identified(_ vm: VMConnectionHandler, uuid: String, name: String, label: String) {
        guard case .negotiating = vm.role else { return }
        let key = ConsoleKey(uuid: uuid, label: label)
        let console: Console
        var reused = false
        var oldName: String?
        var dropped: VMotionStateMachine.Handoff?
        if let existing = consoles[key] {
            console = existing
            if let old = console.vm, old !== vm {
                logger.warning("VM \(name) (\(key)) reconnected from \(vm.peer); closing its stale connection from \(old.peer)")
                record("vm-disconnect", console, peer: old.peer, detail: "replaced by a new connection")
                old.role = .retired
                old.close()
            }
            if let handoff = console.vmotion.reset(now: NIODeadline.now().uptimeNanoseconds) {
                stopMigrating(console)
                logger.warning("VM \(name) reconnected afresh during a vMotion; the migration is dropped")
                record("vmotion-expired", console, peer: vm.peer,
                       detail: "VM reconnected afresh; \(windowDetail(console, handoff))")
                closeRetired(handoff.close)
                dropped = handoff
            }
            if console.name != name {
                oldName = console.name
                console.name = name
            }
            if console.persisted {
                reused = true
                store.enqueue(.touchAssignment(uuid: uuid, label: label, name: name, at: Date()))
            }
        } else {
            guard let port = pool.allocate() else {
                logger.error("no free port left in \(config.portRange) for VM \(name) (\(key)); refusing it")
                record("port-exhausted", uuid: uuid, label: label, name: name, peer: vm.peer)
                vm.role = .retired
                vm.close()
                return
            }
            console = Console(key: key, name: name, port: port, persisted: false, createdAt: Date(), since: Date(),
                              scrollbackBytes: config.scrollbackBytes, maxHeldBytes: config.vmotionHoldLimit)
            consoles[key] = console
            openListener(console, isNew: true)
        }
        console.vm = vm
        console.since = Date()
        console.lastActivity = .now()
        vm.role = .vm(console)
        logger.info("VM \(name) (\(key)) connected from \(vm.peer), port \(console.port)")
        record("vm-connect", console, peer: vm.peer, detail: "port \(console.port)")
        if let oldName { record("name-change", console, detail: "\(oldName) -> \(name)") }
        if reused { record("port-reused", console, detail: "port \(console.port)") }
        flushPendingOutput(vm, to: console)
        // Input typed during a migration that the VM's fresh start replaced was meant for this VM.
        if let dropped { deliverHeld(dropped, to: vm, console) }
    }

    func renamed(_ vm: VMConnectionHandler, name: String) {
        guard let console = vm.console, console.name != name else { return }
        logger.info("VM \(console.key) renamed from \(console.name) to \(name)")
        record("name-change", console, detail: "\(console.name) -> \(name)")
        console.name = name
        if console.persisted {
            store.enqueue(.touchAssignment(uuid: console.key.uuid, label: console.key.label, name: name, at: Date()))
        }
    }

    // MARK: per-VM listeners

    /// Binds the console's port. A new assignment that finds its port taken moves to the next free one; a known
    /// assignment keeps its port and retries later. The assignment is written before the port is announced.
    private func openListener(_ console: Console, isNew: Bool, attempt: Int = 0, taken: Set<Int> = []) {
        guard !shuttingDown else { return }
        let bootstrap = ServerBootstrap(group: loop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .childChannelInitializer { [weak self, weak console] channel in
                guard let self, let console else { return channel.close() }
                let handler = ClientHandler(id: self.makeID(), console: console, concentrator: self)
                return channel.pipeline.addHandler(handler)
            }
        bootstrap.bind(host: config.listenHost, port: console.port).whenComplete { [self] result in
            switch result {
            case .success(let channel):
                if self.shuttingDown || self.consoles[console.key] !== console {
                    channel.close(promise: nil)
                    return
                }
                console.listener = channel
                console.listenerError = nil
                self.descriptorsInUse += 1
                channel.closeFuture.whenComplete { _ in self.descriptorsInUse -= 1 }
                if isNew { self.persistNewAssignment(console) }
            case .failure(let error):
                console.listenerError = "\(error)"
                let failed = console.port
                let inUse = (error as? IOError)?.errnoCode == EADDRINUSE
                if isNew, inUse, attempt < 32, let next = self.pool.allocate(excluding: taken.union([failed])) {
                    self.logger.warning("port \(failed) is taken by another process; trying \(next) for \(console.name)")
                    // The taken port stays reserved in the pool, so no other VM tries it again.
                    console.port = next
                    self.openListener(console, isNew: true, attempt: attempt + 1, taken: taken.union([failed]))
                    return
                }
                self.logger.error("cannot listen on \(self.config.listenHost):\(console.port) for VM \(console.name) (\(console.key)): \(error); will retry every 30 s")
                self.record("port-bind-failed", console, detail: "port \(console.port): \(error)")
                if isNew { self.persistNewAssignment(console) }
                console.retryTimer = self.loop.scheduleTask(in: .seconds(30)) { [weak self] in
                    guard let self, self.consoles[console.key] === console, console.listener == nil else { return }
                    self.openListener(console, isNew: false)
                }
            }
        }
    }

    private func persistNewAssignment(_ console: Console) {
        let now = Date()
        let assignment = Assignment(uuid: console.key.uuid, label: console.key.label, name: console.name,
                                    port: console.port, createdAt: console.createdAt, lastSeen: now)
        let loop = self.loop
        let bound = NIOLoopBound(console, eventLoop: loop)
        store.enqueue(.upsertAssignment(assignment)) { [weak self] error in
            loop.execute {
                guard let self else { return }
                let console = bound.value
                if let error {
                    // Not listed until recorded; try again rather than hold the port unlisted for ever.
                    self.logger.error("could not record the port of VM \(console.name) (\(console.key)): \(error); retrying in 30 s")
                    self.loop.scheduleTask(in: .seconds(30)) { [weak self] in
                        guard let self, !self.shuttingDown, self.consoles[console.key] === console else { return }
                        self.persistNewAssignment(console)
                    }
                    return
                }
                console.persisted = true
                self.logger.notice("VM \(console.name) (\(console.key)) assigned port \(console.port)")
                self.record("port-assigned", console, detail: "port \(console.port)")
            }
        }
    }

    /// Removes consoles that had no VM and no client for `vmExpireTime`; their ports return to the pool.
    /// Consoles in use get their `last_seen` refreshed, so idle time survives a restart or a kill -9.
    func expireIdleConsoles() {
        let now = NIODeadline.now()
        let limit = TimeAmount.milliseconds(Int64(config.vmExpireTime * 1000))
        let seen = Date()
        let touches = consoles.values.filter { !$0.idle && $0.persisted }.map {
            StoreOp.touchAssignment(uuid: $0.key.uuid, label: $0.key.label, name: $0.name, at: seen)
        }
        if !touches.isEmpty { store.enqueue(touches) }
        for console in consoles.values where console.idle && console.persisted && now - console.lastActivity > limit {
            consoles.removeValue(forKey: console.key)
            console.retryTimer?.cancel()
            console.listener?.close(promise: nil)
            pool.release(console.port)
            logger.info("assignment of VM \(console.name) (\(console.key)) to port \(console.port) expired")
            record("port-expired", console, detail: "port \(console.port)")
            store.enqueue(.deleteAssignment(uuid: console.key.uuid, label: console.key.label))
        }
    }

    /// Saves the scrollback of consoles that printed since their last save. While the disk is slow, a console
    /// whose previous snapshot is still queued is skipped (it stays dirty), so at most one snapshot per console
    /// waits in memory. `final` (at shutdown) saves every dirty console regardless.
    func saveScrollback(final: Bool = false) {
        guard config.scrollbackBytes > 0 else { return }
        var ops: [StoreOp] = []
        var keys: [ConsoleKey] = []
        let now = Date()
        for console in consoles.values where console.scrollbackDirty && (final || !scrollbackSaving.contains(console.key)) {
            console.scrollbackDirty = false
            keys.append(console.key)
            ops.append(.saveScrollback(uuid: console.key.uuid, label: console.key.label,
                                       data: console.scrollback.contents(), at: now))
        }
        guard !ops.isEmpty else { return }
        scrollbackSaving.formUnion(keys)
        let loop = self.loop
        store.enqueue(ops) { [weak self] error in
            loop.execute {
                guard let self else { return }
                self.scrollbackSaving.subtract(keys)
                if error != nil { keys.forEach { self.consoles[$0]?.scrollbackDirty = true } } // try again next time
            }
        }
    }

    // MARK: clients

    func clientAttached(_ client: ClientHandler) -> Bool {
        let console = client.console
        guard consoles[console.key] === console else {
            logger.info("refused client \(client.peer): the assignment of \(console.name) has expired")
            client.close()
            return false
        }
        guard reserveDescriptors(1) else {
            logger.error("refused client \(client.peer) of \(console.name): open-file limit nearly reached")
            client.close()
            return false
        }
        console.clients[client.id] = client
        console.lastActivity = .now()
        logger.info("client \(client.peer) attached to \(console.name) (\(console.key)), \(console.clients.count) attached")
        record("client-attach", console, peer: client.peer, detail: "read-write")
        if config.replayBytes > 0, config.scrollbackBytes > 0 {
            let replay = console.scrollback.contents(last: config.replayBytes)
            if !replay.isEmpty { client.send(raw: TelnetEncoder.escaped(replay), bounded: false) }
        }
        return true
    }

    func clientDetached(_ client: ClientHandler) {
        let console = client.console
        guard console.clients.removeValue(forKey: client.id) != nil else { return }
        releaseDescriptors(1)
        console.lastActivity = .now()
        logger.info("client \(client.peer) detached from \(console.name)")
        record("client-detach", console, peer: client.peer)
    }

    func clientInput(_ client: ClientHandler, _ bytes: [UInt8]) {
        let console = client.console
        switch console.vmotion.clientInput(bytes) {
        case .forward:
            guard let vm = console.vm else {
                logger.debug("input from \(client.peer) discarded: \(console.name) is not connected")
                return
            }
            if !vm.sendData(bytes) {
                logger.warning("input from \(client.peer) discarded: VM \(console.name) is not reading")
            }
        case .held:
            break
        case .dropped(let n):
            logger.warning("vMotion of \(console.name): hold buffer full, \(n) bytes of input from \(client.peer) discarded")
        }
    }

    // MARK: vMotion

    func vmotionBegin(_ vm: VMConnectionHandler, sequence: [UInt8]) {
        guard case .vm(let console) = vm.role else {
            logger.warning("VMOTION-BEGIN from \(vm.peer), which carries no console; answering NOTNOW")
            vm.send(raw: VMwareCommand.message(VMwareCommand.vmotionNotNow, sequence))
            record("vmotion-notnow", connection: vm, detail: "connection carries no console")
            return
        }
        var secret = [UInt8](repeating: 0, count: Self.secretLength)
        var rng = SystemRandomNumberGenerator()
        for i in secret.indices { secret[i] = rng.next() }
        let now = NIODeadline.now().uptimeNanoseconds
        record("vmotion-begin", console, peer: vm.peer, detail: "sequence \(hex(sequence))")
        switch console.vmotion.begin(sequence: sequence, from: vm.id, currentVM: console.vm?.id, secret: secret, now: now) {
        case .goahead(let payload, let generation):
            startMigrating(console, sequence: sequence)
            console.migrationSource = vm.peer
            console.migrationDestination = nil
            // Writes are ordered: everything queued for the VM leaves before the GOAHEAD.
            vm.send(raw: VMwareCommand.message(VMwareCommand.vmotionGoahead, payload))
            logger.info("vMotion of \(console.name) begins from \(vm.peer)")
            record("vmotion-goahead", console, peer: vm.peer, detail: "sequence \(hex(sequence)), source \(vm.peer)")
            let timeout = TimeAmount.milliseconds(Int64(config.vmotionTimeout * 1000))
            loop.scheduleTask(in: timeout) { [weak self, weak console] in
                guard let self, let console else { return }
                self.vmotionExpired(console, generation: generation)
            }
        case .notNow(let reason):
            vm.send(raw: VMwareCommand.message(VMwareCommand.vmotionNotNow, sequence))
            logger.warning("vMotion of \(console.name) refused (NOTNOW): \(reason)")
            record("vmotion-notnow", console, peer: vm.peer, detail: reason)
        }
    }

    func vmotionPeer(_ vm: VMConnectionHandler, cookie: [UInt8]) {
        guard case .negotiating = vm.role else {
            logger.warning("VMOTION-PEER from \(vm.peer), which already carries a console; rejected")
            vm.send(raw: VMwareCommand.message(VMwareCommand.unknownSuboptionRcvd2, [VMwareCommand.vmotionPeer]))
            record("vmotion-peer-rejected", connection: vm, detail: "connection already carries a console")
            return
        }
        // The migrations with this cookie's sequence; their secrets are compared in constant time.
        var found: Console?
        let sequence = Array(cookie.dropLast(Self.secretLength))
        for key in migrating[sequence] ?? [] {
            if let console = consoles[key], console.vmotion.matches(cookie: cookie) { found = console; break }
        }
        guard let console = found else {
            logger.warning("VMOTION-PEER from \(vm.peer) with an unknown cookie; rejected")
            vm.send(raw: VMwareCommand.message(VMwareCommand.unknownSuboptionRcvd2, [VMwareCommand.vmotionPeer]))
            record("vmotion-peer-rejected", connection: vm, detail: "unknown cookie")
            return
        }
        switch console.vmotion.peer(cookie: cookie, from: vm.id) {
        case .accepted(let sequence):
            vm.role = .destination(console)
            vm.send(raw: VMwareCommand.message(VMwareCommand.vmotionPeerOK, sequence))
            console.migrationDestination = vm.peer
            logger.info("vMotion of \(console.name): destination \(vm.peer) accepted")
            record("vmotion-peer", console, peer: vm.peer,
                   detail: "source \(console.migrationSource ?? "?"), destination \(vm.peer)")
        case .rejected(let reason):
            vm.send(raw: VMwareCommand.message(VMwareCommand.unknownSuboptionRcvd2, [VMwareCommand.vmotionPeer]))
            logger.warning("VMOTION-PEER from \(vm.peer) for \(console.name) rejected: \(reason)")
            record("vmotion-peer-rejected", console, peer: vm.peer, detail: reason)
        }
    }

    func vmotionComplete(_ vm: VMConnectionHandler, sequence: [UInt8]) {
        guard case .destination(let console) = vm.role else {
            logger.warning("VMOTION-COMPLETE from \(vm.peer) without an accepted VMOTION-PEER; rejected")
            vm.send(raw: VMwareCommand.message(VMwareCommand.unknownSuboptionRcvd2, [VMwareCommand.vmotionComplete]))
            record("vmotion-complete-rejected", connection: vm, detail: "no accepted VMOTION-PEER")
            return
        }
        switch console.vmotion.complete(sequence: sequence, from: vm.id, now: NIODeadline.now().uptimeNanoseconds) {
        case .switched(let handoff):
            stopMigrating(console)
            let source = console.vm
            source?.role = .retired
            if let source, source.id == handoff.close { source.close() }
            console.vm = vm
            vm.role = .vm(console)
            vm.machine.adoptedByVMotion()
            flushPendingOutput(vm, to: console)
            deliverHeld(handoff, to: vm, console)
            logger.info("vMotion of \(console.name) complete: now on \(vm.peer) (window \(millis(handoff.durationNanos)) ms)")
            record("vmotion-complete", console, peer: vm.peer, detail: windowDetail(console, handoff))
            if let uuid = vm.machine.vmUUID, uuid != console.key.uuid {
                logger.warning("vMotion destination \(vm.peer) says uuid \(uuid) but migrated \(console.key)")
            }
            if let vmName = vm.machine.vmName, vmName != console.name { renamed(vm, name: vmName) }
        case .rejected(let reason):
            vm.send(raw: VMwareCommand.message(VMwareCommand.unknownSuboptionRcvd2, [VMwareCommand.vmotionComplete]))
            logger.warning("VMOTION-COMPLETE from \(vm.peer) for \(console.name) rejected: \(reason)")
            record("vmotion-complete-rejected", console, peer: vm.peer, detail: reason)
        }
    }

    func vmotionAbort(_ vm: VMConnectionHandler) {
        guard case .vm(let console) = vm.role else {
            logger.warning("VMOTION-ABORT from \(vm.peer), which carries no console; ignored")
            return
        }
        switch console.vmotion.abort(from: vm.id, now: NIODeadline.now().uptimeNanoseconds) {
        case .resumed(let handoff):
            stopMigrating(console)
            closeRetired(handoff.close)
            deliverHeld(handoff, to: vm, console)
            logger.info("vMotion of \(console.name) aborted; resuming on \(vm.peer)")
            record("vmotion-abort", console, peer: vm.peer, detail: windowDetail(console, handoff))
        case .ignored(let reason):
            logger.warning("VMOTION-ABORT from \(vm.peer) for \(console.name) ignored: \(reason)")
            record("vmotion-abort-ignored", console, peer: vm.peer, detail: reason)
        }
    }

    private func vmotionExpired(_ console: Console, generation: Int) {
        guard let handoff = console.vmotion.expire(generation: generation, now: NIODeadline.now().uptimeNanoseconds) else { return }
        stopMigrating(console)
        closeRetired(handoff.close)
        if let vm = console.vm, vm.id == handoff.resumeOn {
            deliverHeld(handoff, to: vm, console)
        } else if !handoff.held.isEmpty {
            logger.warning("vMotion of \(console.name): \(handoff.held.count) bytes of client input held during the window are discarded; the VM is disconnected")
        }
        logger.warning("vMotion of \(console.name) expired after \(millis(handoff.durationNanos)) ms without VMOTION-COMPLETE; \(console.vm == nil ? "the VM is disconnected" : "resuming on the source")")
        let source = console.migrationSource
        record("vmotion-expired", console, peer: console.vm?.peer, detail: windowDetail(console, handoff))
        if console.vm == nil {
            // The source closed expecting a destination that never completed: the VM is down after all.
            console.since = Date()
            record("vm-disconnect", console, peer: source, detail: "source closed during a vMotion that did not complete")
        }
    }

    /// "source A, destination B, window N ms" for the events that end a migration; clears the addresses.
    private func windowDetail(_ console: Console, _ handoff: VMotionStateMachine.Handoff) -> String {
        defer {
            console.migrationSource = nil
            console.migrationDestination = nil
        }
        return "source \(console.migrationSource ?? "?"), destination \(console.migrationDestination ?? "none"), window \(millis(handoff.durationNanos)) ms"
    }

    private func closeRetired(_ id: ConnectionID?) {
        guard let id, let conn = vmConnections[id] else { return }
        conn.role = .retired
        conn.close()
    }

    private func deliverHeld(_ handoff: VMotionStateMachine.Handoff, to vm: VMConnectionHandler, _ console: Console) {
        if handoff.heldDropped > 0 {
            logger.warning("vMotion of \(console.name): \(handoff.heldDropped) bytes of client input exceeded the hold buffer and were discarded")
        }
        if !handoff.held.isEmpty, !vm.sendData(handoff.held) {
            logger.warning("vMotion of \(console.name): held input discarded, VM is not reading")
        }
    }

    // MARK: admin

    func consoleInfos() -> [ConsoleInfo] {
        let formatter = ISO8601DateFormatter.vspc()
        return consoles.values.filter(\.persisted).map { info($0, formatter) }
            .sorted { ($0.name, $0.label, $0.uuid) < ($1.name, $1.label, $1.uuid) }
    }

    func info(_ c: Console, _ formatter: ISO8601DateFormatter = .vspc()) -> ConsoleInfo {
        ConsoleInfo(name: c.name, uuid: c.key.uuid, label: c.key.label, port: c.port, connected: c.vm != nil,
                    clients: c.clients.count, since: formatter.string(from: c.since), listening: c.listener != nil,
                    listenError: c.listener == nil ? c.listenerError : nil,
                    migrating: c.vmotion.isPending, peer: c.vm?.peer)
    }

    /// Finds a console by uuid (any spelling), name, or unique prefix of either.
    func findConsole(_ query: String, label: String?) -> Result<Console, AdminError> {
        let candidates = consoles.values.filter { c in c.persisted && (label == nil || c.key.label == label) }
        if let uuid = UUIDSpelling.normalize(query) {
            let hits = candidates.filter { $0.key.uuid == uuid }
            return unique(hits, query)
        }
        let exact = candidates.filter { $0.name == query }
        if !exact.isEmpty { return unique(exact, query) }
        var hits = candidates.filter { $0.name.hasPrefix(query) }
        if let hex = UUIDSpelling.hexPrefix(query), !hex.isEmpty {
            hits += candidates.filter { $0.key.uuid.hasPrefix(hex) && !$0.name.hasPrefix(query) }
        }
        return unique(hits, query)
    }

    private func unique(_ hits: [Console], _ query: String) -> Result<Console, AdminError> {
        if hits.count == 1 { return .success(hits[0]) }
        if hits.isEmpty { return .failure(AdminError(message: "no VM matches \(query.debugDescription)")) }
        let names = hits.map { "\($0.name)\($0.key.label.isEmpty ? "" : "#" + $0.key.label) (\($0.key.uuid))" }.sorted()
        return .failure(AdminError(message: "\(query.debugDescription) is ambiguous: \(names.joined(separator: ", "))"))
    }

    func follow(_ console: Console, _ admin: AdminHandler) {
        console.followers[admin.id] = admin
    }

    func unfollow(_ admin: AdminHandler) {
        for console in consoles.values { console.followers.removeValue(forKey: admin.id) }
    }

    func status() -> [String: String] {
        [
            "consoles": "\(consoles.values.filter(\.persisted).count)",
            "connected": "\(consoles.values.filter { $0.vm != nil }.count)",
            "clients": "\(consoles.values.reduce(0) { $0 + $1.clients.count })",
            "migrating": "\(migratingCount)",
            "freePorts": "\(pool.available)",
            "descriptors": "\(descriptorsInUse)",
            "descriptorLimit": "\(config.descriptorLimit)",
            "startedAt": ISO8601DateFormatter.vspc().string(from: startedAt),
        ]
    }
}

public struct AdminError: Error, Sendable {
    public var message: String
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

func millis(_ nanos: UInt64) -> String {
    String(format: "%.1f", Double(nanos) / 1_000_000)
}
