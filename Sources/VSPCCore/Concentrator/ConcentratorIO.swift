import Foundation

/// The time, passed into every event: a monotonic clock for durations and timers, and the wall clock for records.
public struct Now: Sendable, Equatable {
    /// Nanoseconds on a clock that never goes back.
    public var monotonic: UInt64
    public var date: Date
    public init(monotonic: UInt64, date: Date) {
        self.monotonic = monotonic
        self.date = date
    }
}

/// One listener of a console's port. A console that binds again (another port, a retry) gets a new generation,
/// so a stale bind result or a connection accepted by an old listener is recognised.
public struct ListenerRef: Hashable, Sendable, CustomStringConvertible {
    public var console: ConsoleKey
    public var generation: Int
    public init(console: ConsoleKey, generation: Int) {
        self.console = console
        self.generation = generation
    }
    public var description: String { "\(console)@\(generation)" }
}

/// The concentrator's timers, as values: the driver arms them and reports them back when they fire.
public enum TimerID: Hashable, Sendable {
    /// A new proxy connection has this long to agree to the VMware extension.
    case negotiation(ConnectionID)
    /// A VM that gave its uuid has this long to give its name.
    case name(ConnectionID)
    /// A connection that never comes to carry a console is closed.
    case identify(ConnectionID)
    /// A VM connection has left what it is sent unread for too long.
    case stuck(ConnectionID)
    /// The console's open connection did not answer the probe sent when this connection claimed the console.
    case takeoverProbe(ConnectionID)
    /// The window of a console's migration.
    case vmotion(ConsoleKey, generation: Int)
    /// Bind a console's port again.
    case listenerRetry(ConsoleKey)
    /// Write a console's assignment again.
    case persistRetry(ConsoleKey)
    /// Delete a removed console's assignment again (its port stays out of the pool meanwhile).
    case deleteRetry(ConsoleKey)
    case expirySweep
    case scrollbackSave
    case prune
    /// This node's heartbeat (with `config.cluster`).
    case heartbeat
    /// Claim a console again after a claim failed (the database was down).
    case claimRetry(ConsoleKey)
    /// A feed kept after this node took its console over (a vMotion's COMPLETE here) has had its time to bring
    /// what the old owner sent before it learned: it closes, and what the VM printed here meanwhile goes out.
    case feedDrain(ConsoleKey)
    /// The source of a console that moved to another node has had its time to send its last bytes: it closes,
    /// and the people here follow the new owner.
    case departure(ConsoleKey)
}

/// A store write whose outcome the concentrator waits for.
public enum WriteToken: Hashable, Sendable {
    case assignment(ConsoleKey, generation: Int)
    case deletion(ConsoleKey, generation: Int)
    case scrollback([ConsoleKey])
}

/// Everything that happens to the concentrator.
public enum ConcentratorEvent: Sendable {
    /// The known assignments and saved scrollback, read at start-up, and the descriptors the process holds.
    case start(assignments: [Assignment], scrollback: [ConsoleKey: [UInt8]], descriptorBaseline: Int)
    /// The daemon is up on these addresses (recorded).
    case started(detail: String)
    case shutdown
    /// SIGHUP changed what can change live.
    case reconfigure(vmExpireTime: Double, retention: Retention, proxyAllow: AddressAllowList)

    case vmConnected(ConnectionID, peer: String)
    case vmBytes(ConnectionID, [UInt8])
    /// `error`: the driver closed it after a read or write error.
    case vmClosed(ConnectionID, error: Bool = false)

    /// A person arrived through a door and asks for a console (or, over SSH, for `list`).
    case sessionStarted(ConnectionID, door: Door, peer: String, request: SessionRequest)
    case clientBytes(ConnectionID, [UInt8])
    /// A reader on a skip-ahead door fell behind: its sink dropped this many of its oldest unsent bytes.
    case clientSkipped(ConnectionID, bytes: Int)
    /// The door's own transport ended a person's connection for `reason`: past what its sink can hold at all
    /// (`slow`, a last resort beyond skipping), idle past `--ssh-idle-timeout` (`idle`), or keepalives left
    /// unanswered (`unresponsive`). Recorded as a drop; its close follows.
    case clientEnded(ConnectionID, reason: DropReason)
    case clientClosed(ConnectionID)
    /// authorized_keys was reloaded: the keys now in force (`expiry-time` read in `timeZone`). Open sessions of a
    /// key that is gone, or no longer lets its client in or reaches its console, end; a key made read-only makes
    /// its open sessions read-only.
    case keysReloaded(AuthorizedKeys, timeZone: TimeZone)

    /// `uid`: the peer's user id on the admin Unix socket (`SO_PEERCRED`), who mints console URLs there; nil
    /// over TCP, where the minter is `admin-tcp PEER`.
    case adminConnected(ConnectionID, peer: String = "local", uid: UInt32? = nil)
    /// The token the driver made for this connection's `url` request (after `.makeToken`), the SHA-256 of it
    /// (hex), the URL base (`--http-public-url`, else the HTTP listener's address; nil: no HTTP listener), and
    /// the minter's user name (for a uid). Only the hash is kept; the token goes into the answer, to the minter.
    case tokenMade(ConnectionID, token: String, hash: String, base: String?, userName: String? = nil)
    case adminLine(ConnectionID, [UInt8])
    /// The admin client sent a line longer than `AdminProtocol.maxRequestBytes`.
    case adminLineTooLong(ConnectionID)
    case adminClosed(ConnectionID)

    /// A connection's outbound buffer crossed its high (false) or low (true) water mark.
    case writabilityChanged(ConnectionID, writable: Bool)

    case listenerBound(ListenerRef)
    case listenerFailed(ListenerRef, addressInUse: Bool, message: String)
    case timerFired(TimerID)
    /// A store write with a token committed (nil) or failed.
    case writeCompleted(WriteToken, error: StoreFailure?)
    /// What a `query` for this admin connection found.
    case queryAnswered(ConnectionID, RecordAnswer)
    /// A line a console printed matched the watch pattern named `pattern` (`--watch`); matched off the event loop.
    case consoleLineMatched(ConsoleKey, pattern: String, line: [UInt8])
    /// The API tokens in the database, read at start-up (after `start`).
    case tokensLoaded([APIToken])
    /// A call of the JSON API was answered: for the audit.
    case apiCalled(APICall)
    /// Word from the other daemons sharing the database (`--db postgresql://`).
    case cluster(ClusterNews)
}

/// What a person arriving through a door asks for, and who they are.
public struct SessionRequest: Sendable {
    /// How the console is named.
    public enum Target: Sendable {
        /// The console whose own port this connection was accepted on.
        case listener(ListenerRef)
        /// A name: `VM`, `VM#label`, a uuid in any spelling or a unique prefix, or `list` (see `SSHTarget`).
        case name(String)
        /// This console (a console URL's).
        case console(ConsoleKey)
    }

    /// Who is asking.
    public enum Principal: Sendable {
        /// Nobody in particular: the telnet ports, open to whoever reaches them (`--telnet-ports`).
        case anonymous
        /// The holder of this authorized key.
        case key(AuthorizedKey, fingerprint: String)
        /// The browser holding the one-time console URL whose token has this hash (hex): its grant says the
        /// console, the mode and who minted it.
        case token(ConsoleTokens.Grant, hash: String)
        /// Another node of the cluster, feeding its own people from this console (over the internal link,
        /// authenticated by its certificate or by being on loopback).
        case node(String)
    }

    public var target: Target
    public var principal: Principal
    /// The person has a terminal: lines end in CRLF (without one, in LF, for scripts).
    public var terminal: Bool
    /// A command to run instead of the console (`ssh VM@host CMD`): refused, since a console runs none.
    public var command: String?
    /// A feed from another node (`.node`): the owner's epoch since whose claim it wants the console's output (the
    /// HELLO's `sinceEpoch`); nil: from now; `sinceLastClaim`: since the owner's latest claim, whichever epoch.
    public var sinceEpoch: Int64?
    /// A `sinceEpoch` for "since your latest claim" (epochs start at 1): asked by a node that completed a
    /// vMotion from a node whose claim it had not heard of yet.
    public static let sinceLastClaim: Int64 = 0

    public init(target: Target, principal: Principal, terminal: Bool = true, command: String? = nil,
                sinceEpoch: Int64? = nil) {
        self.target = target
        self.principal = principal
        self.terminal = terminal
        self.command = command
        self.sinceEpoch = sinceEpoch
    }
}

/// What the concentrator asks its driver to do, in order.
public enum ConcentratorAction: Equatable, Sendable {
    /// Bytes for one connection, already encoded for its leg.
    case send(ConnectionID, [UInt8])
    /// A one-line notice for a door that shows them apart from the console's bytes (`Door.noticesApart`).
    case notice(ConnectionID, String)
    /// Make a console URL's token for this admin connection's `url` request; answer with `tokenMade`.
    /// `uid`: the minter's, whose user name the driver looks up (off the loop) and gives back.
    case makeToken(ConnectionID, uid: UInt32?)
    /// The same bytes for several connections (one buffer, many channels).
    case broadcast([ConnectionID], [UInt8])
    /// Close a connection; with `flush`, after what was queued for it has been written.
    case close(ConnectionID, flush: Bool)
    /// End an SSH session with this exit status, after what was queued for it.
    case endSession(ConnectionID, exitStatus: Int)
    /// Close the connection that carries this session, with every other session on it (an SSH connection whose
    /// key was revoked); for a plain connection, the same as `close`.
    case closeTransport(ConnectionID)
    /// Stop or resume reading a connection.
    case setReading(ConnectionID, Bool)
    case bind(ListenerRef, port: Int)
    case unbind(ListenerRef)
    case schedule(TimerID, afterNanos: UInt64)
    case cancel(TimerID)
    /// Queue these store operations; report the outcome as `writeCompleted(token)` when a token is given.
    case persist([StoreOp], token: WriteToken?)
    /// Record this event and log its line.
    case record(ConsoleEvent)
    /// A console's output, for its log file and the watch patterns (only with `keepsOutput`).
    case consoleOutput(ConsoleKey, [UInt8])
    case log(LogLevel, String)
    /// Read the records for this admin connection, off the event loop; answer with `queryAnswered`.
    case query(ConnectionID, RecordQuery)
    /// Ask the cluster (only with `config.cluster`); the answer comes back as `.cluster(ClusterNews)`.
    case cluster(ClusterRequest)
}
