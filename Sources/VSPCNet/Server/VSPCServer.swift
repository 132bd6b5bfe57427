import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOPosix
import NIOSSL
import VSPCClient
import VSPCCore

/// What the daemon knew when it stopped: the assignments and the scrollback saved in its store.
public struct SavedState: Sendable {
    public var assignments: [Assignment]
    public var scrollback: [ConsoleKey: [UInt8]]
    /// The JSON API's tokens (hashes only).
    public var tokens: [APIToken]
    public init(assignments: [Assignment], scrollback: [ConsoleKey: [UInt8]], tokens: [APIToken] = []) {
        self.assignments = assignments
        self.scrollback = scrollback
        self.tokens = tokens
    }
}

/// The running daemon: the proxy port for ESXi, the per-VM ports for people, and the admin endpoint.
/// All networking runs on one event loop (serial consoles are slow; one loop makes the concentrator's state
/// race-free); the database writes on the store's own thread.
public final class VSPCServer: @unchecked Sendable {
    public let config: DaemonConfig
    let logger: Logger
    let store: any RecordBackend
    let group: MultiThreadedEventLoopGroup
    let driver: ConcentratorDriver
    public let metrics: VSPCMetrics
    private var httpListener: HTTPListener?
    /// Set once the start-up assignments are loaded and their ports bound (or failed): `/readyz`.
    private let ready = NIOLockedValueBox(false)
    /// The driver's output sinks, fixed at init (read here off the event loop).
    private let outputSinks: [any ConsoleOutputSink]
    /// Reads a console's live log for `/console_log` (nil: console logs off).
    private let consoleLogReader: (@Sendable (ConsoleKey, Int?) throws -> [UInt8]?)?
    /// Reads a console's log in a time window for the JSON API, at most `limit + 1` bytes (nil: logs off).
    public var consoleLogWindow: (@Sendable (ConsoleKey, Date?, Date?, Int) throws -> [UInt8])?
    let ssh = NIOLockedValueBox<SSHState?>(nil)
    private var proxyChannel: Channel?
    private var adminChannel: Channel?
    /// The cluster's shared records (`--db postgresql://...`), set before `start`; nil for one daemon alone.
    public var clusterRecords: (any ClusterRecords)?
    var clusterAgent: ClusterAgent?
    var clusterLink: ClusterLink?

    /// - Parameters:
    ///   - consoleLogs: where every console's output is written (nil: console logs off).
    ///   - consoleLogReader: reads a console's live log, for `GET /console_log/<uuid>`.
    public init(config: DaemonConfig, store: any RecordBackend, logger: Logger,
                consoleLogs: (any ConsoleOutputSink)? = nil,
                consoleLogReader: (@Sendable (ConsoleKey, Int?) throws -> [UInt8]?)? = nil) {
        self.config = config
        self.consoleLogReader = consoleLogReader
        self.logger = logger
        self.store = store
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.metrics = VSPCMetrics(version: config.version)
        self.driver = ConcentratorDriver(config: config, store: store, logger: logger, loop: group.next(), metrics: metrics)
        driver.consoleLogs = consoleLogs
        if let consoleLogs { driver.outputSinks.append(consoleLogs) }
        if !config.watchPatterns.isEmpty {
            let driver = self.driver
            driver.outputSinks.append(ConsoleWatcher(patterns: config.watchPatterns) { key, pattern, line in
                driver.loop.execute { driver.handle(.consoleLineMatched(key, pattern: pattern, line: line)) }
            })
        }
        outputSinks = driver.outputSinks
        metrics.watchPatterns(config.watchPatterns.map(\.name))
    }

    /// The loop everything runs on (systemd's watchdog pings from it, so a stuck loop stops the pings).
    public var eventLoop: any EventLoop { driver.loop }

    /// What SIGHUP changed that applies live.
    public func reconfigure(vmExpireTime: Double, retention: Retention, proxyAllow: AddressAllowList) {
        let driver = self.driver
        driver.loop.execute {
            driver.handle(.reconfigure(vmExpireTime: vmExpireTime, retention: retention, proxyAllow: proxyAllow))
        }
    }

    /// The bound proxy and admin addresses (useful with port 0).
    public var proxyPort: Int? { proxyChannel?.localAddress?.port }
    public var adminPort: Int? { adminChannel?.localAddress?.port }

    /// Reopens the known ports and binds the proxy and admin ports.
    public func start(saved: SavedState) async throws {
        let driver = self.driver
        let baseline = Self.openDescriptors() + 2 // + the proxy and admin listeners about to open
        let scrollback = config.scrollbackBytes > 0 ? saved.scrollback.mapValues { Array($0.suffix(self.config.scrollbackBytes)) } : [:]
        try await prepareCluster()
        try await driver.loop.submit {
            driver.handle(.start(assignments: saved.assignments, scrollback: scrollback, descriptorBaseline: baseline))
            driver.handle(.tokensLoaded(saved.tokens))
        }.get()

        let tls = config.tls
        let vmWaterMark = config.vmWaterMark
        let proxy = ServerBootstrap(group: driver.loop)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: vmWaterMark)
            .childChannelInitializer { channel in
                let handler = ConcentratorChannelHandler(id: driver.makeID(), kind: .vm, driver: driver)
                return channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        do {
            proxyChannel = try await proxy.bind(host: config.proxyHost, port: config.proxyPort).get()
        } catch {
            throw ListenError("the proxy port \(config.proxyHost):\(config.proxyPort)", error)
        }
        logger.notice("proxy listening on \(config.proxyHost):\(proxyPort ?? config.proxyPort)\(tls != nil ? " (TLS)" : "")")

        let adminWaterMark = config.adminWaterMark
        let admin = ServerBootstrap(group: driver.loop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: adminWaterMark)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineBasedFrameDecoder(), maximumBufferSize: AdminProtocol.maxRequestBytes))
                    try channel.pipeline.syncOperations.addHandler(
                        ConcentratorChannelHandler(id: driver.makeID(), kind: .admin, driver: driver))
                }
            }
        let adminWhere: String
        if let path = config.adminUnixPath {
            adminChannel = try await Self.bindPrivateSocket(admin, path: path, mode: 0o660)
            adminWhere = "unix:\(path) (0660)"
        } else {
            do {
                adminChannel = try await admin.bind(host: config.adminHost, port: config.adminPort).get()
            } catch {
                throw ListenError("the admin port \(config.adminHost):\(config.adminPort)", error)
            }
            adminWhere = "\(config.adminHost):\(adminPort ?? config.adminPort)"
        }
        let telnet = config.telnetPorts == .off ? "per-VM telnet ports off"
            : "per-VM telnet ports (\(config.telnetPorts.rawValue)) on \(config.listenHost), range \(config.portRangeStart)-\(config.portRangeEnd)"
        logger.notice("admin endpoint on \(adminWhere); \(telnet)")
        try await startSSH()
        try await startCluster()
        if let endpoint = config.http {
            var services = httpServices()
            services.api = apiServices()
            services.web = WebConsole(driver: driver, publicBase: config.httpPublicURL, assets: config.webAssets,
                                      backlog: config.clientBufferLimit + config.scrollbackBytes)
            let listener = HTTPListener(metrics: metrics, services: services, allow: config.httpAllow, logger: logger)
            // A listener that cannot open throws a `ListenError` of its own.
            let port = try await listener.start(host: endpoint.host, port: endpoint.port, tls: config.httpTLS)
            httpListener = listener
            if config.httpTLS == nil, !Self.isLoopback(endpoint.host) {
                logger.warning("the HTTP listener on \(endpoint.host) is reachable beyond this host without TLS: API tokens and console logs cross the network in clear (give --http-cert and --http-key)")
            }
            let base = "\(config.httpTLS == nil ? "http" : "https")://\(Endpoint(host: endpoint.host, port: port))"
            // Console URLs (`vspc url`) start with this.
            let webBase = config.httpPublicURL?.text ?? base
            try await driver.loop.submit { driver.webBase = webBase }.get()
            if !FileManager.default.fileExists(atPath: URL(fileURLWithPath: config.webAssets).appendingPathComponent("xterm.js").path) {
                logger.warning("the browser console's terminal emulator is not in \(config.webAssets) (--web-assets): its page says which packages to install (node-xterm, esbuild) and how to bundle it")
            }
            logger.notice("HTTP on \(base): /metrics, /healthz, /readyz\(consoleLogReader != nil ? ", /console_log/<uuid>" : ""), /api/v1, /console/<token> (console URLs start \(webBase))")
        }
        let detail = "proxy \(config.proxyHost):\(proxyPort ?? 0)"
        try await driver.loop.submit { driver.handle(.started(detail: detail)) }.get()
    }

    /// Binds the admin Unix socket so that it is created with `mode` (local users in the daemon's group may use
    /// vspc; nobody else): the umask is set around the bind, so the socket never exists with a wider mode, and the
    /// mode is checked (and set again if needed) afterwards. Start-up stops when the mode cannot be made `mode`.
    static func bindPrivateSocket(_ bootstrap: ServerBootstrap, path: String, mode: mode_t) async throws -> Channel {
        let previous = umask(0o777 & ~mode)
        let channel: Channel
        do {
            channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
            umask(previous)
        } catch {
            umask(previous)
            throw ListenError("the admin socket \(path)", error)
        }
        var info = stat()
        var problem: String?
        if lstat(path, &info) != 0 {
            problem = String(cString: strerror(errno))
        } else if info.st_mode & 0o7777 != mode {
            if chmod(path, mode) != 0 {
                problem = "it has mode 0\(String(info.st_mode & 0o7777, radix: 8)) and chmod failed: \(String(cString: strerror(errno)))"
            } else if lstat(path, &info) != 0 || info.st_mode & 0o7777 != mode {
                problem = "it has mode 0\(String(info.st_mode & 0o7777, radix: 8)) after chmod"
            }
        }
        if let problem {
            try? await channel.close()
            throw ServerError("cannot give the admin socket \(path) mode 0\(String(mode, radix: 8)): \(problem); refusing to start")
        }
        return channel
    }

    /// Descriptors open in this process now (Linux: /proc/self/fd; elsewhere a conservative guess).
    static func openDescriptors() -> Int {
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            return max(0, entries.count - 1) // minus the descriptor of the directory listing itself
        }
        return 32
    }

    /// SIGHUP: the console log files are opened again by name (after logrotate moved them).
    public func reopenConsoleLogs() {
        for sink in outputSinks { sink.reopen() }
    }

    /// What the HTTP listener asks of the daemon.
    func httpServices() -> HTTPServices {
        let driver = self.driver
        let ready = self.ready
        let loop = driver.loop
        let store = self.store
        return HTTPServices(
            snapshot: { [weak self] in
                (try? await loop.submit {
                    var snapshot = driver.metricsSnapshot()
                    snapshot.cluster = self?.clusterStatistics()
                    snapshot.storeQueue = store.queuedWrites.map { StoreQueueStatistics(writes: $0, lagSeconds: store.oldestQueuedWriteAge ?? 0) }
                    return snapshot
                }.get()) ?? MetricsSnapshot()
            },
            healthy: {
                // The loop answers a no-op within two seconds, or it is stuck.
                let answered = loop.submit { true }
                return await withTaskGroup(of: Bool.self) { group in
                    group.addTask { (try? await answered.get()) ?? false }
                    group.addTask {
                        try? await Task.sleep(nanoseconds: 2_000_000_000)
                        return false
                    }
                    let first = await group.next() ?? false
                    group.cancelAll()
                    return first
                }
            },
            notReady: {
                if ready.withLockedValue({ $0 }) { return nil }
                guard let binding = try? await loop.submit({ driver.read { $0.listenersBinding } }).get() else {
                    return "not started"
                }
                guard binding == 0 else { return "binding the ports of \(binding) known VM serial ports" }
                ready.withLockedValue { $0 = true }
                return nil
            },
            knows: { key in (try? await loop.submit { driver.read { $0.knows(key) } }.get()) ?? false },
            consoleLog: consoleLogReader
        )
    }

    /// Graceful stop: closes the ports and connections, saves scrollback, commits everything queued.
    public func shutdown() async {
        let driver = self.driver
        try? await proxyChannel?.close()
        try? await adminChannel?.close()
        await stopSSH()
        await httpListener?.stop()
        await stopCluster()
        try? await driver.loop.submit { driver.shutdown() }.get()
        // Let the closes just started run to the end (their channelInactive events record the disconnects).
        try? await driver.loop.submit {}.get()
        let unsaved = (try? await driver.loop.submit { driver.read { $0.daemonStatus().unsaved ?? 0 } }.get()) ?? 0
        let lastWrite = LastWrite()
        store.enqueue([.event(ConsoleEvent(kind: .daemonStop, time: Date()))]) { lastWrite.set($0) }
        store.flush()
        // The consoles' last output goes to disk (off the loop: this waits for the writer).
        for sink in outputSinks { sink.close() }
        try? await group.shutdownGracefully()
        // Tell the truth about what the disk has.
        if let error = lastWrite.error {
            logger.error("stopped; the database did not take the last writes (\(error)): \(unsaved) VM serial port\(unsaved == 1 ? "" : "s") never saved (\(unsaved == 1 ? "it gets" : "they get") a port again on reconnect), recent events lost")
        } else if unsaved > 0 {
            logger.error("stopped; \(unsaved) VM serial port\(unsaved == 1 ? " was" : "s were") never saved (the database refused the write); every other record is committed")
        } else {
            logger.notice("stopped; all records committed")
        }
    }
}

public struct ServerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The outcome of the daemon's last write, seen from the writer's thread.
private final class LastWrite: @unchecked Sendable {
    private let lock = NSLock()
    private var failure: String?
    func set(_ error: Error?) {
        lock.lock()
        failure = error.map { "\($0)" }
        lock.unlock()
    }
    var error: String? {
        lock.lock()
        defer { lock.unlock() }
        return failure
    }
}
