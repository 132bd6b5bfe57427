/// How the daemon reaches its store: writes are queued and committed by the store's own writer, never on the
/// caller's thread. `VSPCStore.Store` conforms; tests may use an in-memory one.
public protocol RecordStore: AnyObject, Sendable {
    /// Queues ops applied atomically together, in order. Never blocks. `completion` runs on the writer's thread
    /// after the commit (nil) or the failure.
    func enqueue(_ ops: [StoreOp], completion: (@Sendable (Error?) -> Void)?)
    /// Blocks until everything queued before the call is committed or has failed. Never on an event loop.
    func flush()
    /// What a failure that `enqueue` reported means, for the core: the driver hands it on in `writeCompleted`.
    func failure(of error: any Error) -> StoreFailure
    /// Called on the writer's thread after each batch: its duration in seconds and how many units failed.
    var commitObserver: (@Sendable (_ seconds: Double, _ failures: Int) -> Void)? { get set }
    /// Flushes, then lets go of what the store holds for its one daemon (a lock); at the daemon's end.
    func close()
    /// Writes waiting to be committed (a PostgreSQL backend queues while the database is away); nil: the
    /// backend does not say (`vspc_store_queue_writes`).
    var queuedWrites: Int? { get }
    /// Seconds the oldest queued write has waited; nil: none waits, or the backend does not say.
    var oldestQueuedWriteAge: Double? { get }
}

extension RecordStore {
    public var queuedWrites: Int? { nil }
    public var oldestQueuedWriteAge: Double? { nil }
}

/// Why the store did not take a write, as the core sees it.
public struct StoreFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Equatable, Sendable {
        /// The disk (or the database's size limit) is full.
        case diskFull
        /// The database or its files refuse writes.
        case readOnly
        /// Another process holds the database too long.
        case busy
        /// PostgreSQL: the database cannot be reached (a cluster node keeps serving, and queues).
        case unreachable
        /// PostgreSQL: an assignment that another node holds differently (see `assignedPort`), or a port that
        /// another console holds (`assignedPort` nil).
        case conflict
        /// PostgreSQL: the write was made under an epoch that is no longer the console's (a stale owner).
        case fenced
        case other
    }

    public var kind: Kind
    /// The store's own words, for the log.
    public var message: String
    /// With `conflict`: the port the database holds for this console (another node assigned it first).
    public var assignedPort: Int?

    public init(_ kind: Kind, _ message: String, assignedPort: Int? = nil) {
        self.kind = kind
        self.message = message
        self.assignedPort = assignedPort
    }

    public var description: String { message }
}

extension RecordStore {
    /// A failure of no known kind, in the error's own words.
    public func failure(of error: any Error) -> StoreFailure {
        (error as? StoreFailure) ?? StoreFailure(.other, "\(error)")
    }
}
