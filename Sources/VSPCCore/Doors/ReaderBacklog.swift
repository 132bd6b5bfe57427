/// The console bytes waiting for one reader that is slower than the console, held by the reader's sink while
/// its connection does not take more (NIOChatServer's model: one buffer written to many, each reader with its
/// own water mark). Bounded by `limit`. What happens past the bound is the door's `WhenBehind`:
/// - `.skipAhead`: the oldest unsent bytes are dropped for this reader alone; the next bytes it gets start with
///   a one-line marker giving the count (`Door.skippedMarker`), merged for skips in a row.
/// - `.disconnect`: nothing is dropped from the middle; `append` answers `.over` and the reader is to be dropped.
public struct ReaderBacklog: Sendable {
    public enum Outcome: Equatable, Sendable {
        case queued
        /// This many more bytes were dropped to stay within the bound (a skip-ahead reader).
        case skipped(Int)
        /// Past the bound (a disconnect reader): drop the reader.
        case over
    }

    public let limit: Int
    public let policy: Door.WhenBehind
    private var chunks: [[UInt8]] = []
    private var head = 0
    /// Bytes held.
    public private(set) var count = 0
    /// Bytes skipped that the reader has not been told of yet.
    public private(set) var unreportedSkip = 0

    public init(limit: Int, policy: Door.WhenBehind) {
        self.limit = max(1, limit)
        self.policy = policy
    }

    public var isEmpty: Bool { count == 0 && unreportedSkip == 0 }

    public mutating func append(_ bytes: [UInt8]) -> Outcome {
        guard !bytes.isEmpty else { return .queued }
        if count + bytes.count <= limit {
            push(bytes)
            return .queued
        }
        guard policy == .skipAhead else { return .over }
        // Keep the newest `limit` bytes: the oldest chunks go first, then the front of what is left.
        var skipped = 0
        var incoming = bytes
        if incoming.count >= limit {
            skipped += count + incoming.count - limit
            incoming.removeFirst(incoming.count - limit)
            chunks = []
            head = 0
            count = 0
        }
        while count + incoming.count > limit, head < chunks.count {
            let excess = count + incoming.count - limit
            let first = chunks[head].count
            if first <= excess {
                chunks[head] = []
                head += 1
                count -= first
                skipped += first
            } else {
                chunks[head].removeFirst(excess)
                count -= excess
                skipped += excess
            }
        }
        push(incoming)
        unreportedSkip += skipped
        return .skipped(skipped)
    }

    /// The next bytes for the reader (at most about `max`, whole chunks where they fit), marker first after a skip;
    /// nil when nothing waits.
    public mutating func take(max: Int = 64 * 1024) -> [UInt8]? {
        var out: [UInt8] = []
        if unreportedSkip > 0 {
            out = Door.skippedMarker(unreportedSkip)
            unreportedSkip = 0
        }
        while head < chunks.count, out.isEmpty || out.count + chunks[head].count <= max {
            out.append(contentsOf: chunks[head])
            count -= chunks[head].count
            chunks[head] = []
            head += 1
        }
        if head == chunks.count {
            chunks.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 64, head * 2 > chunks.count {
            chunks.removeFirst(head)
            head = 0
        }
        return out.isEmpty ? nil : out
    }

    private mutating func push(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        chunks.append(bytes)
        count += bytes.count
    }
}
