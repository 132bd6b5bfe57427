import Foundation
import TOMLKit
import VSPCCore

/// Reads `--config PATH`: a TOML file whose top-level keys are vspcd's long flag names (`proxy = ":6779"`,
/// `ssl = true`). The values are checked later, with the command line, by `DaemonSettings.resolve`; here a
/// syntax error, a table, a date, or an array for a key that is not repeatable (`watch = ["panic=Kernel panic"]` is) is
/// an error naming the file and line.
enum ConfigFile {
    /// A config file is a few hundred bytes; anything past this is refused rather than read.
    static let maxBytes = 1 << 20

    static func read(path: String) throws -> ConfigFileContents {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            throw SettingsError("config file \(path) \(reason)")
        }
        defer { try? handle.close() }
        let data: Data
        do {
            data = try handle.read(upToCount: maxBytes + 1) ?? Data()
        } catch {
            throw SettingsError("config file \(path) cannot be read: \(error)")
        }
        guard data.count <= maxBytes else { throw SettingsError("config file \(path) is larger than \(maxBytes) bytes") }
        guard let text = String(data: data, encoding: .utf8) else { throw SettingsError("\(path): not UTF-8 text") }
        return try parse(text, path: path)
    }

    static func parse(_ text: String, path: String) throws -> ConfigFileContents {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw SettingsError("\(path):\(error.source.begin.line):\(error.source.begin.column): \(error.description)")
        } catch {
            throw SettingsError("\(path): \(error)")
        }
        let lines = keyLines(text)
        var entries: [(key: String, item: TOMLValueConvertible, line: Int?)] = []
        for (key, item) in table { entries.append((key, item, lines[key])) }
        entries.sort { ($0.line ?? Int.max, $0.key) < ($1.line ?? Int.max, $1.key) }
        var settings: [FileSetting] = []
        for (key, item, line) in entries {
            let source = SettingSource.file(path: path, line: line)
            guard let setting = DaemonSettings.key(named: key) else {
                throw SettingsError(DaemonSettings.unknownKeyMessage(key, source: source))
            }
            let value: SettingValue
            switch item.type {
            case .string: value = .string(item.string ?? "")
            case .int: value = .integer(item.int ?? 0)
            case .double: value = .number(item.double ?? 0)
            case .bool: value = .bool(item.bool ?? false)
            case .table: throw SettingsError("\(source.naming(key)) must be \(setting.kind.phrase), not a table")
            case .array:
                guard setting.kind == .list else {
                    throw SettingsError("\(source.naming(key)) must be \(setting.kind.phrase), not an array")
                }
                var items: [String] = []
                for element in item.array ?? [] {
                    guard let text = element.string else {
                        throw SettingsError("\(source.naming(key)) must be an array of strings")
                    }
                    items.append(text)
                }
                value = .list(items)
            case .date, .time, .dateTime: throw SettingsError("\(source.naming(key)) must be \(setting.kind.phrase), not a date or time")
            }
            settings.append(FileSetting(key: key, value: value, line: line))
        }
        return ConfigFileContents(path: path, settings: settings)
    }

    /// The line of each top-level key (`key =`, `"key" =`, `key.sub =`) and table header (`[key]`,
    /// `[[key]]`, `[key.sub]`), first occurrence. TOMLKit gives values without positions, and every key vspcd
    /// knows is top-level, so a scan of the text is enough to point at the right line.
    static func keyLines(_ text: String) -> [String: Int] {
        var result: [String: Int] = [:]
        var inMultiline: String?
        var afterHeader = false
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.drop { $0 == " " || $0 == "\t" }
            if let delimiter = inMultiline {
                if line.contains(delimiter) { inMultiline = nil }
                continue
            }
            for delimiter in ["\"\"\"", "\'\'\'"] where line.components(separatedBy: delimiter).count == 2 {
                inMultiline = delimiter
            }
            if line.hasPrefix("[") {
                let name = leadingKey(line.drop { $0 == "[" || $0 == " " || $0 == "\t" })
                if let name, result[name] == nil { result[name] = index + 1 }
                afterHeader = true
            } else if !afterHeader, let name = leadingKey(line), result[name] == nil {
                result[name] = index + 1
            }
        }
        return result
    }

    /// The first key of `text` (bare or quoted) when a `=`, `.` or `]` follows it.
    static func leadingKey(_ text: Substring) -> String? {
        var rest = text
        let name: String
        if let quote = rest.first, quote == "\"" || quote == "'" {
            rest = rest.dropFirst()
            guard let end = rest.firstIndex(of: quote) else { return nil }
            name = String(rest[..<end])
            rest = rest[rest.index(after: end)...]
        } else {
            let bare = rest.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
            guard !bare.isEmpty else { return nil }
            name = String(bare)
            rest = rest.dropFirst(bare.count)
        }
        rest = rest.drop { $0 == " " || $0 == "\t" }
        guard let next = rest.first, next == "=" || next == "." || next == "]" else { return nil }
        return name
    }
}
