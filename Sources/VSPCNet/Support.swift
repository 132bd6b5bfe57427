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

/// Hands out per-VM ports from a range, round-robin, skipping ports in use or found taken.
public struct PortPool: Sendable {
    public let range: ClosedRange<Int>
    private var inUse: Set<Int> = []
    private var cursor: Int

    public init(range: ClosedRange<Int>) {
        self.range = range
        self.cursor = range.lowerBound
    }

    public mutating func reserve(_ port: Int) { inUse.insert(port) }
    public mutating func release(_ port: Int) { inUse.remove(port) }
    public func isInUse(_ port: Int) -> Bool { inUse.contains(port) }
    public var available: Int { range.count - inUse.filter { range.contains($0) }.count }

    /// The next free port, marked in use; nil when the range is exhausted. `excluding` skips ports known taken.
    public mutating func allocate(excluding: Set<Int> = []) -> Int? {
        for _ in 0..<range.count {
            let port = cursor
            cursor = cursor == range.upperBound ? range.lowerBound : cursor + 1
            if !inUse.contains(port) && !excluding.contains(port) {
                inUse.insert(port)
                return port
            }
        }
        return nil
    }
}

/// Identifies one console: one serial port (label) of one VM (uuid, 32 lowercase hex).
public struct ConsoleKey: Hashable, Sendable, CustomStringConvertible {
    public var uuid: String
    public var label: String
    public init(uuid: String, label: String) {
        self.uuid = uuid
        self.label = label
    }
    public var description: String { label.isEmpty ? uuid : "\(uuid)#\(label)" }
}
