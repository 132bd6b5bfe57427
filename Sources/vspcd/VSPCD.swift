import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VSPCClient
import VSPCCore
import VSPCNet
import VSPCStore
#if canImport(Glibc)
import Glibc
#endif

@main
struct VSPCD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vspcd",
        abstract: "Virtual Serial Port Concentrator for VMware vSphere.",
        discussion: """
        ESXi hosts connect VMs' network serial ports ("Use Virtual Serial Port Concentrator", \
        telnet://HOST:6779) to the proxy port. Each VM serial port gets a stable TCP port on \
        --listen-host where people telnet in. Assignments and events are kept in the SQLite file --db.
        """)

    @Option(help: ArgumentHelp("Proxy address for ESXi, [host]:port.", valueName: "[host]:port"))
    var proxy = ":6779"

    @Option(help: ArgumentHelp("Admin endpoint (vspc list/tail), [host]:port.", valueName: "[host]:port"))
    var admin = "127.0.0.1:6780"

    @Option(help: ArgumentHelp("Serve Prometheus metrics at http://[host]:port/metrics (off by default; suggested 127.0.0.1:9779).", valueName: "[host]:port"))
    var metrics: String?

    @Option(help: "Address the per-VM telnet ports listen on.")
    var listenHost = "127.0.0.1"

    @Option(help: "First port of the per-VM range (outside Linux's ephemeral range 32768-60999).")
    var portRangeStart = 20000

    @Option(help: "Last port of the per-VM range.")
    var portRangeEnd = 32767

    @Option(help: "Seconds without VM and without client after which a VM's port returns to the pool.")
    var vmExpireTime: Double = 86400

    @Option(help: "SQLite database file.")
    var db = "vspcd.db"

    @Option(help: "Service URI accepted in ESXi's DO-PROXY (its ?port=LABEL suffix names a serial port).")
    var serviceUri = "vSPC.py"

    @Flag(help: "TLS on the proxy port (ESXi's telnets://). Needs --ssl-cert and --ssl-key.")
    var ssl = false

    @Option(help: "PEM certificate (chain) for --ssl.")
    var sslCert: String?

    @Option(help: "PEM private key for --ssl.")
    var sslKey: String?

    @Option(help: "Seconds a vMotion may take between GOAHEAD and COMPLETE before it is dropped.")
    var vmotionTimeout: Double = 30

    @Option(help: ArgumentHelp("Networks ESXi hosts may connect from (IPv4 and IPv6); others are closed before any negotiation. Default: anywhere.", valueName: "CIDR[,CIDR...]"))
    var proxyAllow: String?

    @Option(help: "Seconds a VM connection may leave what it is sent unread before it is closed.")
    var vmStuckTimeout: Double = 60

    @Option(help: "Seconds a console's connection has to answer a probe when another connection claims the same VM serial port.")
    var takeoverProbeTimeout: Double = 5

    @Option(help: "Scrollback kept per VM serial port, in bytes (0 = off).")
    var scrollback = 65536

    @Option(help: "Bytes of scrollback replayed to a telnet client when it attaches (0 = off).")
    var replay = 0

    @Option(help: "Keep events for this many days (0 = forever).")
    var eventMaxAgeDays: Double = 90

    @Option(help: "Keep at most this many events (0 = no limit).")
    var eventMaxCount = 1_000_000

    @Flag(name: [.short, .long], help: "Log connections and assignments (info level).")
    var verbose = false

    @Flag(name: [.short, .long], help: "Log everything, including protocol detail (debug level).")
    var debug = false

    func validate() throws {
        guard (1...65535).contains(portRangeStart), (1...65535).contains(portRangeEnd), portRangeStart <= portRangeEnd else {
            throw ValidationError("--port-range-start/--port-range-end must be ports with start <= end (got \(portRangeStart)-\(portRangeEnd))")
        }
        guard vmExpireTime > 0, vmExpireTime <= 100 * 365 * 86400 else {
            throw ValidationError("--vm-expire-time must be a number of seconds between 0 and 100 years")
        }
        guard vmotionTimeout > 0, vmotionTimeout <= 3600 else { throw ValidationError("--vmotion-timeout must be between 0 and 3600 seconds") }
        guard scrollback >= 0, scrollback <= 64 << 20 else { throw ValidationError("--scrollback must be between 0 and 64 MiB") }
        guard replay >= 0, replay <= scrollback else { throw ValidationError("--replay must be between 0 and --scrollback (\(scrollback))") }
        guard eventMaxAgeDays >= 0, eventMaxAgeDays <= 36500, eventMaxCount >= 0 else { throw ValidationError("event retention must not be negative") }
        if ssl, sslCert == nil || sslKey == nil {
            throw ValidationError("--ssl needs --ssl-cert PEM and --ssl-key PEM")
        }
        if !ssl, sslCert != nil || sslKey != nil {
            throw ValidationError("--ssl-cert/--ssl-key are only used with --ssl")
        }
        guard vmStuckTimeout > 0, vmStuckTimeout <= 86400 else { throw ValidationError("--vm-stuck-timeout must be between 0 and 86400 seconds") }
        guard takeoverProbeTimeout > 0, takeoverProbeTimeout <= 600 else { throw ValidationError("--takeover-probe-timeout must be between 0 and 600 seconds") }
        if let proxyAllow, case .failure(let error) = AddressAllowList.parse(proxyAllow) {
            throw ValidationError("--proxy-allow: \(error.message)")
        }
        guard !serviceUri.isEmpty, !serviceUri.contains("?") else { throw ValidationError("--service-uri must be a plain name such as vSPC.py") }
        for (flag, value) in [("--proxy", proxy), ("--admin", admin)] + (metrics.map { [("--metrics", $0)] } ?? []) {
            guard AdminClient.parseEndpoint(value, defaultHost: "0.0.0.0") != nil else {
                throw ValidationError("\(flag) must be [host]:port, got \(value.debugDescription)")
            }
        }
    }

    func run() async throws {
        let level: Logger.Level = debug ? .debug : (verbose ? .info : .notice)
        LoggingSystem.bootstrap { label in
            var handler = SyslogStyleHandler(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "vspcd")

        var config = DaemonConfig()
        let proxyEndpoint = AdminClient.parseEndpoint(proxy, defaultHost: "0.0.0.0")!
        let adminEndpoint = AdminClient.parseEndpoint(admin, defaultHost: "127.0.0.1")!
        (config.proxyHost, config.proxyPort) = proxyEndpoint
        (config.adminHost, config.adminPort) = adminEndpoint
        config.listenHost = listenHost
        config.portRangeStart = portRangeStart
        config.portRangeEnd = portRangeEnd
        config.vmExpireTime = vmExpireTime
        config.serviceURI = serviceUri
        config.vmotionTimeout = vmotionTimeout
        config.version = VSPCVersion.current
        config.metrics = metrics.flatMap { Endpoint.parse($0, defaultHost: "127.0.0.1") }
        config.vmStuckTimeout = vmStuckTimeout
        config.takeoverProbeTimeout = takeoverProbeTimeout
        if let proxyAllow, case .success(let list) = AddressAllowList.parse(proxyAllow) { config.proxyAllow = list }
        config.scrollbackBytes = scrollback
        config.replayBytes = replay
        config.retention = Retention(maxAge: eventMaxAgeDays > 0 ? eventMaxAgeDays * 86400 : nil,
                                     maxCount: eventMaxCount > 0 ? eventMaxCount : nil)
        if portRangeStart <= 60999 && portRangeEnd >= 32768 {
            logger.warning("the per-VM port range \(portRangeStart)-\(portRangeEnd) overlaps Linux's ephemeral range 32768-60999; outgoing connections may take VM ports")
        }
        config.descriptorLimit = raiseDescriptorLimit(logger: logger)

        if ssl, let sslCert, let sslKey {
            do {
                config.tls = try TLSSetup.makeServerContext(certificatePath: sslCert, keyPath: sslKey)
            } catch {
                logger.critical("\(error)")
                throw ExitCode(2)
            }
        }

        // One daemon per database, taken before the store opens; held until the process ends.
        let databaseLock: DatabaseLock
        do {
            databaseLock = try DatabaseLock(databasePath: db)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
        defer { databaseLock.release() }

        let store: Store
        do {
            store = try Store(path: db)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
        let saved: SavedState
        do {
            saved = try Self.loadSaved(store, scrollback: config.scrollbackBytes > 0)
        } catch {
            logger.critical("cannot read the database \(db): \(error)")
            throw ExitCode(2)
        }
        logger.notice("vspcd starting; database \(db)")
        let server = VSPCServer(config: config, store: store, logger: logger)
        let counters = server.metrics
        store.commitObserver = { seconds, failures in
            counters.storeCommit(seconds: seconds)
            if failures > 0 { counters.storeError() }
        }
        let service = DaemonService(server: server, saved: saved)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: service)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("\(error)")
            store.flush()
            throw ExitCode(1)
        }
    }

    /// The assignments and scrollback the daemon had when it stopped.
    static func loadSaved(_ store: Store, scrollback: Bool) throws -> SavedState {
        var saved = SavedState(assignments: try store.loadAssignments(), scrollback: [:])
        if scrollback {
            for s in try store.allScrollback() { saved.scrollback[ConsoleKey(uuid: s.uuid, label: s.label)] = s.data }
        }
        return saved
    }

    /// Raises the soft open-file limit to the hard one and returns the limit in force.
    func raiseDescriptorLimit(logger: Logger) -> Int {
        #if canImport(Glibc)
        var limit = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        guard getrlimit(resource, &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        let value = limit.rlim_cur > UInt(Int32.max) ? 1 << 20 : Int(limit.rlim_cur)
        logger.info("open-file limit \(value): room for about \((value - 64) / 2) VMs with their own ports")
        return value
        #else
        return 1024
        #endif
    }
}

struct DaemonService: Service {
    let server: VSPCServer
    let saved: SavedState

    func run() async throws {
        try await server.start(saved: saved)
        try? await gracefulShutdown()
        await server.shutdown()
    }
}

/// One line per message on stderr: `<priority>vspcd[pid]: LEVEL message key=value`. journald and syslog
/// read the `<N>` prefix as the priority.
struct SyslogStyleHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    static let pid = getpid()

    init(label: String) { self.label = label }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let level = event.level
        let priority: Int
        switch level {
        case .trace, .debug: priority = 7
        case .info: priority = 6
        case .notice: priority = 5
        case .warning: priority = 4
        case .error: priority = 3
        case .critical: priority = 2
        }
        var text = "<\(priority)>vspcd[\(Self.pid)]: \(level.rawValue.uppercased()) \(event.message)"
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        for (key, value) in all.sorted(by: { $0.key < $1.key }) { text += " \(key)=\(value)" }
        text += "\n"
        FileHandle.standardError.write(Data(text.utf8))
    }
}

