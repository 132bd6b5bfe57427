/// One `--watch NAME=REGEX`: console lines that match REGEX (POSIX extended, like `grep -E`) are recorded as
/// `console-match` events and counted in `vspc_console_matches_total{pattern="NAME"}`.
public struct WatchPattern: Equatable, Sendable {
    public var name: String
    public var regex: String

    public static let maxNameLength = 64
    public static let maxRegexLength = 1024

    public init(name: String, regex: String) {
        self.name = name
        self.regex = regex
    }

    /// `NAME=REGEX`, the name letters, digits, `-`, `_` and `.`; the problem in a sentence otherwise.
    public static func parse(_ text: String) -> (pattern: WatchPattern?, problem: String?) {
        guard let equals = text.firstIndex(of: "=") else {
            return (nil, "must be NAME=REGEX, e.g. panic=Kernel panic - not syncing")
        }
        let name = String(text[..<equals]), regex = String(text[text.index(after: equals)...])
        guard !name.isEmpty, name.utf8.count <= maxNameLength,
            name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0)) })
        else {
            return (nil, "must be NAME=REGEX with a NAME of letters, digits, '-', '_' or '.' (at most \(maxNameLength))")
        }
        guard !regex.isEmpty, regex.utf8.count <= maxRegexLength else {
            return (nil, "must be NAME=REGEX with a REGEX of 1 to \(maxRegexLength) bytes")
        }
        do {
            _ = try LineMatcher(pattern: regex)
        } catch {
            return (nil, "has a REGEX that does not compile: \(error)")
        }
        return (WatchPattern(name: name, regex: regex), nil)
    }

    /// Every `--watch`, parsed; the first problem names the pattern. Names must be unique.
    public static func parseAll(_ texts: [String]) -> Result<[WatchPattern], SettingsError> {
        var patterns: [WatchPattern] = []
        for text in texts {
            let (pattern, problem) = parse(text)
            guard let pattern else { return .failure(SettingsError("--watch \(text.debugDescription) \(problem ?? "")")) }
            guard !patterns.contains(where: { $0.name == pattern.name }) else {
                return .failure(SettingsError("--watch: the name \(pattern.name) is used twice"))
            }
            patterns.append(pattern)
        }
        return .success(patterns)
    }
}
