import Foundation
import VSPCCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension ConsoleLogFileSet {
    /// Deletes the files of every console silent for longer than `maxAgeDays` (judged by the modification time of
    /// its live file, or of its newest rotated file when it has no live one). Only regular files whose names
    /// `ConsoleLogFiles.parse` reads are ever touched. Returns the consoles whose files went.
    @discardableResult
    func applyRetention(now: Date) -> [ConsoleKey] {
        guard settings.maxAgeDays > 0 else { return [] }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            fail("list", directory, errno)
            return []
        }
        struct Found {
            var name: String
            var parsed: ConsoleLogFiles.Parsed
            var modified: Date
        }
        var byConsole: [ConsoleKey: [Found]] = [:]
        for name in names {
            guard let parsed = ConsoleLogFiles.parse(name) else { continue }
            var st = stat()
            guard lstat(path(name), &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            #if canImport(Darwin)
            let time = st.st_mtimespec
            #else
            let time = st.st_mtim
            #endif
            let modified = Date(timeIntervalSince1970: Double(time.tv_sec) + Double(time.tv_nsec) / 1e9)
            byConsole[parsed.key, default: []].append(Found(name: name, parsed: parsed, modified: modified))
        }
        let limit = now.addingTimeInterval(-Double(settings.maxAgeDays) * 86_400)
        var deleted: [ConsoleKey] = []
        for (key, files) in byConsole {
            // The newest data file (live before `.1` before `.2`), else the newest index.
            let ranked = files.sorted { a, b in
                if a.parsed.isIndex != b.parsed.isIndex { return !a.parsed.isIndex }
                return (a.parsed.rotation ?? 0) < (b.parsed.rotation ?? 0)
            }
            guard let reference = ranked.first, reference.modified < limit else { continue }
            closeLog(key)
            for file in files { _ = remove(file.name) }
            deleted.append(key)
        }
        return deleted
    }
}
