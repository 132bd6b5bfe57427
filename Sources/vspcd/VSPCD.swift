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
        """,
        version: VSPCVersion.current)

    // The options have no defaults here: nil means "not on the command line", so that a config file can give
    // the value. DaemonSettings holds the defaults: built-in default < config file < command line.
    @Option(help: ArgumentHelp("TOML file of settings, keys named as these flags (ssl = true); flags override it. SIGHUP re-reads it.", valueName: "path"), completion: .file())
    var config: String?

    @Option(help: ArgumentHelp("Proxy address for ESXi, [host]:port. \(def("proxy"))", valueName: "[host]:port"))
    var proxy: String?

    @Option(help: ArgumentHelp("Admin endpoint (vspc list/tail), [host]:port, or unix:PATH for a Unix socket (0660). \(def("admin"))", valueName: "[host]:port|unix:PATH"))
    var admin: String?

    @Option(help: "Address the per-VM telnet ports listen on. \(def("listen-host"))")
    var listenHost: String?

    @Option(help: "First port of the per-VM range (outside Linux's ephemeral range 32768-60999). \(def("port-range-start"))")
    var portRangeStart: Int?

    @Option(help: "Last port of the per-VM range. \(def("port-range-end"))")
    var portRangeEnd: Int?

    @Option(help: "Seconds without VM and without client after which a VM's port returns to the pool. \(def("vm-expire-time"))")
    var vmExpireTime: Double?

    @Option(help: "SQLite database file, or a postgresql:// URL shared by several daemons (a cluster). \(def("db"))", completion: .file())
    var db: String?

    @Option(help: "Service URI accepted in ESXi's DO-PROXY (its ?port=LABEL suffix names a serial port). \(def("service-uri"))")
    var serviceUri: String?

    @Flag(help: "TLS on the proxy port (ESXi's telnets://). Needs --ssl-cert and --ssl-key.")
    var ssl = false

    @Option(help: ArgumentHelp("PEM certificate (chain) for --ssl.", valueName: "pem"), completion: .file())
    var sslCert: String?

    @Option(help: ArgumentHelp("PEM private key for --ssl.", valueName: "pem"), completion: .file())
    var sslKey: String?

    @Option(help: "Seconds a vMotion may take between GOAHEAD and COMPLETE before it is dropped. \(def("vmotion-timeout"))")
    var vmotionTimeout: Double?

    @Option(help: ArgumentHelp("Networks ESXi hosts may connect from (IPv4 and IPv6); others are closed before any negotiation. Default: anywhere. SIGHUP applies a change.", valueName: "CIDR[,CIDR...]"))
    var proxyAllow: String?

    @Option(help: "Seconds a VM connection may leave what it is sent unread before it is closed. \(def("vm-stuck-timeout"))")
    var vmStuckTimeout: Double?

    @Option(help: "Seconds a console's connection has to answer a probe when another connection claims the same VM serial port. \(def("takeover-probe-timeout"))")
    var takeoverProbeTimeout: Double?

    @Option(help: ArgumentHelp("Bytes a reader on a byte-exact door (telnet ports, vspc tail -f) may fall behind before it is disconnected (recorded). \(def("disconnect-backlog"))", valueName: "bytes"))
    var disconnectBacklog: Int?

    @Option(help: ArgumentHelp("Bytes a reader on a door that shows notices (SSH) may fall behind; past it the oldest unsent bytes are skipped for that reader, with a marker. \(def("skip-backlog"))", valueName: "bytes"))
    var skipBacklog: Int?

    @Option(help: ArgumentHelp("Seconds a new proxy connection has to identify itself (ESXi takes milliseconds). \(def("identify-timeout"))", valueName: "seconds"))
    var identifyTimeout: Double?

    @Option(help: ArgumentHelp("Proxy connections not identified yet, in all; more are refused at once. \(def("proxy-max-unidentified"))", valueName: "n"))
    var proxyMaxUnidentified: Int?

    @Option(help: ArgumentHelp("Proxy connections not identified yet from one address; more are refused at once. \(def("proxy-max-unidentified-per-address"))", valueName: "n"))
    var proxyMaxUnidentifiedPerAddress: Int?

    @Option(help: ArgumentHelp("New port assignments one address may cause per minute; more are refused and recorded. \(def("new-ports-per-minute"))", valueName: "n"))
    var newPortsPerMinute: Int?

    @Option(help: ArgumentHelp("Percent of the port range kept for addresses that already own assignments. \(def("port-reserve-percent"))", valueName: "percent"))
    var portReservePercent: Int?

    @Option(help: ArgumentHelp("SSH front door for people, [host]:port (off by default; suggested :6781). `ssh -p 6781 VM@host` attaches to VM's console.", valueName: "[host]:port"))
    var ssh: String?

    @Option(help: ArgumentHelp("SSH host key (ed25519, created 0600 on first start). Default: ssh_host_ed25519_key beside the database.", valueName: "path"), completion: .file())
    var sshHostKey: String?

    @Option(help: ArgumentHelp("OpenSSH authorized_keys for --ssh (options vms=\"glob,...\" and read-only). Default: authorized_keys beside the database. Reloaded on SIGHUP and when it changes.", valueName: "path"), completion: .file())
    var sshAuthorizedKeys: String?

    @Option(help: ArgumentHelp("The per-VM telnet ports: read-write (as vSPC.py), read-only, or off. \(def("telnet-ports"))", valueName: "read-write|read-only|off"), completion: .list(["read-write", "read-only", "off"]))
    var telnetPorts: String?

    @Option(help: ArgumentHelp("The HTTP listener: /console_log/<uuid> (for OpenStack Nova), /metrics, /healthz, /readyz, the JSON API /api/v1 and the browser console of vspc url (off by default; suggested 127.0.0.1:9779; a bare :port is on loopback).", valueName: "[host]:port"))
    var http: String?

    @Option(help: ArgumentHelp("Who may use the HTTP listener: CIDR[,CIDR...], or any. \(def("http-allow"))", valueName: "cidr,..."))
    var httpAllow: String?

    @Option(help: ArgumentHelp("PEM certificate (chain): the HTTP listener speaks HTTPS only. Needs --http-key.", valueName: "pem"), completion: .file())
    var httpCert: String?

    @Option(help: ArgumentHelp("PEM private key for --http-cert.", valueName: "pem"), completion: .file())
    var httpKey: String?

    @Option(help: ArgumentHelp("PEM CA certificate(s): HTTPS clients must show a certificate it signed; its subject is the person in the API's audit.", valueName: "pem"), completion: .file())
    var httpClientCa: String?

    @Option(help: ArgumentHelp("The base of console URLs (vspc url) when vspcd sits behind a reverse proxy, e.g. https://vspc.example.com; its origin may open console WebSockets. Default: the --http listener's own address.", valueName: "url"))
    var httpPublicUrl: String?

    @Option(help: ArgumentHelp("Where the browser console's terminal emulator (xterm.js, bundled at install) is read from. \(def("web-assets"))", valueName: "dir"), completion: .directory)
    var webAssets: String?

    @Option(help: ArgumentHelp("The same as --http (kept for existing set-ups).", valueName: "[host]:port"))
    var metrics: String?

    @Option(help: ArgumentHelp("Where every byte each console printed is kept, one file per VM serial port named by its uuid (32 hex digits, as OpenStack Nova reads them), or off. Default: consoles/ beside the database.", valueName: "dir|off"), completion: .directory)
    var consoleLogDir: String?

    @Option(help: ArgumentHelp("A group that may read the console logs (files 0640, folder 0750); without it they are 0600 and 0700.", valueName: "group"))
    var consoleLogGroup: String?

    @Option(help: ArgumentHelp("A console log is rotated when it reaches this many bytes. \(def("console-log-max-bytes"))", valueName: "bytes"))
    var consoleLogMaxBytes: Int?

    @Option(help: ArgumentHelp("Rotated console logs kept per serial port (.1 newest). \(def("console-log-keep"))", valueName: "n"))
    var consoleLogKeep: Int?

    @Option(help: ArgumentHelp("Delete the logs of consoles silent for longer than this (0 = never). \(def("console-log-max-age-days"))", valueName: "days"))
    var consoleLogMaxAgeDays: Int?

    @Option(help: ArgumentHelp("A console line matching REGEX (POSIX extended, as grep -E) records a console-match event and counts in vspc_console_matches_total{pattern=NAME}. Repeatable.", valueName: "NAME=REGEX"))
    var watch: [String] = []

    @Option(help: "Scrollback kept per VM serial port, in bytes (0 = off). \(def("scrollback"))")
    var scrollback: Int?

    @Option(help: "Bytes of scrollback replayed to a telnet client when it attaches (0 = off). \(def("replay"))")
    var replay: Int?

    @Option(help: "Keep events for this many days (0 = forever). \(def("event-max-age-days"))")
    var eventMaxAgeDays: Double?

    @Option(help: "Keep at most this many events (0 = no limit). \(def("event-max-count"))")
    var eventMaxCount: Int?

    @Flag(name: [.short, .long], help: "Log connections and assignments (info level).")
    var verbose = false

    @Flag(name: [.short, .long], help: "Log everything, including protocol detail (debug level).")
    var debug = false

    @Option(help: ArgumentHelp("Log lines as text (with a syslog priority prefix, for journald) or json (one object per line). \(def("log-format"))", valueName: "text|json"), completion: .list(["text", "json"]))
    var logFormat: String?

    @Option(help: ArgumentHelp("SSH connections waiting to authenticate: past start, new ones are refused with probability rate% rising to 100% at full (OpenSSH's MaxStartups). \(def("ssh-max-startups"))", valueName: "start:rate:full"))
    var sshMaxStartups: String?

    @Option(help: ArgumentHelp("SSH connections one address (an IPv6 /64) may have waiting to authenticate. \(def("ssh-per-source-max-startups"))", valueName: "n"))
    var sshPerSourceMaxStartups: Int?

    @Option(help: ArgumentHelp("Failed SSH attempts one address (an IPv6 /64) may make in a minute before its new connections are refused (0 = no limit). \(def("ssh-per-source-max-failures"))", valueName: "n"))
    var sshPerSourceMaxFailures: Int?

    @Option(help: ArgumentHelp("Seconds an SSH session may see neither input nor output before it is ended with a notice (0 = never). \(def("ssh-idle-timeout"))", valueName: "seconds"))
    var sshIdleTimeout: Double?

    @Option(help: ArgumentHelp("Seconds between keepalives to an SSH client (0 = none). \(def("ssh-keepalive-interval"))", valueName: "seconds"))
    var sshKeepaliveInterval: Double?

    @Option(help: ArgumentHelp("Keepalives in a row an SSH client may leave unanswered before it is dropped. \(def("ssh-keepalive-count-max"))", valueName: "n"))
    var sshKeepaliveCountMax: Int?

    @Option(help: ArgumentHelp("This daemon's name among the daemons sharing a PostgreSQL --db. Default: the host name.", valueName: "name"))
    var node: String?

    @Option(help: ArgumentHelp("Seconds after its last heartbeat that a daemon of a cluster is dead and its consoles go to the others. \(def("lease-timeout"))", valueName: "seconds"))
    var leaseTimeout: Double?

    @Option(help: ArgumentHelp("The internal link between the daemons of a cluster, [host]:port. Default: the --listen-host host, port 6782. In the clear only on loopback; elsewhere give --cluster-cert, --cluster-key and --cluster-ca.", valueName: "[host]:port"))
    var clusterListen: String?

    @Option(help: ArgumentHelp("PEM certificate (chain) of this daemon on the cluster link (TLS 1.2+, mutual). Needs --cluster-key and --cluster-ca.", valueName: "pem"), completion: .file())
    var clusterCert: String?

    @Option(help: ArgumentHelp("PEM private key for --cluster-cert.", valueName: "pem"), completion: .file())
    var clusterKey: String?

    @Option(help: ArgumentHelp("PEM CA certificate(s) that signed every daemon's --cluster-cert: both ends of the link must show one.", valueName: "pem"), completion: .file())
    var clusterCa: String?

    @Flag(help: ArgumentHelp("Print every setting that has a default, as `key = value` lines of TOML, and exit (contrib/update-sample-config.sh writes them into the sample config).", visibility: .hidden))
    var printDefaults = false

    func run() async throws {
        if printDefaults {
            DaemonSettings.defaultLines.forEach { print($0) }
            return
        }
        // A closed stderr or a vanished peer must not kill the daemon; write errors are handled where they occur.
        signal(SIGPIPE, SIG_IGN)
        let resolved: ResolvedSettings
        do {
            resolved = try Self.loadSettings(configPath: self.config, commandLine: commandLineSettings)
        } catch let error as SettingsError {
            FileHandle.standardError.write(Data("vspcd: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let settings = resolved.settings
        let logControl = LogControl(format: LogFormat(rawValue: settings.logFormat) ?? .text, level: settings.verbosity.loggerLevel)
        logControl.bootstrap()
        defer { logControl.writer.flush(timeout: 2) }
        let logger = Logger(label: "vspcd")
        // Installed before anything listens, so a SIGHUP from then on reloads instead of killing the daemon.
        let reloader = ConfigReloader(configPath: self.config, commandLine: commandLineSettings, running: settings,
                                      logControl: logControl, logger: logger)

        var config = DaemonConfig()
        let proxy = Endpoint.parse(settings.proxy, defaultHost: "0.0.0.0")! // checked by loadSettings
        (config.proxyHost, config.proxyPort) = (proxy.host, proxy.port)
        switch AdminEndpoint.parse(settings.admin, defaultHost: "127.0.0.1")! {
        case .tcp(let e): (config.adminHost, config.adminPort) = (e.host, e.port)
        case .unix(let path):
            config.adminUnixPath = path
            if let problem = Self.adminSocketFolderProblem(path) { logger.critical("\(problem)"); throw ExitCode(2) }
        }
        // With a PostgreSQL URL there is no database folder: the working directory takes its place.
        let beside = Self.isClusterDatabase(settings.db) ? "" : (settings.db as NSString).deletingLastPathComponent
        func besideDB(_ name: String) -> String { beside.isEmpty ? name : (beside as NSString).appendingPathComponent(name) }
        config.ssh = settings.ssh.flatMap { Endpoint.parse($0, defaultHost: "0.0.0.0") }
        config.sshHostKeyPath = settings.sshHostKey ?? besideDB("ssh_host_ed25519_key")
        config.sshAuthorizedKeysPath = settings.sshAuthorizedKeys ?? besideDB("authorized_keys")
        config.telnetPorts = TelnetPortsMode(rawValue: settings.telnetPorts) ?? .readWrite
        config.listenHost = settings.listenHost
        config.portRangeStart = settings.portRangeStart
        config.portRangeEnd = settings.portRangeEnd
        config.vmExpireTime = settings.vmExpireTime
        config.serviceURI = settings.serviceUri
        config.vmotionTimeout = settings.vmotionTimeout
        config.scrollbackBytes = settings.scrollback
        config.replayBytes = settings.replay
        config.retention = settings.reloadable.retention
        config.vmStuckTimeout = settings.vmStuckTimeout
        config.takeoverProbeTimeout = settings.takeoverProbeTimeout
        config.clientBufferLimit = settings.disconnectBacklog
        config.skipBacklog = settings.skipBacklog
        config.concentrator.identifyTimeout = settings.identifyTimeout
        config.concentrator.maxUnidentified = settings.proxyMaxUnidentified
        config.concentrator.maxUnidentifiedPerAddress = settings.proxyMaxUnidentifiedPerAddress
        config.concentrator.newAssignmentsPerMinute = settings.newPortsPerMinute
        config.concentrator.portReserveFraction = Double(settings.portReservePercent) / 100
        config.proxyAllow = Self.allowList(settings.proxyAllow)
        config.http = (settings.http ?? settings.metrics).flatMap { Endpoint.parse($0, defaultHost: "127.0.0.1") }
        config.httpAllow = Self.allowList(settings.httpAllow)
        config.httpPublicURL = settings.httpPublicURL.flatMap(WebOrigin.parseBase)
        config.webAssets = settings.webAssets
        config.watchPatterns = settings.watch.compactMap { WatchPattern.parse($0).pattern }
        do {
            config.consoleLogs = try Self.consoleLogSettings(settings, besideDB: besideDB)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
        config.concentrator.keepsOutput = config.consoleLogs != nil || !config.watchPatterns.isEmpty
        config.version = VSPCVersion.current
        if let startups = MaxStartups.parse(settings.sshMaxStartups) { config.sshSourceLimits.startups = startups }
        config.sshSourceLimits.perSourceStartups = settings.sshPerSourceMaxStartups
        config.sshSourceLimits.perSourceFailures = settings.sshPerSourceMaxFailures
        config.sshIdleTimeout = settings.sshIdleTimeout
        config.sshKeepaliveInterval = settings.sshKeepaliveInterval
        config.sshKeepaliveCountMax = settings.sshKeepaliveCountMax
        config.concentrator.timeZone = TimeZone.current
        if config.portRangeStart <= 60999 && config.portRangeEnd >= 32768 {
            logger.warning("the per-VM port range \(config.portRangeStart)-\(config.portRangeEnd) overlaps Linux's ephemeral range 32768-60999; outgoing connections may take VM ports")
        }
        config.descriptorLimit = raiseDescriptorLimit(logger: logger)

        if let cert = settings.httpCert, let key = settings.httpKey {
            do {
                config.httpTLS = try TLSSetup.makeServerContext(certificatePath: cert, keyPath: key,
                                                                clientCAPath: settings.httpClientCa, minimumVersion: .tlsv12)
            } catch {
                logger.critical("--http-cert: \(error)")
                throw ExitCode(2)
            }
        }
        if settings.ssl, let sslCert = settings.sslCert, let sslKey = settings.sslKey {
            do {
                config.tls = try TLSSetup.makeServerContext(certificatePath: sslCert, keyPath: sslKey)
            } catch {
                logger.critical("\(error)")
                throw ExitCode(2)
            }
        }

        if Self.isClusterDatabase(settings.db) {
            do {
                try Self.configureCluster(settings, &config)
            } catch {
                logger.critical("\(error)")
                throw ExitCode(2)
            }
        }

        // One daemon per database: the backend takes its lock before it opens, and holds it until `close()`.
        let store: any RecordBackend
        let saved: SavedState
        do {
            store = try RecordBackends.openForDaemon(settings.db, node: config.concentrator.cluster?.node)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
        defer { store.close() }
        do {
            saved = try Self.loadSaved(store, scrollback: config.scrollbackBytes > 0)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
        var clusterRecords: (any ClusterRecords)?
        if let cluster = config.concentrator.cluster {
            do {
                clusterRecords = try RecordBackends.openCluster(settings.db, node: cluster.node)
            } catch {
                logger.critical("\(error)")
                throw ExitCode(2)
            }
        }
        let nodeText = config.concentrator.cluster.map { "; cluster node \($0.node), link \($0.linkAddress)" } ?? ""
        logger.notice("vspcd \(VSPCVersion.current) starting; database \(Self.loggable(settings.db))\(nodeText)\(self.config.map { "; config \($0)" } ?? "")")
        let consoleLogs: ConsoleLogWriter?
        do {
            consoleLogs = try config.consoleLogs.map { try ConsoleLogWriter(settings: $0, logger: logger) }
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
        if let logs = config.consoleLogs { logger.notice("console logs in \(logs.directory)") }
        let reader = config.consoleLogs.map { ConsoleLogReader(directory: $0.directory) }
        let server = VSPCServer(config: config, store: store, logger: logger, consoleLogs: consoleLogs,
                                consoleLogReader: reader.map { reader in { @Sendable key, bytes in try reader.tail(key, bytes: bytes) } })
        server.clusterRecords = clusterRecords
        server.consoleLogWindow = reader.map { reader in
            { @Sendable key, since, until, limit in try Self.readLog(reader, key, since: since, until: until, limit: limit) }
        }
        let counters = server.metrics
        store.commitObserver = { seconds, failures in
            counters.storeCommit(seconds: seconds)
            if failures > 0 { counters.storeError() }
        }
        let logsReopened = consoleLogs != nil
        reloader.onHangUp = {
            server.reloadAuthorizedKeys()
            server.reopenConsoleLogs()
            if logsReopened { logger.notice("SIGHUP: the console log files are reopened by name") }
        }
        reloader.onReload = { live in
            server.reconfigure(vmExpireTime: live.vmExpireTime, retention: live.retention,
                               proxyAllow: Self.allowList(live.proxyAllow))
        }
        let service = DaemonService(server: server, saved: saved, notifier: SystemdNotifier(), logger: logger)
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

    /// `--proxy-allow`, already checked by the settings.
    static func allowList(_ text: String?) -> AddressAllowList {
        guard let text, case .success(let list) = AddressAllowList.parse(text) else { return AddressAllowList() }
        return list
    }

    /// The assignments and scrollback the daemon had when it stopped.
    static func loadSaved(_ store: any StartupRecords, scrollback: Bool) throws -> SavedState {
        var saved = SavedState(assignments: try store.loadAssignments(), scrollback: [:], tokens: try store.loadTokens())
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
