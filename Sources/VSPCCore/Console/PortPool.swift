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
