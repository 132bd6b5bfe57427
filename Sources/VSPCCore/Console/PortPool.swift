/// Hands out per-VM ports from a range, round-robin, skipping ports in use or found taken.
public struct PortPool: Sendable {
    public let range: ClosedRange<Int>
    private var inUse: Set<Int> = []
    private var cursor: Int

    public init(range: ClosedRange<Int>) {
        self.range = range
        self.cursor = range.lowerBound
    }

    /// Ports of the range in use, kept as ports are reserved and released (`available` is asked per new VM).
    private var usedInRange = 0

    public mutating func reserve(_ port: Int) {
        if inUse.insert(port).inserted, range.contains(port) { usedInRange += 1 }
    }
    public mutating func release(_ port: Int) {
        if inUse.remove(port) != nil, range.contains(port) { usedInRange -= 1 }
    }
    public func isInUse(_ port: Int) -> Bool { inUse.contains(port) }
    public var available: Int { range.count - usedInRange }

    /// The next free port, marked in use; nil when the range is exhausted. `excluding` skips ports known taken.
    public mutating func allocate(excluding: Set<Int> = []) -> Int? {
        for _ in 0..<range.count {
            let port = cursor
            cursor = cursor == range.upperBound ? range.lowerBound : cursor + 1
            if !inUse.contains(port) && !excluding.contains(port) {
                reserve(port)
                return port
            }
        }
        return nil
    }
}
