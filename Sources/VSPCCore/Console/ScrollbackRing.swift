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
    public func contents(last limit: Int? = nil) -> [UInt8] {
        let ordered = head == 0 ? storage : Array(storage[head...] + storage[..<head])
        if let limit, limit < ordered.count { return Array(ordered.suffix(max(0, limit))) }
        return ordered
    }
}
