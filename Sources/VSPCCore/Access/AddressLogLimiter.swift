/// Decides which refusals get a log line: each address at most once a minute, and at most `perMinute`
/// addresses a minute in all; the rest are counted, and the count comes back once, with the first refusal of
/// the next minute, for one summary line. Memory is bounded by `perMinute` whatever the number of addresses, and
/// forgetting is by the minute, so no pattern of addresses turns it into a flood of lines.
public struct AddressLogLimiter: Sendable {
    public let perMinute: Int
    private var windowStart = Int64.min
    /// Addresses logged this minute; nil stands for peers whose address could not be read (one key for all).
    private var logged: Set<IPAddress?> = []
    private var suppressed = 0

    public init(perMinute: Int = 64) { self.perMinute = max(1, perMinute) }

    public struct Decision: Equatable, Sendable {
        /// Log this refusal.
        public var log: Bool
        /// Refusals left out in the minute that just ended, to report before this one.
        public var suppressedBefore: Int
    }

    /// One refusal from `address` (nil: unreadable) at `now` (monotonic nanoseconds).
    public mutating func refusal(from address: IPAddress?, now: Int64) -> Decision {
        var before = 0
        if windowStart == .min || now - windowStart >= 60_000_000_000 {
            before = suppressed
            windowStart = now
            logged = []
            suppressed = 0
        }
        if !logged.contains(address), logged.count < perMinute {
            logged.insert(address)
            return Decision(log: true, suppressedBefore: before)
        }
        suppressed += 1
        return Decision(log: false, suppressedBefore: before)
    }
}
