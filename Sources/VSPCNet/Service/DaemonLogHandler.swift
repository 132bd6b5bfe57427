import Foundation
import Logging
import VSPCCore
#if canImport(Glibc)
import Glibc
#endif

/// `--log-format`: `text` is `<priority>vspcd[pid]: LEVEL message key=value` (journald and syslog read the
/// `<N>` prefix as the priority); `json` is one object per line with `time`, `level`, `message` and the
/// metadata fields, for log shippers.
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}

/// What all of the daemon's log handlers share: the format, the writer, and the level, which SIGHUP may
/// change while the daemon runs (every logger follows it, unless its own level was set).
public final class LogControl: @unchecked Sendable {
    public let format: LogFormat
    public let writer: LogWriter
    public let programName: String
    public let pid: Int32
    private let lock = NSLock()
    private var _level: Logger.Level

    public init(format: LogFormat, level: Logger.Level, programName: String = "vspcd", writer: LogWriter? = nil) {
        self.format = format
        self._level = level
        self.programName = programName
        let pid = getpid()
        self.pid = pid
        self.writer = writer ?? LogWriter(dropNotice: { count in
            LogLineFormatter(format: format, programName: programName, pid: pid)
                .line(level: .warning, message: "\(count) log lines dropped", metadata: ["dropped": "\(count)"], time: Date())
        })
    }

    public var level: Logger.Level {
        get { lock.lock(); defer { lock.unlock() }; return _level }
        set { lock.lock(); _level = newValue; lock.unlock() }
    }

    public var formatter: LogLineFormatter { LogLineFormatter(format: format, programName: programName, pid: pid) }

    /// Installs the daemon's handler for every logger (`LoggingSystem.bootstrap` may be called once).
    public func bootstrap() {
        LoggingSystem.bootstrap { [self] label in DaemonLogHandler(label: label, control: self) }
    }
}

extension LogVerbosity {
    public var loggerLevel: Logger.Level {
        switch self {
        case .notice: return .notice
        case .info: return .info
        case .debug: return .debug
        }
    }
}

/// The daemon's `LogHandler`: formats on the caller's thread (cheap) and hands the line to the `LogWriter`,
/// which writes it on its own thread.
public struct DaemonLogHandler: LogHandler {
    public let label: String
    public let control: LogControl
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    /// A level set on one logger (`logger.logLevel = ...`); nil follows the shared, reloadable level.
    private var ownLevel: Logger.Level?

    public init(label: String, control: LogControl, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.control = control
        self.metadataProvider = metadataProvider
    }

    public var logLevel: Logger.Level {
        get { ownLevel ?? control.level }
        set { ownLevel = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let own = event.metadata { all.merge(own) { $1 } }
        control.writer.enqueue(control.formatter.line(level: event.level, message: event.message.description,
                                                      metadata: all, time: Date()))
    }
}

/// Formats one log line, newline included. Text escapes controls visibly (`\x0a`, `\u{202e}`) so that a name
/// with a newline cannot forge a line; JSON escapes them in its strings. Messages longer than 16 KiB are cut.
public struct LogLineFormatter: Sendable {
    public var format: LogFormat
    public var programName: String
    public var pid: Int32
    public static let maxMessageBytes = 16 * 1024

    public init(format: LogFormat, programName: String = "vspcd", pid: Int32) {
        self.format = format
        self.programName = programName
        self.pid = pid
    }

    public func line(level: Logger.Level, message: String, metadata: Logger.Metadata, time: Date) -> String {
        let message = Self.bounded(message)
        switch format {
        case .text:
            var text = "<\(Self.syslogPriority(level))>\(programName)[\(pid)]: \(level.rawValue.uppercased()) "
            text += VisibleEscaping.escape(message)
            for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
                text += " \(VisibleEscaping.escape(key))=\(VisibleEscaping.escape(Self.bounded(value.description)))"
            }
            return text + "\n"
        case .json:
            var text = "{\"time\":\"\(Self.timestamp(time))\",\"level\":\"\(level.rawValue)\",\"message\":\(JSONText.quoted(message))"
            for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
                let name = ["time", "level", "message"].contains(key) ? "metadata.\(key)" : key
                text += ",\(JSONText.quoted(name)):\(Self.json(value))"
            }
            return text + "}\n"
        }
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func bounded(_ text: String) -> String {
        guard text.utf8.count > maxMessageBytes else { return text }
        return String(decoding: text.utf8.prefix(maxMessageBytes), as: UTF8.self) + "... (cut)"
    }

    static func json(_ value: Logger.MetadataValue) -> String {
        switch value {
        case .string(let s): return JSONText.quoted(bounded(s))
        case .stringConvertible(let c): return JSONText.quoted(bounded(c.description))
        case .array(let items): return "[" + items.map(json).joined(separator: ",") + "]"
        case .dictionary(let d):
            return "{" + d.sorted { $0.key < $1.key }.map { "\(JSONText.quoted($0.key)):\(json($0.value))" }.joined(separator: ",") + "}"
        }
    }

    /// UTC, milliseconds: `2026-11-25T08:10:38.123Z`.
    static func timestamp(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        let millis = min(999, max(0, Int(((interval - Double(seconds)) * 1000).rounded(.down))))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ n: Int) -> String {
            let s = String(v)
            return s.count >= n ? s : String(repeating: "0", count: n - s.count) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }
}
