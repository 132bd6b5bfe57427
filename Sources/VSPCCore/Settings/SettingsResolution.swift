/// Settings with the source of each value, so that a later check can name the file and line, or the flag.
public struct ResolvedSettings: Equatable, Sendable {
    public var settings: DaemonSettings
    public var sources: [String: SettingSource]

    public init(settings: DaemonSettings, sources: [String: SettingSource] = [:]) {
        self.settings = settings
        self.sources = sources
    }

    public func source(of key: String) -> SettingSource { sources[key] ?? .builtIn }

    /// An error about `key` that names where its value came from.
    public func error(_ key: String, _ problem: String) -> SettingsError {
        SettingsError("\(source(of: key).naming(key)) \(problem)")
    }
}

extension DaemonSettings {
    /// Built-in defaults, overridden by the config file, overridden by the command line. Every value is
    /// checked; an unknown key, a value of the wrong type or out of range, or settings that contradict each
    /// other throw a `SettingsError` naming the file and line (or the flag). `commandLine` holds only the
    /// flags that were given.
    public static func resolve(file: ConfigFileContents?, commandLine: [String: SettingValue]) throws -> ResolvedSettings {
        var resolved = ResolvedSettings(settings: DaemonSettings())
        if let file {
            let ordered = file.settings.enumerated().sorted { ($0.element.line ?? Int.max, $0.offset) < ($1.element.line ?? Int.max, $1.offset) }
            for (_, entry) in ordered {
                let source = SettingSource.file(path: file.path, line: entry.line)
                guard let key = key(named: entry.key) else {
                    throw SettingsError(unknownKeyMessage(entry.key, source: source))
                }
                try resolved.set(key, entry.value, from: source)
            }
        }
        for name in commandLine.keys.sorted() {
            guard let key = key(named: name), let value = commandLine[name] else {
                throw SettingsError("--\(name) is not a setting")
            }
            try resolved.set(key, value, from: .commandLine)
        }
        try resolved.checkTogether()
        return resolved
    }

    public static func unknownKeyMessage(_ name: String, source: SettingSource) -> String {
        let location: String
        switch source {
        case .file(let path, let line?): location = "\(path):\(line): "
        case .file(let path, nil): location = "\(path): "
        default: location = ""
        }
        var message = "\(location)unknown key \(SettingValue.string(name))"
        if let near = keys.map(\.name).min(by: { editDistance($0, name) < editDistance($1, name) }),
           editDistance(near, name) <= 2 {
            message += " (did you mean \(near)?)"
        }
        return message
    }

    /// Levenshtein distance, for "did you mean"; names are short.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8.prefix(64)), b = Array(b.utf8.prefix(64))
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}

extension ResolvedSettings {
    mutating func set(_ key: SettingKey, _ value: SettingValue, from source: SettingSource) throws {
        guard let typed = key.kind.coerce(value) else {
            throw SettingsError("\(source.naming(key.name)) must be \(key.kind.phrase), not \(value.typePhrase)")
        }
        if let problem = key.apply(typed, to: &settings) {
            // A problem that quotes the text already does not echo it again.
            var quoted = false
            if case .string = typed { quoted = problem.contains("\(typed)") }
            let got = quoted ? "" : " (got \(typed))"
            throw SettingsError("\(source.naming(key.name)) \(problem)\(got)")
        }
        sources[key.name] = source
    }

    /// `key` as the user wrote `other`: `--ssl-cert` on the command line, `ssl-cert` in the file.
    func spelled(_ key: String, like other: String) -> String {
        source(of: other) == .commandLine ? "--\(key)" : key
    }

    /// The checks that involve more than one key.
    func checkTogether() throws {
        let s = settings
        if s.portRangeStart > s.portRangeEnd {
            let blamed = source(of: "port-range-end") == .builtIn ? "port-range-start" : "port-range-end"
            throw error(blamed, "makes an empty port range: start <= end is needed (got \(s.portRangeStart)-\(s.portRangeEnd))")
        }
        if let http = s.http, let metrics = s.metrics, http != metrics {
            throw error("metrics", "is another name for \(spelled("http", like: "metrics")); give one of them")
        }
        if s.replay > s.scrollback {
            throw error("replay", "must not be more than scrollback (\(s.scrollback))")
        }
        if (s.httpCert == nil) != (s.httpKey == nil) {
            throw error(s.httpCert == nil ? "http-key" : "http-cert",
                        "needs \(spelled(s.httpCert == nil ? "http-cert" : "http-key", like: s.httpCert == nil ? "http-key" : "http-cert")) too")
        }
        if s.httpClientCa != nil, s.httpCert == nil {
            throw error("http-client-ca", "needs \(spelled("http-cert", like: "http-client-ca")) and \(spelled("http-key", like: "http-client-ca"))")
        }
        if s.httpCert != nil, s.http == nil, s.metrics == nil {
            throw error("http-cert", "is only used with \(spelled("http", like: "http-cert"))")
        }
        let clusterTLS = ["cluster-cert", "cluster-key", "cluster-ca"]
        if let given = clusterTLS.first(where: { s.value(of: $0) != nil }),
           let missing = clusterTLS.first(where: { s.value(of: $0) == nil }) {
            throw error(given, "needs \(spelled(missing, like: given)) too: the cluster link's TLS takes cluster-cert, cluster-key and cluster-ca together")
        }
        if s.ssl {
            for key in ["ssl-cert", "ssl-key"] where s.value(of: key) == nil {
                throw error("ssl", "needs \(spelled("ssl-cert", like: "ssl")) PEM and \(spelled("ssl-key", like: "ssl")) PEM")
            }
        } else {
            for key in ["ssl-cert", "ssl-key"] where s.value(of: key) != nil {
                throw error(key, "is only used with \(spelled("ssl", like: key))")
            }
        }
    }
}

extension SettingValue {
    /// "a string", "an integer": what a wrong value was.
    var typePhrase: String {
        switch self {
        case .string: return "a string"
        case .integer: return "an integer"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .list: return "an array"
        }
    }
}
