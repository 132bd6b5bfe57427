/// A fixed-capacity ring of the most recent console bytes.
public struct ScrollbackRing: Sendable {
    public let capacity: Int
    private var storage: [UInt8] = []
    private var head = 0  // index of the oldest byte once full

    public init(capacity: Int, initial: [UInt8] = []) {
        self.capacity = max(0, capacity)
        append(initial)
    }

    public var count: Int { storage.count }

    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        guard capacity > 0 else { return }
        if bytes.count >= capacity {
            storage = Array(bytes.suffix(capacity))
            head = 0
            return
        }
        var rest = bytes[...]
        if storage.count < capacity {
            let fill = rest.prefix(capacity - storage.count)
            storage.append(contentsOf: fill)
            rest = rest.dropFirst(fill.count)
        }
        // Full: overwrite the oldest bytes in at most two runs (up to the end of storage, then from its start).
        while !rest.isEmpty {
            let run = rest.prefix(capacity - head)
            storage.replaceSubrange(head..<(head + run.count), with: run)
            head = (head + run.count) % capacity
            rest = rest.dropFirst(run.count)
        }
    }

    /// The last `limit` bytes (all of them by default), oldest first.
    /// Copies only the bytes asked for: saving what a console printed since the last save costs that much.
    public func contents(last limit: Int? = nil) -> [UInt8] {
        let n = min(max(0, limit ?? storage.count), storage.count)
        // Oldest first: storage[head...] then storage[..<head] (the newest bytes end just before `head`).
        if head == 0 { return Array(storage[(storage.count - n)...]) }
        if n <= head { return Array(storage[(head - n)..<head]) }
        var out = [UInt8]()
        out.reserveCapacity(n)
        out.append(contentsOf: storage[(storage.count - (n - head))...])
        out.append(contentsOf: storage[..<head])
        return out
    }
}
