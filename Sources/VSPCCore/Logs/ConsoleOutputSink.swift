import Foundation

/// Where every byte a console printed goes besides the people attached: the console log files and the watch
/// patterns. The driver hands each console's output over as it arrives, on its event loop; an implementation
/// queues it and does its work (disk, matching) on a thread of its own, and never blocks the caller.
public protocol ConsoleOutputSink: AnyObject, Sendable {
    /// A console's output, exactly as the VM printed it after telnet decoding, as it arrived at `date`.
    func append(_ key: ConsoleKey, _ bytes: [UInt8], at date: Date)
    /// Closes every open file so that the next write opens it again (SIGHUP, for logrotate).
    func reopen()
    /// Writes out what is queued and stops; later output is ignored.
    func close()
    /// Counters for status and metrics.
    func statistics() -> ConsoleLogStatistics
}

/// What a console output sink has done since it started.
public struct ConsoleLogStatistics: Sendable, Equatable {
    /// Bytes written to the log files.
    public var writtenBytes: UInt64 = 0
    /// Bytes that never reached a file: the disk refused them past the retry budget, or the queue was full.
    public var lostBytes: UInt64 = 0
    /// Failed writes (each is retried or counted as lost).
    public var writeErrors: UInt64 = 0
    /// Bytes accepted and not yet written.
    public var queuedBytes: Int = 0
    /// Files rotated at `--console-log-max-bytes`.
    public var rotations: UInt64 = 0
    public init() {}
}

/// How console logs are kept (`--console-log-*`).
public struct ConsoleLogSettings: Sendable, Equatable {
    /// The folder of the log files.
    public var directory: String
    /// A live file is rotated when it would grow past this many bytes.
    public var maxBytes: Int
    /// Rotated files kept per console (`.1` … `.keep`); 0 keeps none (the live file starts again at the limit).
    public var keep: Int
    /// Files of consoles silent for longer than this many days are deleted; 0 keeps them.
    public var maxAgeDays: Int
    /// The group that may read the files (mode 0640); nil: only the daemon's user (0600).
    public var groupID: UInt32?

    public static let defaultMaxBytes = 10 * 1024 * 1024
    public static let defaultKeep = 5
    public static let defaultMaxAgeDays = 30

    public init(directory: String, maxBytes: Int = defaultMaxBytes, keep: Int = defaultKeep,
                maxAgeDays: Int = defaultMaxAgeDays, groupID: UInt32? = nil) {
        self.directory = directory
        self.maxBytes = maxBytes
        self.keep = keep
        self.maxAgeDays = maxAgeDays
        self.groupID = groupID
    }

    /// The mode of the files and of the folder.
    public var fileMode: UInt16 { groupID == nil ? 0o600 : 0o640 }
    public var directoryMode: UInt16 { groupID == nil ? 0o700 : 0o750 }
}
