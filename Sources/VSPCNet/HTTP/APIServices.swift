import Foundation
import VSPCCore

/// What the JSON API asks of the daemon: closures the daemon fills in (`VSPCServer.apiServices`). The async ones
/// hop onto the concentrator's loop; the throwing ones block and run on the listener's thread pool.
public struct APIServices: Sendable {
    /// The live token whose SHA-256 (lowercase hex) this is, or nil (unknown, revoked or expired).
    public var token: @Sendable (String) async -> APIToken?
    /// The listed consoles the token may see.
    public var consoles: @Sendable (APIToken) async -> [ConsoleInfo]
    /// The console a reference names among those the token may see (label nil: any).
    public var console: @Sendable (_ reference: String, _ label: String?, APIToken) async -> Result<ConsoleInfo, AdminError>
    /// A console's events, oldest first: the newest `limit` since a time (blocking).
    public var events: @Sendable (ConsoleKey, _ since: Date?, _ limit: Int) throws -> [ConsoleEvent]
    /// A console's log in a time window, at most `limit + 1` bytes (blocking); nil when console logs are off.
    public var log: (@Sendable (ConsoleKey, _ since: Date?, _ until: Date?, _ limit: Int) throws -> [UInt8])?
    /// Mints a console URL (`vspc url`); nil until the daemon can.
    public var mintURL: (@Sendable (APIURLRequest) async -> Result<String, AdminError>)?
    /// A call was answered: for the audit (the concentrator decides what is recorded).
    public var audit: @Sendable (APICall) -> Void
    /// A call came without a valid token, from this peer (logged, at most once a minute per address).
    public var refused: @Sendable (_ peer: String) -> Void = { _ in }

    public init(token: @escaping @Sendable (String) async -> APIToken?,
                consoles: @escaping @Sendable (APIToken) async -> [ConsoleInfo],
                console: @escaping @Sendable (String, String?, APIToken) async -> Result<ConsoleInfo, AdminError>,
                events: @escaping @Sendable (ConsoleKey, Date?, Int) throws -> [ConsoleEvent],
                log: (@Sendable (ConsoleKey, Date?, Date?, Int) throws -> [UInt8])?,
                mintURL: (@Sendable (APIURLRequest) async -> Result<String, AdminError>)? = nil,
                audit: @escaping @Sendable (APICall) -> Void) {
        self.token = token
        self.consoles = consoles
        self.console = console
        self.events = events
        self.log = log
        self.mintURL = mintURL
        self.audit = audit
    }
}

/// `POST /api/v1/consoles/{vm}/urls`: a console URL for one console, in one mode, for a time.
public struct APIURLRequest: Sendable, Equatable {
    public var console: ConsoleKey
    public var readOnly: Bool
    /// Seconds; nil: the default of `vspc url`.
    public var ttl: Int?
    /// Who asks, for the minting's record: `api token ID` and the client certificate's subject.
    public var minter: String
}
