/// How much the daemon logs: notice and worse by default, info with `verbose`, everything with `debug`.
public enum LogVerbosity: String, Equatable, Sendable {
    case notice, info, debug
}

/// What SIGHUP can change in the running daemon. The lead's server takes `vmExpireTime` and the retention;
/// the log handler takes `verbosity`.
public struct ReloadableSettings: Equatable, Sendable {
    public var verbosity: LogVerbosity
    /// Seconds without VM and without client after which an assignment expires.
    public var vmExpireTime: Double
    /// Event retention: days (0 = forever) and count (0 = no limit).
    public var eventMaxAgeDays: Double
    public var eventMaxCount: Int
    /// `--proxy-allow` (nil: anywhere).
    public var proxyAllow: String?

    public init(verbosity: LogVerbosity, vmExpireTime: Double, eventMaxAgeDays: Double, eventMaxCount: Int,
                proxyAllow: String? = nil) {
        self.proxyAllow = proxyAllow
        self.verbosity = verbosity
        self.vmExpireTime = vmExpireTime
        self.eventMaxAgeDays = eventMaxAgeDays
        self.eventMaxCount = eventMaxCount
    }

    /// Retention as seconds and count, nil meaning unlimited (what `Retention(maxAge:maxCount:)` takes).
    public var retentionMaxAgeSeconds: Double? { eventMaxAgeDays > 0 ? eventMaxAgeDays * 86400 : nil }
    public var retentionMaxCount: Int? { eventMaxCount > 0 ? eventMaxCount : nil }
}

extension DaemonSettings {
    public var verbosity: LogVerbosity { debug ? .debug : (verbose ? .info : .notice) }

    public var reloadable: ReloadableSettings {
        ReloadableSettings(verbosity: verbosity, vmExpireTime: vmExpireTime,
                           eventMaxAgeDays: eventMaxAgeDays, eventMaxCount: eventMaxCount, proxyAllow: proxyAllow)
    }

    /// What a reload does, going from the `running` settings to the `reloaded` ones (file re-read, same
    /// command line): the live keys that changed take effect; the others that changed are named as needing
    /// a restart and keep their running value.
    public static func planReload(running: DaemonSettings, reloaded: DaemonSettings) -> ReloadPlan {
        var plan = ReloadPlan(changes: [], needsRestart: [], settings: running)
        for key in keys {
            let old = key.get(running), new = key.get(reloaded)
            guard old != new else { continue }
            if key.live {
                // What is in force after the reload, unset included: a key removed from the file goes back to
                // its default, and the log line says so truthfully.
                plan.changes.append(SettingChange(key: key.name, old: old, new: new))
                key.copy(&plan.settings, reloaded)
            } else {
                plan.needsRestart.append(key.name)
            }
        }
        return plan
    }
}

public struct SettingChange: Equatable, Sendable, CustomStringConvertible {
    public var key: String
    public var old: SettingValue?
    public var new: SettingValue?

    public init(key: String, old: SettingValue?, new: SettingValue?) {
        self.key = key
        self.old = old
        self.new = new
    }

    public var description: String {
        "\(key) \(old?.description ?? "(unset)") -> \(new?.description ?? "(unset)")"
    }
}

/// The outcome of a SIGHUP: `settings` are the ones now in force.
public struct ReloadPlan: Equatable, Sendable {
    public var changes: [SettingChange]
    public var needsRestart: [String]
    public var settings: DaemonSettings

    /// True when something the running daemon uses changed.
    public var changesLive: Bool { !changes.isEmpty }

    /// One log line: `reloaded: verbose false -> true; needs a restart: proxy`.
    public var summary: String {
        var text = "reloaded: " + (changes.isEmpty ? "no change" : changes.map(\.description).joined(separator: ", "))
        if !needsRestart.isEmpty { text += "; needs a restart: " + needsRestart.joined(separator: ", ") }
        return text
    }
}
