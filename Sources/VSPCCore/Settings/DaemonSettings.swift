/// Every setting of vspcd, by its long flag name, with its built-in default. The command line and the config
/// file (`--config`, TOML, the same names as keys) fill it in; see `DaemonSettings.resolve`.
public struct DaemonSettings: Equatable, Sendable {
    public var proxy = ":6779"
    public var admin = "127.0.0.1:6780"
    public var listenHost = ConcentratorConfig.defaults.listenHost
    public var portRangeStart = ConcentratorConfig.defaults.portRange.lowerBound
    public var portRangeEnd = ConcentratorConfig.defaults.portRange.upperBound
    public var vmExpireTime = ConcentratorConfig.defaults.vmExpireTime
    public var db = "vspcd.db"
    public var serviceUri = ConcentratorConfig.defaults.serviceURI
    public var ssl = false
    public var sslCert: String?
    public var sslKey: String?
    public var vmotionTimeout = ConcentratorConfig.defaults.vmotionTimeout
    public var scrollback = ConcentratorConfig.defaults.scrollbackBytes
    public var replay = ConcentratorConfig.defaults.replayBytes
    public var eventMaxAgeDays = (ConcentratorConfig.defaults.retention.maxAge ?? 0) / 86400
    public var eventMaxCount = ConcentratorConfig.defaults.retention.maxCount ?? 0
    public var verbose = false
    public var debug = false
    public var logFormat = "text"
    public var proxyAllow: String?
    public var vmStuckTimeout = ConcentratorConfig.defaults.vmStuckTimeout
    public var takeoverProbeTimeout = ConcentratorConfig.defaults.takeoverProbeTimeout
    public var metrics: String?
    public var ssh: String?
    public var sshHostKey: String?
    public var sshAuthorizedKeys: String?
    public var telnetPorts = ConcentratorConfig.defaults.telnetPorts.rawValue
    public var disconnectBacklog = Door.defaultBacklog
    public var skipBacklog = Door.defaultBacklog
    public var identifyTimeout = ConcentratorConfig.defaults.identifyTimeout
    public var proxyMaxUnidentified = ConcentratorConfig.defaults.maxUnidentified
    public var proxyMaxUnidentifiedPerAddress = ConcentratorConfig.defaults.maxUnidentifiedPerAddress
    public var newPortsPerMinute = ConcentratorConfig.defaults.newAssignmentsPerMinute
    public var portReservePercent = Int((ConcentratorConfig.defaults.portReserveFraction * 100).rounded())
    public var sshMaxStartups = SourceLimitSettings().startups.description
    public var sshPerSourceMaxStartups = SourceLimitSettings().perSourceStartups
    public var sshPerSourceMaxFailures = SourceLimitSettings().perSourceFailures
    public var sshIdleTimeout: Double = 0
    public var sshKeepaliveInterval: Double = 15
    public var sshKeepaliveCountMax = 3
    /// `--console-log-dir`: nil means `consoles/` beside the database; "off" turns console logs off.
    public var consoleLogDir: String?
    public var consoleLogGroup: String?
    public var consoleLogMaxBytes = ConsoleLogSettings.defaultMaxBytes
    public var consoleLogKeep = ConsoleLogSettings.defaultKeep
    public var consoleLogMaxAgeDays = ConsoleLogSettings.defaultMaxAgeDays
    public var watch: [String] = []
    public var http: String?
    public var httpAllow = "127.0.0.0/8,::1"
    /// `--http-cert`, `--http-key`: HTTPS on the HTTP listener; `--http-client-ca`: client certificates required.
    public var httpCert: String?
    public var httpKey: String?
    public var httpClientCa: String?
    /// `--http-public-url`: the base of console URLs when vspcd sits behind a reverse proxy.
    public var httpPublicURL: String?
    /// `--web-assets`: where the browser console's terminal emulator is read from.
    public var webAssets = "/usr/local/share/vspcd/web"
    /// `--node`: this daemon's name in a cluster (`--db postgresql://...`); nil means the host name.
    public var node: String?
    /// `--lease-timeout`: seconds after its last heartbeat that a node is dead and its consoles ownerless.
    public var leaseTimeout: Double = 10
    /// `--cluster-listen`: the internal link between nodes; nil means the `--listen-host` host, port 6782.
    public var clusterListen: String?
    /// `--cluster-cert`, `--cluster-key`, `--cluster-ca`: mutual TLS on the internal link (all three or none).
    public var clusterCert: String?
    public var clusterKey: String?
    public var clusterCa: String?

    /// The internal link's port when `--cluster-listen` does not give one (6780 is the admin port).
    public static let defaultClusterPort = 6782

    public init() {}

    /// The keys, in the order the sample config and `--help` list them.
    public static let keys: [SettingKey] = [
        .string("proxy", \.proxy, check: nonEmpty),
        .string("admin", \.admin, check: nonEmpty),
        .string("listen-host", \.listenHost, check: nonEmpty),
        .integer("port-range-start", \.portRangeStart, check: within(1...65535)),
        .integer("port-range-end", \.portRangeEnd, check: within(1...65535)),
        .number("vm-expire-time", \.vmExpireTime, live: true, check: positive(upTo: 100 * 365 * 86400, unit: "seconds")),
        .string("db", \.db, check: nonEmpty),
        .string("service-uri", \.serviceUri, check: serviceName),
        .bool("ssl", \.ssl),
        .optionalString("ssl-cert", \.sslCert),
        .optionalString("ssl-key", \.sslKey),
        .number("vmotion-timeout", \.vmotionTimeout, check: positive(upTo: 3600, unit: "seconds")),
        .integer("scrollback", \.scrollback, check: within(0...(64 << 20))),
        .integer("replay", \.replay, check: within(0...(64 << 20))),
        .number("event-max-age-days", \.eventMaxAgeDays, live: true, check: { $0 >= 0 && $0 <= 36500 ? nil : "must be between 0 and 36500 days" }),
        .integer("event-max-count", \.eventMaxCount, live: true, check: within(0...Int(Int32.max))),
        .bool("verbose", \.verbose, live: true),
        .bool("debug", \.debug, live: true),
        .string("log-format", \.logFormat, check: { ["text", "json"].contains($0) ? nil : "must be text or json" }),
        .optionalString("proxy-allow", \.proxyAllow, live: true, check: {
            if case .failure(let error) = AddressAllowList.parse($0) { return error.message }
            return nil
        }),
        .optionalString("http-public-url", \.httpPublicURL, check: { WebOrigin.parseBase($0) == nil ? "must be http://HOST[:PORT][/PATH] or https://..." : nil }),
        .string("web-assets", \.webAssets, check: nonEmpty),
        .number("vm-stuck-timeout", \.vmStuckTimeout, check: positive(upTo: 86400, unit: "seconds")),
        .number("takeover-probe-timeout", \.takeoverProbeTimeout, check: positive(upTo: 600, unit: "seconds")),
        .optionalString("metrics", \.metrics, check: {
            Endpoint.parse($0, defaultHost: "127.0.0.1") == nil ? "must be [host]:port" : nil
        }),
        .optionalString("ssh", \.ssh, check: {
            Endpoint.parse($0, defaultHost: "0.0.0.0") == nil ? "must be [host]:port" : nil
        }),
        .optionalString("ssh-host-key", \.sshHostKey),
        .optionalString("ssh-authorized-keys", \.sshAuthorizedKeys),
        .string("telnet-ports", \.telnetPorts, check: {
            TelnetPortsMode(rawValue: $0) == nil ? "must be read-write, read-only or off" : nil
        }),
        .integer("disconnect-backlog", \.disconnectBacklog, check: within((4 << 10)...(1 << 30))),
        .integer("skip-backlog", \.skipBacklog, check: within((4 << 10)...(1 << 30))),
        .number("identify-timeout", \.identifyTimeout, check: positive(upTo: 600, unit: "seconds")),
        .integer("proxy-max-unidentified", \.proxyMaxUnidentified, check: within(1...1_000_000)),
        .integer("proxy-max-unidentified-per-address", \.proxyMaxUnidentifiedPerAddress, check: within(1...1_000_000)),
        .integer("new-ports-per-minute", \.newPortsPerMinute, check: within(1...1_000_000)),
        .integer("port-reserve-percent", \.portReservePercent, check: within(0...90)),
        .string("ssh-max-startups", \.sshMaxStartups, check: {
            MaxStartups.parse($0) == nil ? "must be start:rate:full (1 <= start <= full, rate 0-100) or a number" : nil
        }),
        .integer("ssh-per-source-max-startups", \.sshPerSourceMaxStartups, check: within(1...100_000)),
        .integer("ssh-per-source-max-failures", \.sshPerSourceMaxFailures, check: within(0...1_000_000)),
        .number("ssh-idle-timeout", \.sshIdleTimeout, check: zeroOrPositive(upTo: 365 * 86400, unit: "seconds")),
        .number("ssh-keepalive-interval", \.sshKeepaliveInterval, check: zeroOrPositive(upTo: 3600, unit: "seconds")),
        .integer("ssh-keepalive-count-max", \.sshKeepaliveCountMax, check: within(1...100)),
        .optionalString("console-log-dir", \.consoleLogDir),
        .optionalString("console-log-group", \.consoleLogGroup),
        .integer("console-log-max-bytes", \.consoleLogMaxBytes, check: within(4096...(1 << 40))),
        .integer("console-log-keep", \.consoleLogKeep, check: within(0...1000)),
        .integer("console-log-max-age-days", \.consoleLogMaxAgeDays, check: within(0...36500)),
        .list("watch", \.watch, check: { WatchPattern.parse($0).problem }),
        .optionalString("http", \.http, check: {
            Endpoint.parse($0, defaultHost: "127.0.0.1") == nil ? "must be [host]:port" : nil
        }),
        .string("http-allow", \.httpAllow, check: {
            if case .failure(let error) = AddressAllowList.parse($0) { return error.message }
            return nil
        }),
        .optionalString("http-cert", \.httpCert),
        .optionalString("http-key", \.httpKey),
        .optionalString("http-client-ca", \.httpClientCa),
        .optionalString("node", \.node, check: {
            $0.count <= 128 && $0.unicodeScalars.allSatisfy({ $0.value > 32 && $0.value < 127 })
                ? nil : "must be at most 128 printable ASCII characters without spaces"
        }),
        .number("lease-timeout", \.leaseTimeout, check: positive(upTo: 3600, unit: "seconds")),
        .optionalString("cluster-listen", \.clusterListen, check: {
            Endpoint.parse($0, defaultHost: "127.0.0.1") == nil ? "must be [host]:port" : nil
        }),
        .optionalString("cluster-cert", \.clusterCert),
        .optionalString("cluster-key", \.clusterKey),
        .optionalString("cluster-ca", \.clusterCa),
    ]

    public static func key(named name: String) -> SettingKey? { keys.first { $0.name == name } }

    /// `key = value` in TOML for every key that has a default, in the order of `keys`: what the sample config's
    /// commented lines show (`vspcd --print-defaults`, used by contrib/update-sample-config.sh).
    public static var defaultLines: [String] {
        keys.compactMap { key in key.get(DaemonSettings()).map { "\(key.name) = \($0)" } }
    }

    /// A key's value here (nil for an unset optional).
    public func value(of key: String) -> SettingValue? { Self.key(named: key)?.get(self) }

    /// The default of a key as `--help` shows it.
    public static func defaultText(_ key: String) -> String {
        guard let value = DaemonSettings().value(of: key) else { return "none" }
        if case .string(let s) = value { return s }
        return value.description
    }

    // MARK: checks shared by keys

    static let nonEmpty: @Sendable (String) -> String? = { $0.isEmpty ? "must not be empty" : nil }

    static let serviceName: @Sendable (String) -> String? = {
        $0.isEmpty || $0.contains("?") ? "must be a plain name such as vSPC.py" : nil
    }

    static func within(_ range: ClosedRange<Int>) -> @Sendable (Int) -> String? {
        { range.contains($0) ? nil : "must be between \(range.lowerBound) and \(range.upperBound)" }
    }

    static func zeroOrPositive(upTo limit: Double, unit: String) -> @Sendable (Double) -> String? {
        { $0 >= 0 && $0 <= limit ? nil : "must be between 0 (off) and \(SettingValue.format(limit)) \(unit)" }
    }

    static func positive(upTo limit: Double, unit: String) -> @Sendable (Double) -> String? {
        { $0 > 0 && $0 <= limit ? nil : "must be more than 0 and at most \(SettingValue.format(limit)) \(unit)" }
    }
}

/// One setting: its name (the long flag and the config key), its type, whether SIGHUP applies it to the
/// running daemon (`live`) or it needs a restart, and its range check.
public struct SettingKey: Sendable {
    public let name: String
    public let kind: SettingKind
    public let live: Bool
    /// Takes this setting's value from other settings, unset included (a key removed from the file on a reload
    /// goes back to its default).
    let copy: @Sendable (inout DaemonSettings, DaemonSettings) -> Void
    let get: @Sendable (DaemonSettings) -> SettingValue?
    let set: @Sendable (inout DaemonSettings, SettingValue) -> Void
    let check: @Sendable (SettingValue) -> String?

    /// Checks and stores `value` (already of `kind`); returns the problem, e.g. "must be between 1 and 65535".
    func apply(_ value: SettingValue, to settings: inout DaemonSettings) -> String? {
        if let problem = check(value) { return problem }
        set(&settings, value)
        return nil
    }

    static func string(_ name: String, _ path: WritableKeyPath<DaemonSettings, String>, live: Bool = false,
                       check: @escaping @Sendable (String) -> String? = { _ in nil }) -> SettingKey {
        SettingKey(name: name, kind: .string, live: live, copy: { $0[keyPath: path] = $1[keyPath: path] }, get: { .string($0[keyPath: path]) },
                   set: { if case .string(let v) = $1 { $0[keyPath: path] = v } },
                   check: { if case .string(let v) = $0 { return check(v) }; return nil })
    }

    static func optionalString(_ name: String, _ path: WritableKeyPath<DaemonSettings, String?>, live: Bool = false,
                               check: @escaping @Sendable (String) -> String? = { _ in nil }) -> SettingKey {
        SettingKey(name: name, kind: .string, live: live, copy: { $0[keyPath: path] = $1[keyPath: path] }, get: { $0[keyPath: path].map { .string($0) } },
                   set: { if case .string(let v) = $1 { $0[keyPath: path] = v } },
                   check: {
                       guard case .string(let v) = $0 else { return nil }
                       return v.isEmpty ? "must not be empty" : check(v)
                   })
    }

    static func integer(_ name: String, _ path: WritableKeyPath<DaemonSettings, Int>, live: Bool = false,
                        check: @escaping @Sendable (Int) -> String? = { _ in nil }) -> SettingKey {
        SettingKey(name: name, kind: .integer, live: live, copy: { $0[keyPath: path] = $1[keyPath: path] }, get: { .integer($0[keyPath: path]) },
                   set: { if case .integer(let v) = $1 { $0[keyPath: path] = v } },
                   check: { if case .integer(let v) = $0 { return check(v) }; return nil })
    }

    static func number(_ name: String, _ path: WritableKeyPath<DaemonSettings, Double>, live: Bool = false,
                       check: @escaping @Sendable (Double) -> String? = { _ in nil }) -> SettingKey {
        SettingKey(name: name, kind: .number, live: live, copy: { $0[keyPath: path] = $1[keyPath: path] }, get: { .number($0[keyPath: path]) },
                   set: { if case .number(let v) = $1 { $0[keyPath: path] = v } },
                   check: { if case .number(let v) = $0 { return v.isFinite ? check(v) : "must be a finite number" }; return nil })
    }

    static func list(_ name: String, _ path: WritableKeyPath<DaemonSettings, [String]>, live: Bool = false,
                     check: @escaping @Sendable (String) -> String? = { _ in nil }) -> SettingKey {
        SettingKey(name: name, kind: .list, live: live, copy: { $0[keyPath: path] = $1[keyPath: path] }, get: { .list($0[keyPath: path]) },
                   set: { if case .list(let v) = $1 { $0[keyPath: path] = v } },
                   check: {
                       guard case .list(let items) = $0 else { return nil }
                       for item in items { if let problem = check(item) { return problem } }
                       return nil
                   })
    }

    static func bool(_ name: String, _ path: WritableKeyPath<DaemonSettings, Bool>, live: Bool = false) -> SettingKey {
        SettingKey(name: name, kind: .boolean, live: live, copy: { $0[keyPath: path] = $1[keyPath: path] }, get: { .bool($0[keyPath: path]) },
                   set: { if case .bool(let v) = $1 { $0[keyPath: path] = v } },
                   check: { _ in nil })
    }
}
