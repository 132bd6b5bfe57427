/// A daemon setting's value, as a config file or the command line gives it.
public enum SettingValue: Equatable, Sendable, CustomStringConvertible {
    case string(String)
    case integer(Int)
    case number(Double)
    case bool(Bool)
    /// A repeatable flag (`--watch A --watch B`), an array in the config file.
    case list([String])

    /// As a log line shows it: numbers without a needless `.0`, strings quoted and escaped.
    public var description: String {
        switch self {
        case .string(let s): return "\"" + VisibleEscaping.escape(s, escapeBackslash: true).replacingQuotes() + "\""
        case .integer(let i): return String(i)
        case .number(let d): return Self.format(d)
        case .bool(let b): return b ? "true" : "false"
        case .list(let items): return "[" + items.map { SettingValue.string($0).description }.joined(separator: ", ") + "]"
        }
    }

    static func format(_ d: Double) -> String {
        if d.isFinite, d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return String(d)
    }
}

extension String {
    fileprivate func replacingQuotes() -> String {
        guard contains("\"") else { return self }
        return split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\\\"")
    }
}

/// The type a setting takes. A `number` also takes an integer (`vm-expire-time = 3600`).
public enum SettingKind: String, Sendable {
    case string, integer, number, boolean, list

    /// "a string", "an integer", ...: for error messages.
    public var phrase: String {
        switch self {
        case .string: return "a string"
        case .integer: return "an integer"
        case .number: return "a number"
        case .boolean: return "true or false"
        case .list: return "an array of strings"
        }
    }

    /// `value` as this kind, or nil when it is of another type.
    public func coerce(_ value: SettingValue) -> SettingValue? {
        switch (self, value) {
        case (.string, .string), (.integer, .integer), (.number, .number), (.boolean, .bool), (.list, .list): return value
        case (.number, .integer(let i)): return .number(Double(i))
        case (.list, .string(let s)): return .list([s])
        default: return nil
        }
    }
}

/// Where a setting's value came from; errors name it.
public enum SettingSource: Equatable, Sendable {
    case builtIn
    case commandLine
    case file(path: String, line: Int?)

    /// The prefix of an error about `key` from this source: `--proxy`, `/etc/vspcd/vspcd.toml:3: proxy`.
    public func naming(_ key: String) -> String {
        switch self {
        case .builtIn: return key
        case .commandLine: return "--\(key)"
        case .file(let path, let line?): return "\(path):\(line): \(key)"
        case .file(let path, nil): return "\(path): \(key)"
        }
    }
}

/// A start-up or reload error in the settings; its text names the file and line, or the flag.
public struct SettingsError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One `key = value` of a config file, with its line when it is known.
public struct FileSetting: Equatable, Sendable {
    public var key: String
    public var value: SettingValue
    public var line: Int?

    public init(key: String, value: SettingValue, line: Int?) {
        self.key = key
        self.value = value
        self.line = line
    }
}

/// A config file as read: its path and its top-level settings.
public struct ConfigFileContents: Equatable, Sendable {
    public var path: String
    public var settings: [FileSetting]

    public init(path: String, settings: [FileSetting]) {
        self.path = path
        self.settings = settings
    }
}
