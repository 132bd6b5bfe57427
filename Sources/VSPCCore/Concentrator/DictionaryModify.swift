extension Dictionary {
    /// Changes the value stored for `key` in place (no copy of it is made); nil, and nothing run, when there is
    /// none. The concentrator's tables are changed through this or optional chaining (`consoles[key]?.vm = nil`),
    /// never through a forced lookup that would trap on a key already gone.
    @discardableResult
    mutating func modify<T>(_ key: Key, _ body: (inout Value) throws -> T) rethrows -> T? {
        guard let index = index(forKey: key) else { return nil }
        return try body(&values[index])
    }
}
