import Dispatch
import VSPCCore

extension RecordStore {
    /// `RecordStore.flush` of both backends: an empty write queued behind the others, waited for. Not from a
    /// completion handler (the writer's thread). A PostgreSQL store whose database is away answers it at once,
    /// its waiting writes still queued.
    public func flush() {
        let sem = DispatchSemaphore(value: 0)
        enqueue([StoreOp](), completion: { _ in sem.signal() })
        sem.wait()
    }
}
