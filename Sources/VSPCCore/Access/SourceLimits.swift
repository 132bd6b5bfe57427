/// OpenSSH's `MaxStartups` "start:rate:full": past `start` connections waiting to authenticate, a new one is
/// refused with probability `rate`% rising linearly to 100% at `full`; at `full` every new one is refused.
public struct MaxStartups: Sendable, Equatable, CustomStringConvertible {
    public var start: Int
    public var rate: Int
    public var full: Int

    public init(start: Int, rate: Int, full: Int) {
        self.start = start
        self.rate = rate
        self.full = full
    }

    /// `start:rate:full` (1 <= start <= full, 0 <= rate <= 100) or a single number (the global bound, no early
    /// drop); nil otherwise.
    public static func parse(_ text: String) -> MaxStartups? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.allSatisfy({ $0 != nil }) else { return nil }
        let values = parts.compactMap { $0 }
        switch values.count {
        case 1:
            guard values[0] >= 1, values[0] <= 1_000_000 else { return nil }
            return MaxStartups(start: values[0], rate: 100, full: values[0])
        case 3:
            guard values[0] >= 1, values[0] <= values[2], values[2] <= 1_000_000, (0...100).contains(values[1])
            else { return nil }
            return MaxStartups(start: values[0], rate: values[1], full: values[2])
        default:
            return nil
        }
    }

    /// The chance (0...1) that a new connection is refused while `waiting` connections wait to authenticate.
    public func dropProbability(waiting: Int) -> Double {
        if waiting >= full { return 1 }
        if waiting < start || full <= start { return 0 }
        let span = Double(full - start)
        return (Double(rate) + Double(100 - rate) * Double(waiting - start) / span) / 100
    }

    public var description: String { "\(start):\(rate):\(full)" }
}

/// Where connections come from, for per-source limits: an IPv4 address, or the /64 network of an IPv6 address (one
/// host commonly holds a whole /64). Connections whose address cannot be read share one source.
public struct SourceKey: Hashable, Sendable, CustomStringConvertible {
    let bytes: [UInt8]
    public let description: String

    public init(_ address: IPAddress?) {
        guard let address else {
            bytes = []
            description = "(unknown address)"
            return
        }
        if address.isIPv4 {
            bytes = address.bytes
            description = address.description
        } else {
            bytes = Array(address.bytes[0..<8])
            let network = bytes + [UInt8](repeating: 0, count: 8)
            description = (IPAddress(bytes16: network)?.description ?? address.description) + "/64"
        }
    }
}

extension IPAddress {
    /// The address with these 16 bytes (an IPv4 address as `::ffff:a.b.c.d`).
    init?(bytes16: [UInt8]) {
        guard bytes16.count == 16 else { return nil }
        let text = stride(from: 0, to: 16, by: 2)
            .map { String(UInt16(bytes16[$0]) << 8 | UInt16(bytes16[$0 + 1]), radix: 16) }
            .joined(separator: ":")
        self.init(text)
    }
}

/// The limits on connections that have not authenticated yet: a global bound with random early drop, a bound per
/// source, and a bound on failed attempts per source in a sliding window.
public struct SourceLimitSettings: Sendable, Equatable {
    public var startups = MaxStartups(start: 10, rate: 30, full: 64)
    /// Connections from one source that may wait to authenticate at once.
    public var perSourceStartups = 8
    /// Failed attempts (connections that tried to authenticate, or timed out, and ended without succeeding) one
    /// source may make in `failureWindow` seconds; past it the source's new connections are refused until the
    /// oldest failure leaves the window. 0: no limit.
    public var perSourceFailures = 10
    public var failureWindow: Double = 60
    /// Sources whose failures are remembered; when more fail at once, the one whose last failure is oldest is
    /// forgotten (the table stays bounded whatever the number of addresses).
    public var maxTrackedSources = 4096

    public init() {}
}

/// Why a new connection was refused.
public enum SourceRefusal: Sendable, Equatable {
    /// `startups.full` connections wait to authenticate.
    case full(limit: Int)
    /// Random early drop between `startups.start` and `startups.full`.
    case earlyDrop(waiting: Int)
    /// The source has `perSourceStartups` connections waiting to authenticate.
    case perSourceStartups(limit: Int)
    /// The source failed `perSourceFailures` times in the window.
    case perSourceFailures(limit: Int, window: Double)

    public var reason: String {
        switch self {
        case .full(let limit):
            return "\(limit) connections are waiting to authenticate"
        case .earlyDrop(let waiting):
            return "random early drop: \(waiting) connections are waiting to authenticate"
        case .perSourceStartups(let limit):
            return "\(limit) connections from this address are waiting to authenticate"
        case .perSourceFailures(let limit, let window):
            return "\(limit) failed attempts from this address in the last \(SettingValue.format(window)) s"
        }
    }
}

/// The bookkeeping behind `SourceLimitSettings`. Pure: the caller passes the time (seconds, any monotonic origin)
/// and a random number in 0..<1 for early drop.
public struct SourceAdmission: Sendable {
    public var settings: SourceLimitSettings
    public private(set) var waiting = 0
    private var waitingBySource: [SourceKey: Int] = [:]
    /// The times of each source's recent failures, oldest first, at most `perSourceFailures` of them.
    private var failures: [SourceKey: [Double]] = [:]

    public init(settings: SourceLimitSettings) {
        self.settings = settings
    }

    /// Connections from `source` waiting to authenticate now.
    public func waiting(from source: SourceKey) -> Int { waitingBySource[source] ?? 0 }

    /// Sources whose failures are remembered now.
    public var trackedSources: Int { failures.count }

    /// Decides on a new connection from `source`; when admitted, it counts as waiting until `authenticated` or
    /// `closed` is called for it.
    public mutating func admit(_ source: SourceKey, now: Double, random: Double) -> SourceRefusal? {
        if waiting >= settings.startups.full { return .full(limit: settings.startups.full) }
        if waiting(from: source) >= settings.perSourceStartups {
            return .perSourceStartups(limit: settings.perSourceStartups)
        }
        if settings.perSourceFailures > 0, recentFailures(source, now: now) >= settings.perSourceFailures {
            return .perSourceFailures(limit: settings.perSourceFailures, window: settings.failureWindow)
        }
        if random < settings.startups.dropProbability(waiting: waiting) { return .earlyDrop(waiting: waiting) }
        waiting += 1
        waitingBySource[source, default: 0] += 1
        return nil
    }

    /// An admitted connection authenticated: it no longer waits.
    public mutating func authenticated(_ source: SourceKey) {
        release(source)
    }

    /// An admitted connection closed. `waiting`: it had not authenticated; `failed`: it counts as a failed attempt.
    public mutating func closed(_ source: SourceKey, waiting stillWaiting: Bool, failed: Bool, now: Double) {
        if stillWaiting { release(source) }
        guard failed, settings.perSourceFailures > 0 else { return }
        var times = failures.removeValue(forKey: source) ?? []
        times.removeAll { $0 <= now - settings.failureWindow }
        times.append(now)
        if times.count > settings.perSourceFailures { times.removeFirst(times.count - settings.perSourceFailures) }
        if failures.count >= settings.maxTrackedSources { evict(now: now) }
        failures[source] = times
    }

    private mutating func release(_ source: SourceKey) {
        waiting = max(0, waiting - 1)
        let left = (waitingBySource[source] ?? 1) - 1
        waitingBySource[source] = left > 0 ? left : nil
    }

    private mutating func recentFailures(_ source: SourceKey, now: Double) -> Int {
        guard var times = failures[source] else { return 0 }
        times.removeAll { $0 <= now - settings.failureWindow }
        failures[source] = times.isEmpty ? nil : times
        return times.count
    }

    /// Forgets sources with no failure in the window, or else the one whose last failure is oldest.
    private mutating func evict(now: Double) {
        let cutoff = now - settings.failureWindow
        let stale = failures.filter { ($0.value.last ?? cutoff) <= cutoff }.map(\.key)
        if !stale.isEmpty {
            stale.forEach { failures[$0] = nil }
            return
        }
        if let oldest = failures.min(by: { ($0.value.last ?? 0) < ($1.value.last ?? 0) })?.key {
            failures[oldest] = nil
        }
    }
}

/// Refusals logged at most once a minute per source, and never a flood: the first refusal of a source is logged
/// with its reason, and that source's next ones within `interval` are only counted; at most `capacity` sources are
/// logged one by one in any `interval`, the rest only counted. `tick` (call it every `interval`) gives one summary
/// line of what was counted and not logged.
public struct RefusalLog: Sendable {
    public let interval: Double
    public let capacity: Int
    /// Sources logged within the last `interval`: when, and how many refusals since were not logged.
    private var logged: [SourceKey: (at: Double, unlogged: Int)] = [:]
    private var unloggedOthers = 0

    public init(interval: Double = 60, capacity: Int = 32) {
        self.interval = interval
        self.capacity = capacity
    }

    /// The line to log for this refusal now, or nil when it is only counted.
    public mutating func refused(_ source: SourceKey, reason: String, now: Double, what: String = "connection")
        -> String? {
        if var entry = logged[source], entry.at > now - interval {
            entry.unlogged += 1
            logged[source] = entry
            return nil
        }
        if logged.count >= capacity { logged = logged.filter { $0.value.at > now - interval || $0.value.unlogged > 0 } }
        guard logged.count < capacity else {
            unloggedOthers += 1
            return nil
        }
        logged[source] = (now, 0)
        return "\(what) from \(source) refused: \(reason) (further refusals of this address are counted, "
            + "not logged, for \(SettingValue.format(interval)) s)"
    }

    /// A summary of the refusals counted and not logged since the last tick, or nil when there were none. Sources
    /// logged more than `interval` ago are forgotten.
    public mutating func tick(now: Double, what: String = "connections") -> String? {
        let counted = logged.filter { $0.value.unlogged > 0 }.sorted { $0.value.unlogged > $1.value.unlogged }
        let total = counted.reduce(0) { $0 + $1.value.unlogged } + unloggedOthers
        for (key, _) in counted { logged[key]?.unlogged = 0 }
        logged = logged.filter { $0.value.at > now - interval }
        defer { unloggedOthers = 0 }
        guard total > 0 else { return nil }
        var parts = counted.prefix(5).map { "\($0.key): \($0.value.unlogged)" }
        if counted.count > 5 { parts.append("\(counted.count - 5) more address(es)") }
        if unloggedOthers > 0 { parts.append("\(unloggedOthers) from addresses not logged one by one") }
        return "\(total) more \(what) refused in the last \(SettingValue.format(interval)) s (\(parts.joined(separator: ", ")))"
    }
}
