import Foundation

/// Watch patterns (`--watch NAME=REGEX`): the driver matches console lines off the event loop and reports each
/// match; the machine counts it, and records it (its log line is at notice level) within the console's allowance.
extension ConcentratorStateMachine {
    mutating func consoleLineMatched(_ key: ConsoleKey, pattern: String, line: [UInt8]) {
        tallies.consoleMatches[pattern, default: 0] += 1
        let (limit, time) = (config.matchesPerConsolePerMinute, monotonicNow)
        guard let (allowed, summary) = consoles.modify(key, { $0.matchBudget.spend(now: time, limit: limit) }) else { return }
        if summary > 0 {
            let detail = "… \(grouped(summary)) more matches suppressed"
            out.append(.record(ConsoleEvent(kind: .consoleMatch, time: now.date, uuid: key.uuid, label: key.label,
                                            name: consoles[key]?.name, detail: detail)))
        }
        guard allowed else { return }
        let shown = DisplayText.escape(utf8: Self.trimmedLine(line, limit: config.matchLineLimit))
        out.append(.record(ConsoleEvent(kind: .consoleMatch, time: now.date, uuid: key.uuid, label: key.label,
                                        name: consoles[key]?.name, detail: "\(pattern): \(shown)")))
    }

    /// The line without its line ending, cut at `limit` bytes (at a character boundary where it is UTF-8).
    static func trimmedLine(_ line: [UInt8], limit: Int) -> [UInt8] {
        var end = line.count
        while end > 0, line[end - 1] == 0x0A || line[end - 1] == 0x0D { end -= 1 }
        guard end > limit else { return Array(line[0..<end]) }
        var cut = limit
        // Do not split a UTF-8 sequence: back up over continuation bytes.
        while cut > 0, line[cut] & 0xC0 == 0x80 { cut -= 1 }
        return Array(line[0..<cut])
    }
}
