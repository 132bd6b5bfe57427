import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Log lines go through a bounded queue to a background thread that writes them (to stderr by default), so
/// logging never blocks the caller, an event loop included. When the output is slow the queue fills and
/// further lines are dropped; when it is closed (EPIPE) or fails, the lines are dropped. Dropped lines are
/// counted, and the next line that gets through is followed by "N log lines dropped". Never crashes: the
/// daemon ignores SIGPIPE, and every write error is handled.
public final class LogWriter: @unchecked Sendable {
    /// Writes one buffer completely; false when it could not (the lines are then counted as dropped).
    public typealias Sink = @Sendable (Data) -> Bool

    public let capacity: Int
    public let maxQueuedBytes: Int
    private let sink: Sink
    private let dropNotice: @Sendable (Int) -> String
    private let condition = NSCondition()
    private var queue: [String] = []
    private var queuedBytes = 0
    private var droppedPending = 0
    private var droppedTotal = 0
    private var writing = false
    private var stopping = false
    private var thread: Thread?

    /// - Parameters:
    ///   - capacity: lines queued at most; more are dropped.
    ///   - maxQueuedBytes: bytes queued at most; more are dropped.
    ///   - dropNotice: formats the "N log lines dropped" line (with its newline) in the log's format.
    public init(capacity: Int = 8192, maxQueuedBytes: Int = 8 << 20,
                dropNotice: @escaping @Sendable (Int) -> String = { "\($0) log lines dropped\n" },
                sink: @escaping Sink) {
        self.capacity = max(1, capacity)
        self.maxQueuedBytes = max(1, maxQueuedBytes)
        self.dropNotice = dropNotice
        self.sink = sink
        let thread = Thread { self.run() } // the thread holds the writer until close()
        thread.name = "vspcd-log"
        self.thread = thread
        thread.start()
    }

    /// A writer to a file descriptor (stderr by default).
    public convenience init(fileDescriptor: Int32 = 2, capacity: Int = 8192, maxQueuedBytes: Int = 8 << 20,
                            dropNotice: @escaping @Sendable (Int) -> String = { "\($0) log lines dropped\n" }) {
        self.init(capacity: capacity, maxQueuedBytes: maxQueuedBytes, dropNotice: dropNotice) { data in
            LogWriter.writeAll(data, to: fileDescriptor)
        }
    }

    /// Queues one line (with its newline); never blocks. Returns false when it was dropped.
    @discardableResult
    public func enqueue(_ line: String) -> Bool {
        let bytes = line.utf8.count
        condition.lock()
        defer { condition.unlock() }
        guard !stopping, queue.count < capacity, queuedBytes + bytes <= maxQueuedBytes else {
            droppedPending += 1
            droppedTotal += 1
            condition.signal()
            return false
        }
        queue.append(line)
        queuedBytes += bytes
        condition.signal()
        return true
    }

    /// Lines dropped since start.
    public var dropped: Int {
        condition.lock()
        defer { condition.unlock() }
        return droppedTotal
    }

    /// Waits until every queued line is written (or dropped), at most `timeout` seconds; true when drained.
    @discardableResult
    public func flush(timeout: Double = 2) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while !queue.isEmpty || writing {
            if !condition.wait(until: deadline) { return queue.isEmpty && !writing }
        }
        return true
    }

    /// Drains what is queued (at most `timeout` seconds) and stops the thread; later lines are dropped.
    public func close(timeout: Double = 2) {
        flush(timeout: timeout)
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private func run() {
        var carried = 0 // lines lost to failed writes, reported before the next line that gets through
        while true {
            condition.lock()
            while queue.isEmpty && droppedPending == 0 && !stopping { condition.wait() }
            if stopping && queue.isEmpty {
                condition.unlock()
                return
            }
            // Every line taken here was queued before every line counted as dropped so far: lines are only
            // dropped while the queue is full, and it empties only here. So that notice goes after the batch.
            let batch = queue
            let dropped = droppedPending
            queue.removeAll(keepingCapacity: true)
            queuedBytes = 0
            droppedPending = 0
            writing = true
            condition.unlock()

            var failed = 0
            if carried > 0, !batch.isEmpty, sink(Data(dropNotice(carried).utf8)) { carried = 0 }
            if !batch.isEmpty, !sink(Data(batch.joined().utf8)) {
                failed = batch.count
                carried += batch.count
            }
            if dropped > 0, !sink(Data(dropNotice(dropped).utf8)) { carried += dropped }

            condition.lock()
            droppedTotal += failed
            writing = false
            condition.broadcast()
            condition.unlock()
        }
    }

    /// `write` until done; EINTR retried, EAGAIN waits for the descriptor to take more (a non-blocking
    /// stderr), anything else (EPIPE, EBADF, EIO, ENOSPC) fails.
    static func writeAll(_ data: Data, to fd: Int32) -> Bool {
        data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) -> Bool in
            guard var pointer = buffer.baseAddress else { return true }
            var remaining = buffer.count
            var stalls = 0
            while remaining > 0 {
                let n = write(fd, pointer, remaining)
                if n > 0 {
                    pointer += n
                    remaining -= n
                    stalls = 0
                    continue
                }
                let code = n < 0 ? errno : EIO
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK {
                    stalls += 1
                    if stalls > 10 { return false } // about 10 s without progress: give up on this batch
                    var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, 1000)
                    continue
                }
                return false
            }
            return true
        }
    }
}
