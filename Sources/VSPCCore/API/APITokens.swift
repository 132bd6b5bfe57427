import Foundation

/// The API tokens the daemon knows, by id and by hash, with the read-audit budgets. Pure: time is passed in.
///
/// The audit: a call that acts is always recorded; reads are summarised per token and console: the first read of
/// a console (or of the list) by a token in a minute is recorded, the others of that minute are counted and
/// their number is said by the next recorded read of the same (`… and N more reads`), so a script that polls
/// every second writes one event a minute per console it reads.
public struct APITokens: Sendable {
    private(set) var byID: [String: APIToken] = [:]
    private var idByHash: [String: String] = [:]
    /// Read windows by token and console (`ID uuid#label`, `ID` for the list), at most `maxReadWindows`.
    private var readWindows: [String: (start: Int64, counted: Int)] = [:]
    static let maxReadWindows = 10_000
    /// Tokens kept at most (revoked and expired ones included, until removed from the database by hand).
    public static let maxTokens = 10_000

    public init() {}

    public init(_ tokens: [APIToken]) {
        for token in tokens { _ = add(token) }
    }

    /// Every token, oldest first.
    public var all: [APIToken] { byID.values.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) } }

    public enum AddError: Error, Equatable {
        case duplicate
        case full
    }

    /// Adds a token; refused when its id or hash is known already, or the table is full.
    public mutating func add(_ token: APIToken) -> Result<Void, AddError> {
        guard byID[token.id] == nil, idByHash[token.hash] == nil else { return .failure(.duplicate) }
        guard byID.count < Self.maxTokens else { return .failure(.full) }
        byID[token.id] = token
        idByHash[token.hash] = token.id
        return .success(())
    }

    public func token(id: String) -> APIToken? { byID[id] }

    /// The live token whose hash is `hash`, or nil (unknown, revoked or expired).
    public func live(hash: String, at date: Date) -> APIToken? {
        guard let id = idByHash[hash], let token = byID[id], token.isLive(at: date) else { return nil }
        return token
    }

    /// Marks a token revoked at `date`; nil when there is no such token.
    public mutating func revoke(id: String, at date: Date) -> APIToken? {
        guard var token = byID[id] else { return nil }
        if token.revokedAt == nil { token.revokedAt = date }
        byID[id] = token
        readWindows = readWindows.filter { !$0.key.hasPrefix(id) }
        return token
    }

    /// Whether a call is recorded now, and how many reads of its token were left out before it.
    /// `now`: monotonic nanoseconds.
    public mutating func audit(_ call: APICall, now: Int64) -> (record: Bool, readsLeftOut: Int) {
        guard !call.acts else { return (true, 0) }
        let key = call.console.map { "\(call.tokenID) \($0)" } ?? call.tokenID
        if let window = readWindows[key], now - window.start < 60_000_000_000 {
            readWindows[key]?.counted += 1
            return (false, 0)
        }
        let before = readWindows[key]?.counted ?? 0
        if readWindows.count >= Self.maxReadWindows {
            // Windows over a minute old say nothing more than a fresh start would (their counts are lost).
            readWindows = readWindows.filter { now - $0.value.start < 60_000_000_000 }
            // Still full: this read is recorded without taking a window.
            if readWindows.count >= Self.maxReadWindows { return (true, before) }
        }
        readWindows[key] = (now, 0)
        return (true, before)
    }
}
