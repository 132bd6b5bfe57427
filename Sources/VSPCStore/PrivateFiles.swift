import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The database holds console scrollback (whatever the consoles printed, passwords included), so the files
/// vspcd creates are private to its user whatever the umask: files 0600, directories 0700.
public enum PrivateFiles {
    public static let fileMode: mode_t = 0o600
    public static let directoryMode: mode_t = 0o700

    public struct Failure: Error, CustomStringConvertible {
        public let path: String
        public let operation: String
        public let errno: Int32
        public var description: String { "cannot \(operation) \(path): \(String(cString: strerror(errno)))" }
    }

    /// Creates `path` and any missing parent with mode 0700 exactly. Existing directories are left as they are.
    public static func createDirectories(_ path: String) throws {
        if path.isEmpty || isDirectory(path) { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try createDirectories(parent) }
        if mkdir(path, directoryMode) != 0 {
            let error = errno
            if error == EEXIST && isDirectory(path) { return } // created meanwhile by someone else
            throw Failure(path: path, operation: "create directory", errno: error)
        }
        // mkdir's mode passes through the umask; set it exactly.
        if chmod(path, directoryMode) != 0 { throw Failure(path: path, operation: "chmod", errno: errno) }
    }

    /// Creates the file at `path` with mode 0600 exactly if it does not exist. Returns whether it was created.
    @discardableResult
    public static func createFile(_ path: String) throws -> Bool {
        var fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, fileMode)
        if fd < 0 {
            guard errno == EEXIST else { throw Failure(path: path, operation: "create", errno: errno) }
            var st = stat()
            if stat(path, &st) == 0 || errno != ENOENT { return false }
            // A symbolic link to a file not yet there: SQLite would create the target, so create it here.
            fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, fileMode)
            if fd < 0 { throw Failure(path: path, operation: "create", errno: errno) }
        }
        defer { close(fd) }
        if fchmod(fd, fileMode) != 0 { throw Failure(path: path, operation: "chmod", errno: errno) }
        return true
    }

    /// Removes the group and other permission bits of an existing file. Returns the old and new modes when it
    /// changed them, nil when the file is missing or was already private.
    public static func tighten(_ path: String) throws -> (old: mode_t, new: mode_t)? {
        var st = stat()
        guard stat(path, &st) == 0 else {
            if errno == ENOENT { return nil }
            throw Failure(path: path, operation: "stat", errno: errno)
        }
        let old = st.st_mode & 0o7777
        let new = old & 0o700
        guard old != new else { return nil }
        if chmod(path, new) != 0 { throw Failure(path: path, operation: "chmod", errno: errno) }
        return (old, new)
    }

    /// The permission bits of `path` (nil if it cannot be stat'ed).
    public static func mode(_ path: String) -> mode_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    /// `0644`-style spelling of a mode.
    public static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    private static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }
}
