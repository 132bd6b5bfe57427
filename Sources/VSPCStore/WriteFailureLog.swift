import Foundation
import Logging
import VSPCCore

/// The writer's log of writes a store could not make: one error line a minute at most (a disk or a database that
/// refuses every write must not flood the log), counting those left out since the last line and naming the last.
/// Used on the writer's thread only.
struct WriteFailureLog {
    private var unlogged = 0
    private var loggedAt: UInt64?
    /// The last failure of the batch being reported (nil: the batch had none, so nothing is logged for it).
    private var last: String?

    mutating func failed(_ ops: [StoreOp], _ error: any Error) {
        unlogged += 1
        last = "\(ops.map(\.logName).joined(separator: ", ")): \(error)"
    }

    /// After a batch: its line, if it had a failure and the last line is a minute old.
    mutating func report(_ logger: Logger) {
        defer { last = nil }
        let now = DispatchTime.now().uptimeNanoseconds
        guard let last, loggedAt.map({ now - $0 >= 60_000_000_000 }) ?? true else { return }
        logger.error("store: \(unlogged) write\(unlogged == 1 ? "" : "s") failed (last: \(last))")
        unlogged = 0
        loggedAt = now
    }
}
