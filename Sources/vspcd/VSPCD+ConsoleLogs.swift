import Foundation
import VSPCCore

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
}
