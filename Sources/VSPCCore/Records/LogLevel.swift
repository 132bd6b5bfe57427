/// Severity of a log line; the driver maps it onto its logging system.
public enum LogLevel: Int, Comparable, Sendable {
    case debug, info, notice, warning, error, critical
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}
