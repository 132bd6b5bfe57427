import Foundation

/// Identifies one TCP connection (a VM's, a person's or an admin client's) inside the concentrator.
public typealias ConnectionID = Int

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
    case vmClosed(ConnectionID)

    case clientConnected(ConnectionID, listener: ListenerRef, peer: String)
    /// An authenticated SSH session asked for a shell: `user` names the console (`VM`, `VM#label`, `list`).
    /// `pty`: the client asked for a terminal (lines then end in CRLF; without one, in LF for scripts).
    case sshSessionStarted(ConnectionID, user: String, key: AuthorizedKey, fingerprint: String, peer: String,
                           pty: Bool = true)
    case clientBytes(ConnectionID, [UInt8])
    case clientClosed(ConnectionID)

    case adminConnected(ConnectionID, peer: String = "local")
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
}

/// What the concentrator asks its driver to do, in order.
public enum ConcentratorAction: Equatable, Sendable {
    /// Bytes for one connection, already encoded for its leg.
    case send(ConnectionID, [UInt8])
    /// The same bytes for several connections (one buffer, many channels).
    case broadcast([ConnectionID], [UInt8])
    /// Close a connection; with `flush`, after what was queued for it has been written.
    case close(ConnectionID, flush: Bool)
    /// End an SSH session with this exit status, after what was queued for it.
    case endSession(ConnectionID, exitStatus: Int)
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
    case log(LogLevel, String)
    /// Read the records for this admin connection, off the event loop; answer with `queryAnswered`.
    case query(ConnectionID, RecordQuery)
}
