import Foundation

/// The one-time console URLs (`vspc url`), in memory: a restart forgets them. Pure: the driver makes the token
/// and its SHA-256, and gives only the hash (hex) here, with the time (monotonic nanoseconds).
///
/// A token opens one browser session. Opening its page the first time binds it to a cookie the driver sets;
/// its WebSocket is accepted only with that cookie, once at a time. When the session closes, the same browser
/// (the same cookie) may take it again for a minute (a reload); any other request is refused, before the
/// upgrade. A token is good until its time to live runs out, for one console and one mode.
public struct ConsoleTokens: Sendable {
    /// What a token lets in.
    public struct Grant: Sendable, Equatable {
        /// Names the token in records and logs (never the token): the first 12 hex digits of its hash.
        public var id: String
        public var console: ConsoleKey
        public var mode: AccessMode
        /// Who minted it: `uid 1000 (alice)` or `admin-tcp 127.0.0.1:41234`.
        public var minter: String
        public init(id: String, console: ConsoleKey, mode: AccessMode, minter: String) {
            self.id = id
            self.console = console
            self.mode = mode
            self.minter = minter
        }
    }

    /// Why a request with a token is refused.
    public enum Refusal: Error, Equatable, Sendable {
        /// No such token (never minted, or forgotten by a restart or a sweep).
        case unknown
        /// Its time to live is over.
        case expired
        /// Opened by another browser, or its session is over.
        case used
        /// Its session is open now (a second WebSocket).
        case inUse
        /// This address failed too many tokens, or asked too often, this minute.
        case limited
        /// The table is full (`maxTokens` live tokens).
        case full

        /// The HTTP status and the sentence for the browser.
        public var status: Int {
            switch self {
            case .unknown: return 404
            case .expired, .used: return 410
            case .inUse: return 409
            case .limited: return 429
            case .full: return 503
            }
        }

        public var message: String {
            switch self {
            case .unknown: return "no such console link"
            case .expired: return "this console link has expired; ask for a new one (vspc url)"
            case .used: return "this console link was already used; ask for a new one (vspc url)"
            case .inUse: return "this console link is open in another window"
            case .limited: return "too many requests from this address; wait a minute"
            case .full: return "too many console links are open"
            }
        }
    }

    enum Phase: Sendable, Equatable {
        /// Minted, never opened.
        case fresh
        /// Its page was opened by the browser holding this cookie (hash).
        case opened(cookie: String)
        /// Its WebSocket is open.
        case live(cookie: String)
        /// Its WebSocket closed at this time: the same browser may take it again within `grace`.
        case released(cookie: String, at: Int64)
    }

    struct Entry: Sendable {
        var grant: Grant
        var expires: Int64
        var phase: Phase
    }

    struct Budget: Sendable {
        var windowStart: Int64
        var count: Int
    }

    public static let maxTokens = 10_000
    /// How long a closed session may be taken again by its own browser (a reload).
    public static let grace: Int64 = 60_000_000_000
    /// Failed tokens an address may present a minute before it is refused outright (429).
    public static let failuresPerMinute = 10
    /// Page loads and WebSocket upgrades an address may make a minute.
    public static let requestsPerMinute = 60
    /// The longest time to live a token may have, in seconds (a day).
    public static let maxTTL = 86_400

    var entries: [String: Entry] = [:]
    var failures: [String: Budget] = [:]
    var requests: [String: Budget] = [:]

    public init() {}

    /// Live tokens (expired ones count until swept).
    public var count: Int { entries.count }

    /// A new token; `.full` when `maxTokens` are live even after a sweep.
    public mutating func mint(hash: String, console: ConsoleKey, mode: AccessMode, ttl: Int, minter: String,
                              now: Int64) -> Result<Grant, Refusal> {
        if entries.count >= Self.maxTokens { sweep(now: now, keepExpired: 0) }
        guard entries.count < Self.maxTokens else { return .failure(.full) }
        let grant = Grant(id: APIToken.id(ofHash: hash), console: console, mode: mode, minter: minter)
        let seconds = Int64(min(max(ttl, 1), Self.maxTTL))
        entries[hash] = Entry(grant: grant, expires: now + seconds * 1_000_000_000, phase: .fresh)
        return .success(grant)
    }

    /// `GET /console/<token>`: the page. A fresh token is bound to `newCookie` (the driver then sets it);
    /// `setCookie` says whether it was. The browser that opened it may load the page again.
    public mutating func open(hash: String, cookie: String?, newCookie: String, address: String,
                              now: Int64) -> Result<(grant: Grant, setCookie: Bool), Refusal> {
        guard admit(address, now: now) else { return .failure(.limited) }
        switch lookup(hash, address: address, now: now) {
        case .failure(let refusal):
            return .failure(refusal)
        case .success(let entry):
            switch entry.phase {
            case .fresh:
                entries[hash]?.phase = .opened(cookie: newCookie)
                return .success((entry.grant, true))
            case .opened(let owner), .live(let owner):
                return owner == cookie ? .success((entry.grant, false)) : refuse(.used, address, now)
            case let .released(owner, at):
                return owner == cookie && now - at < Self.grace ? .success((entry.grant, false)) : refuse(.used, address, now)
            }
        }
    }

    /// The WebSocket upgrade: the session is taken (refused while it is open elsewhere, or for another browser).
    public mutating func claim(hash: String, cookie: String?, address: String, now: Int64) -> Result<Grant, Refusal> {
        guard admit(address, now: now) else { return .failure(.limited) }
        switch lookup(hash, address: address, now: now) {
        case .failure(let refusal):
            return .failure(refusal)
        case .success(let entry):
            switch entry.phase {
            case .fresh:
                return refuse(.used, address, now)
            case .opened(let owner):
                guard owner == cookie else { return refuse(.used, address, now) }
            case .live(let owner):
                return refuse(owner == cookie ? .inUse : .used, address, now)
            case let .released(owner, at):
                guard owner == cookie, now - at < Self.grace else { return refuse(.used, address, now) }
            }
            entries[hash]?.phase = .live(cookie: cookie ?? "")
            return .success(entry.grant)
        }
    }

    /// Why a WebSocket request with this token would be refused now (nil: it would not), counting nothing: the
    /// answer to a request that was not upgraded after `claim` refused it.
    public func peek(hash: String, cookie: String?, address: String, now: Int64) -> Refusal? {
        if failuresThisMinute(address, now: now) >= Self.failuresPerMinute { return .limited }
        if let budget = requests[address], now - budget.windowStart < 60_000_000_000,
           budget.count > Self.requestsPerMinute { return .limited }
        guard let entry = entries[hash] else { return .unknown }
        guard now < entry.expires else { return .expired }
        switch entry.phase {
        case .fresh: return .used
        case .opened(let owner): return owner == cookie ? nil : .used
        case .live(let owner): return owner == cookie ? .inUse : .used
        case let .released(owner, at): return owner == cookie && now - at < Self.grace ? nil : .used
        }
    }

    /// The session's WebSocket closed: its browser may take it again within `grace`.
    public mutating func release(hash: String, now: Int64) {
        guard let entry = entries[hash], case .live(let owner) = entry.phase else { return }
        entries[hash]?.phase = .released(cookie: owner, at: now)
    }

    /// How long an expired token is kept, so that its URL is answered "expired" rather than "no such link".
    public static let keepExpired: Int64 = 3_600_000_000_000

    /// Forgets tokens expired for longer than `keepExpired` (but not an open session's), and last minute's counts.
    public mutating func sweep(now: Int64, keepExpired: Int64 = ConsoleTokens.keepExpired) {
        entries = entries.filter { _, entry in
            if case .live = entry.phase { return true }
            return now < entry.expires + keepExpired
        }
        failures = failures.filter { now - $0.value.windowStart < 60_000_000_000 }
        requests = requests.filter { now - $0.value.windowStart < 60_000_000_000 }
    }

    mutating func lookup(_ hash: String, address: String, now: Int64) -> Result<Entry, Refusal> {
        guard failuresThisMinute(address, now: now) < Self.failuresPerMinute else { return .failure(.limited) }
        guard let entry = entries[hash] else { return refuse(.unknown, address, now) }
        guard now < entry.expires else { return refuse(.expired, address, now) }
        return .success(entry)
    }

    func failuresThisMinute(_ address: String, now: Int64) -> Int {
        guard let budget = failures[address], now - budget.windowStart < 60_000_000_000 else { return 0 }
        return budget.count
    }

    mutating func refuse<T>(_ refusal: Refusal, _ address: String, _ now: Int64) -> Result<T, Refusal> {
        Self.count(&failures, address, now)
        return .failure(refusal)
    }

    /// Counts a request from `address`; false past `requestsPerMinute`.
    mutating func admit(_ address: String, now: Int64) -> Bool {
        if requests.count > 4 * Self.maxTokens || failures.count > 4 * Self.maxTokens { sweep(now: now) }
        return Self.count(&requests, address, now) <= Self.requestsPerMinute
    }

    @discardableResult
    static func count(_ table: inout [String: Budget], _ address: String, _ now: Int64) -> Int {
        if let budget = table[address], now - budget.windowStart < 60_000_000_000 {
            table[address]?.count += 1
            return budget.count + 1
        }
        table[address] = Budget(windowStart: now, count: 1)
        return 1
    }
}
