import Foundation
import XCTest
@testable import VSPCStore
import VSPCCore

/// The database and what SQLite creates beside it are private whatever the umask; one daemon per database.
final class PrivateFilesTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vspcstore-private-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// Runs `body` with the process's umask set to `mask`, and restores it.
    private func withUmask<T>(_ mask: mode_t, _ body: () throws -> T) rethrows -> T {
        let old = umask(mask)
        defer { umask(old) }
        return try body()
    }

    private func mode(_ path: String) -> String {
        PrivateFiles.mode(path).map(PrivateFiles.octal) ?? "missing"
    }

    /// A committed write, so that SQLite has its -wal and -shm files.
    private func writeSomething(_ store: Store) {
        let sem = DispatchSemaphore(value: 0)
        store.enqueue(.event(ConsoleEvent(kind: "test", uuid: nil, name: "t")), completion: { _ in sem.signal() })
        sem.wait()
    }

    func testNewDatabaseAndDirectoriesArePrivateWhateverTheUmask() throws {
        for (i, mask) in [mode_t(0), 0o022, 0o002, 0o277].enumerated() {
            let top = dir.appendingPathComponent("run\(i)").path
            let db = top + "/sub/vspcd.db"
            let store = try withUmask(mask) { try Store(path: db) }
            withUmask(mask) { writeSomething(store) }
            let context = "umask \(PrivateFiles.octal(mask))"
            XCTAssertEqual(mode(top), "0700", context)
            XCTAssertEqual(mode(top + "/sub"), "0700", context)
            XCTAssertEqual(mode(db), "0600", context)
            XCTAssertEqual(mode(db + "-wal"), "0600", context)
            XCTAssertEqual(mode(db + "-shm"), "0600", context)
        }
    }

    func testADatabaseBehindADanglingSymlinkIsCreatedPrivate() throws {
        let target = dir.appendingPathComponent("data/real.db").path
        try FileManager.default.createDirectory(atPath: dir.appendingPathComponent("data").path, withIntermediateDirectories: false)
        let link = dir.appendingPathComponent("vspcd.db").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        let store = try withUmask(0) { try Store(path: link) }
        writeSomething(store)
        XCTAssertEqual(mode(target), "0600")
        XCTAssertEqual(mode(target + "-wal"), "0600")
    }

    func testAnExistingDirectoryIsLeftAsItIs() throws {
        let shared = dir.appendingPathComponent("shared").path
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o755])
        _ = try withUmask(0) { try Store(path: shared + "/vspcd.db") }
        XCTAssertEqual(mode(shared), "0755")
        XCTAssertEqual(mode(shared + "/vspcd.db"), "0600")
    }

    func testAWorldReadableDatabaseIsMadePrivateAtOpen() throws {
        let db = dir.appendingPathComponent("old.db").path
        do {
            let store = try Store(path: db)
            writeSomething(store)
        }
        // As an older vspcd left it, with its -wal and -shm (recreated here if SQLite removed them at close).
        for file in [db, db + "-wal", db + "-shm"] {
            if !FileManager.default.fileExists(atPath: file) { _ = FileManager.default.createFile(atPath: file, contents: nil) }
            XCTAssertEqual(chmod(file, 0o644), 0)
        }
        let store = try withUmask(0) { try Store(path: db) }
        writeSomething(store)
        XCTAssertEqual(mode(db), "0600")
        XCTAssertEqual(mode(db + "-wal"), "0600")
        XCTAssertEqual(mode(db + "-shm"), "0600")
        XCTAssertEqual(try store.events(uuid: nil).count, 2, "the data is intact")
    }

    func testReadOnlyOpenChangesNothing() throws {
        let db = dir.appendingPathComponent("ro.db").path
        do { writeSomething(try Store(path: db)) }
        XCTAssertEqual(chmod(db, 0o644), 0)
        _ = try Store(path: db, readOnly: true)
        XCTAssertEqual(mode(db), "0644", "a reader (vspc history) never changes the daemon's files")
        XCTAssertFalse(FileManager.default.fileExists(atPath: db + ".lock"))
    }

    func testTighten() throws {
        let file = dir.appendingPathComponent("f").path
        XCTAssertNil(try PrivateFiles.tighten(file), "missing")
        _ = FileManager.default.createFile(atPath: file, contents: nil)
        for (before, after) in [(mode_t(0o644), mode_t(0o600)), (0o755, 0o700), (0o666, 0o600), (0o604, 0o600), (0o400, 0o400)] {
            XCTAssertEqual(chmod(file, before), 0)
            let change = try PrivateFiles.tighten(file)
            if before == after {
                XCTAssertNil(change)
            } else {
                XCTAssertEqual(change?.old, before)
                XCTAssertEqual(change?.new, after)
            }
            XCTAssertEqual(PrivateFiles.mode(file), after)
        }
        XCTAssertEqual(PrivateFiles.octal(0o600), "0600")
        XCTAssertEqual(PrivateFiles.octal(0o4755), "4755")
    }

    func testCreateDirectoriesFailsClearly() throws {
        let file = dir.appendingPathComponent("plain-file").path
        _ = FileManager.default.createFile(atPath: file, contents: nil)
        XCTAssertThrowsError(try Store(path: file + "/sub/vspcd.db")) { error in
            XCTAssertTrue("\(error)".contains(file), "\(error)")
        }
    }
}

final class DatabaseLockTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vspcstore-lock-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func testASecondLockIsRefusedWithTheHoldersPid() throws {
        let db = dir.appendingPathComponent("vspcd.db").path
        let first = try DatabaseLock(databasePath: db)
        XCTAssertTrue(first.isHeld)
        XCTAssertEqual(first.lockPath, DatabaseLock.lockPath(for: db))
        XCTAssertEqual(DatabaseLock.recordedPID(lockPath: first.lockPath), getpid())
        XCTAssertThrowsError(try DatabaseLock(databasePath: db)) { error in
            XCTAssertEqual(error as? DatabaseLockError,
                           .held(database: db, lockFile: first.lockPath, pid: getpid()))
            let text = "\(error)"
            XCTAssertTrue(text.contains(db), text)
            XCTAssertTrue(text.contains("pid \(getpid())"), text)
        }
        // A reader of the database is not affected.
        _ = try Store(path: db)
        _ = try Store(path: db, readOnly: true)

        first.release()
        XCTAssertFalse(first.isHeld)
        let second = try DatabaseLock(databasePath: db)
        XCTAssertTrue(second.isHeld)
        XCTAssertTrue(FileManager.default.fileExists(atPath: first.lockPath), "the lock file is never deleted")
    }

    func testReleasedOnDeinit() throws {
        let db = dir.appendingPathComponent("vspcd.db").path
        do { _ = try DatabaseLock(databasePath: db) }
        XCTAssertNoThrow(try DatabaseLock(databasePath: db))
    }

    func testLockFileAndDirectoryArePrivateWhateverTheUmask() throws {
        let old = umask(0)
        defer { umask(old) }
        let db = dir.appendingPathComponent("new/dir/vspcd.db").path
        let lock = try DatabaseLock(databasePath: db)
        XCTAssertEqual(PrivateFiles.mode(lock.lockPath), 0o600)
        XCTAssertEqual(PrivateFiles.mode(dir.appendingPathComponent("new").path), 0o700)
        XCTAssertEqual(PrivateFiles.mode(dir.appendingPathComponent("new/dir").path), 0o700)
    }

    func testAStaleLockFileDoesNotBlock() throws {
        let db = dir.appendingPathComponent("vspcd.db").path
        // Left by a daemon that was killed: a pid, no lock, and a lax mode.
        _ = FileManager.default.createFile(atPath: db + ".lock", contents: Data("99999999\n".utf8))
        XCTAssertEqual(chmod(db + ".lock", 0o644), 0)
        let lock = try DatabaseLock(databasePath: db)
        XCTAssertEqual(DatabaseLock.recordedPID(lockPath: lock.lockPath), getpid())
        XCTAssertEqual(PrivateFiles.mode(lock.lockPath), 0o600)
    }

    func testEveryPathToOneDatabaseNamesOneLock() throws {
        let db = dir.appendingPathComponent("real.db").path
        _ = try Store(path: db)
        let link = dir.appendingPathComponent("link.db").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: db)
        let lock = try DatabaseLock(databasePath: db)
        XCTAssertThrowsError(try DatabaseLock(databasePath: link))
        XCTAssertThrowsError(try DatabaseLock(databasePath: dir.path + "/./real.db"))
        withExtendedLifetime(lock) {}
    }

    func testALockFileThatIsASymlinkIsRefused() throws {
        let db = dir.appendingPathComponent("vspcd.db").path
        let elsewhere = dir.appendingPathComponent("victim").path
        _ = FileManager.default.createFile(atPath: elsewhere, contents: Data("keep".utf8))
        try FileManager.default.createSymbolicLink(atPath: db + ".lock", withDestinationPath: elsewhere)
        XCTAssertThrowsError(try DatabaseLock(databasePath: db)) { error in
            guard case .failed = error as? DatabaseLockError else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(try String(contentsOfFile: elsewhere, encoding: .utf8), "keep")
    }
}
