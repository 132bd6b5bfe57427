import Foundation
import VSPCCore
import VSPCStore

extension VSPCD {
    /// `--console-log-*` as the writer takes them; nil for `--console-log-dir off`. An unknown group is an error.
    static func consoleLogSettings(_ settings: DaemonSettings, besideDB: (String) -> String) throws -> ConsoleLogSettings? {
        if settings.consoleLogDir == "off" { return nil }
        var logs = ConsoleLogSettings(directory: settings.consoleLogDir ?? besideDB("consoles"),
                                      maxBytes: settings.consoleLogMaxBytes, keep: settings.consoleLogKeep,
                                      maxAgeDays: settings.consoleLogMaxAgeDays)
        if let group = settings.consoleLogGroup {
            guard let entry = getgrnam(group) else {
                throw SettingsError("--console-log-group: there is no group \(group.debugDescription) on this machine")
            }
            logs.groupID = UInt32(entry.pointee.gr_gid)
        }
        return logs
    }

    /// A console's log in a time window for the JSON API: at most `limit + 1` bytes (more says "too many").
    static func readLog(_ reader: ConsoleLogReader, _ key: ConsoleKey, since: Date?, until: Date?, limit: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        do {
            try reader.read(key, since: since, until: until) { chunk in
                out.append(contentsOf: chunk.bytes.prefix(limit + 1 - out.count))
                if out.count > limit { throw EnoughRead() }
            }
        } catch is EnoughRead {}
        return out
    }
}

/// Stops a log read once the answer is known to be too long.
private struct EnoughRead: Error {}
