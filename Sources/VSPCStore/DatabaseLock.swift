import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the daemon could not lock its database.
public enum DatabaseLockError: Error, CustomStringConvertible, Equatable {
    /// Another process holds the lock: another vspcd serves this database. `pid` is the one recorded in the
    /// lock file (nil if it has not written it yet, or the file is unreadable).
    case held(database: String, lockFile: String, pid: Int32?)
    /// The lock file could not be created, opened or locked.
    case failed(lockFile: String, reason: String)

    public var description: String {
        switch self {
        case let .held(database, lockFile, pid):
            let who = pid.map { "another vspcd (pid \($0))" } ?? "another vspcd (pid not yet recorded)"
            return "database \(database) is in use by \(who); only one daemon may serve a database (lock file \(lockFile))"
        case let .failed(lockFile, reason):
            return "cannot lock \(lockFile): \(reason)"
        }
    }
}

/// One daemon per database: an exclusive `flock` on `<database>.lock`, held for the daemon's lifetime.
///
/// The lock file is created 0600 (its directory 0700 if missing) and holds the holder's pid, which a second
/// daemon names in its refusal. The kernel drops the lock when the process ends, `kill -9` included, so a
/// leftover file never blocks a restart; the file is therefore never deleted (deleting it would let two
/// daemons lock two different files). The lock is on a separate file, not on the database: SQLite uses
/// POSIX record locks on the database, which a second descriptor's close would release. Read-only users
/// (`vspc history`, offline `vspc tail`) do not take it, so they work beside a running daemon.
public final class DatabaseLock: @unchecked Sendable {
    public let databasePath: String
    public let lockPath: String
    private var fd: Int32

    /// `<database>.lock`, beside the database; a symbolic link to the database is followed first, so every
    /// path to one database file names the same lock.
    public static func lockPath(for databasePath: String) -> String {
        if let real = resolve(databasePath) { return real + ".lock" }
        // No database yet: resolve its directory.
        let ns = databasePath as NSString
        let dir = ns.deletingLastPathComponent
        if let realDir = resolve(dir.isEmpty ? "." : dir) {
            return (realDir as NSString).appendingPathComponent(ns.lastPathComponent) + ".lock"
        }
        return databasePath + ".lock"
    }

    private static func resolve(_ path: String) -> String? {
        guard let real = realpath(path, nil) else { return nil }
        defer { free(real) }
        return String(cString: real)
    }

    /// Takes the lock or throws at once (never waits). Creates the database's directory (0700) if missing.
    public init(databasePath: String) throws {
        self.databasePath = databasePath
        let dir = (databasePath as NSString).deletingLastPathComponent
        do {
            try PrivateFiles.createDirectories(dir)
        } catch {
            throw DatabaseLockError.failed(lockFile: databasePath + ".lock", reason: "\(error)")
        }
        let path = Self.lockPath(for: databasePath)
        lockPath = path
        // O_NOFOLLOW: the lock file is vspcd's own, never a link planted to make it write elsewhere.
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, PrivateFiles.fileMode)
        guard fd >= 0 else {
            throw DatabaseLockError.failed(lockFile: path, reason: String(cString: strerror(errno)))
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let error = errno
            let pid = Self.readPID(fd)
            close(fd)
            fd = -1
            if error == EWOULDBLOCK {
                throw DatabaseLockError.held(database: databasePath, lockFile: path, pid: pid)
            }
            throw DatabaseLockError.failed(lockFile: path, reason: String(cString: strerror(error)))
        }
        // Ours now: private whatever the umask or an older file's mode, and naming this process.
        _ = fchmod(fd, PrivateFiles.fileMode)
        let text = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) != 0 || pwrite(fd, text, text.count, 0) != text.count {
            let reason = String(cString: strerror(errno))
            release()
            throw DatabaseLockError.failed(lockFile: path, reason: "cannot record the pid: \(reason)")
        }
    }

    deinit { release() }

    /// Whether this object still holds the lock.
    public var isHeld: Bool { fd >= 0 }

    /// Drops the lock (also done by deinit and by the process's exit). The file stays.
    public func release() {
        guard fd >= 0 else { return }
        _ = flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    /// The pid recorded in the lock file, if it holds one.
    public static func recordedPID(lockPath: String) -> Int32? {
        let fd = open(lockPath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return readPID(fd)
    }

    private static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buffer, buffer.count, 0)
        guard n > 0 else { return nil }
        let text = String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let pid = Int32(text), pid > 0 else { return nil }
        return pid
    }
}
