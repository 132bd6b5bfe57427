/// How the daemon reaches its store: writes are queued and committed by the store's own writer, never on the
/// caller's thread. `VSPCStore.Store` conforms; tests may use an in-memory one.
public protocol RecordStore: AnyObject, Sendable {
    /// Queues ops applied atomically together, in order. Never blocks. `completion` runs on the writer's thread
    /// after the commit (nil) or the failure.
    func enqueue(_ ops: [StoreOp], completion: (@Sendable (Error?) -> Void)?)
    /// Blocks until everything queued before the call is committed or has failed. Never on an event loop.
    func flush()
}
