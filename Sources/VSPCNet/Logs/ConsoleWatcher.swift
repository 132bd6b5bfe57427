import Foundation
import NIOConcurrencyHelpers
import VSPCCore

/// Matches the lines consoles print against the watch patterns (`--watch NAME=REGEX`), on a thread of its own:
/// the event loop only queues the bytes (`append`). Each console's bytes are cut into lines at `\n`; a line longer
/// than `maxLineBytes` is matched in pieces of that size. Every match is reported through `onMatch` (the daemon
/// hands it to the concentrator on its event loop, which counts, rate-limits and records it). When matching falls
/// behind by more than `maxQueuedBytes`, newer output is skipped unmatched and counted (`skippedBytes`).
final class ConsoleWatcher: ConsoleOutputSink, @unchecked Sendable {
    struct Compiled {
        var name: String
        var matcher: LineMatcher
    }

    static let maxLineBytes = 4096
    let patterns: [Compiled]
    let maxQueuedBytes: Int
    private let onMatch: @Sendable (ConsoleKey, String, [UInt8]) -> Void

    private struct Queue {
        var chunks: [(ConsoleKey, [UInt8])] = []
        var bytes = 0
        var skipped: UInt64 = 0
        var draining = false
        var closed = false
    }
    private let queue = NIOLockedValueBox(Queue())
    private let worker = DispatchQueue(label: "vspcd.watch", qos: .utility)
    /// The unfinished last line of each console (only touched on `worker`).
    private var partial: [ConsoleKey: [UInt8]] = [:]

    /// The patterns were checked with the settings (`WatchPattern.parse` compiles them); one that does not
    /// compile here is left out.
    init(patterns: [WatchPattern], maxQueuedBytes: Int = 16 << 20,
         onMatch: @escaping @Sendable (ConsoleKey, String, [UInt8]) -> Void) {
        self.patterns = patterns.compactMap { pattern in
            (try? LineMatcher(pattern: pattern.regex)).map { Compiled(name: pattern.name, matcher: $0) }
        }
        self.maxQueuedBytes = maxQueuedBytes
        self.onMatch = onMatch
    }

    func append(_ key: ConsoleKey, _ bytes: [UInt8], at date: Date) {
        let start = queue.withLockedValue { queue -> Bool in
            guard !queue.closed else { return false }
            guard queue.bytes + bytes.count <= maxQueuedBytes else {
                queue.skipped += UInt64(bytes.count)
                return false
            }
            queue.chunks.append((key, bytes))
            queue.bytes += bytes.count
            guard !queue.draining else { return false }
            queue.draining = true
            return true
        }
        if start { worker.async { self.drain() } }
    }

    func reopen() {}

    func close() {
        queue.withLockedValue { $0.closed = true }
        worker.sync {}
    }

    /// Waits until everything queued so far has been matched (tests).
    func sync() { worker.sync {} }

    func statistics() -> ConsoleLogStatistics { ConsoleLogStatistics() }

    var skippedBytes: UInt64 { queue.withLockedValue { $0.skipped } }

    /// On `worker`: takes what is queued, a batch at a time, until the queue is empty.
    private func drain() {
        while true {
            let batch = queue.withLockedValue { queue -> [(ConsoleKey, [UInt8])] in
                let chunks = queue.chunks
                queue.chunks = []
                queue.bytes = 0
                if chunks.isEmpty { queue.draining = false }
                return chunks
            }
            if batch.isEmpty { return }
            // One buffer per console for the batch: the matchers scan it whole.
            var order: [ConsoleKey] = []
            var byConsole: [ConsoleKey: [UInt8]] = [:]
            for (key, bytes) in batch {
                if byConsole[key] == nil {
                    order.append(key)
                    byConsole[key] = partial.removeValue(forKey: key) ?? []
                }
                byConsole[key]?.append(contentsOf: bytes)
            }
            for key in order {
                guard let bytes = byConsole[key] else { continue }
                scan(key, bytes)
            }
        }
    }

    /// Matches the complete lines of `bytes` and keeps the unfinished rest for the console's next output.
    private func scan(_ key: ConsoleKey, _ bytes: [UInt8]) {
        var end = bytes.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
        // A line that never ends is matched in pieces.
        if bytes.count - end > Self.maxLineBytes { end = bytes.count }
        if end < bytes.count { partial[key] = Array(bytes[end...]) }
        guard end > 0 else { return }
        bytes.withUnsafeBytes { all in
            let lines = UnsafeRawBufferPointer(rebasing: all[0..<end])
            for pattern in patterns {
                var from = 0
                while from < lines.count, let hit = pattern.matcher.firstMatch(in: UnsafeRawBufferPointer(rebasing: lines[from...])) {
                    let at = from + hit.lowerBound
                    var lineStart = at
                    while lineStart > from, lines[lineStart - 1] != 0x0A { lineStart -= 1 }
                    var lineEnd = at
                    while lineEnd < lines.count, lines[lineEnd] != 0x0A { lineEnd += 1 }
                    onMatch(key, pattern.name, Array(lines[lineStart..<lineEnd]))
                    from = lineEnd + 1
                }
            }
        }
    }
}
