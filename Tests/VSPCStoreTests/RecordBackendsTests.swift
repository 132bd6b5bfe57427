import Foundation
import GRDB
import XCTest
@testable import VSPCStore
import VSPCCore

final class RecordBackendsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vspcbackends-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func testAFilePathOpensSQLiteWithTheDaemonLock() throws {
        let path = dir.appendingPathComponent("vspcd.db").path
        let backend = try RecordBackends.openForDaemon(path)
        XCTAssertTrue(backend is Store)
        XCTAssertThrowsError(try RecordBackends.openForDaemon(path)) { error in
            guard case .held = error as? DatabaseLockError else { return XCTFail("\(error)") }
        }
        let reader = try RecordBackends.openForReading(path)
        XCTAssertEqual(try reader.loadAssignments(), [])
        backend.close()
        XCTAssertNoThrow(try RecordBackends.openForDaemon(path).close(), "close() released the lock")
    }

    func testUnknownServerURLsAreRefusedClearly() {
        for (url, text) in [
            ("mysql://vspc:secret@db/x", "--db mysql://...: unknown database URL scheme; give a SQLite database file path or a postgresql:// URL"),
        ] {
            XCTAssertThrowsError(try RecordBackends.openForDaemon(url)) { XCTAssertEqual("\($0)", text) }
            XCTAssertThrowsError(try RecordBackends.openForReading(url)) { error in
                XCTAssertEqual("\(error)", text)
                XCTAssertFalse("\(error)".contains("secret"))
            }
        }
        XCTAssertThrowsError(try RecordBackends.openCluster("/var/lib/vspcd/vspcd.db", node: "a")) { error in
            XCTAssertEqual(error as? RecordBackendError, .clusterNeedsPostgres)
        }
        XCTAssertNil(RecordBackends.urlScheme("/var/lib/vspcd/vspcd.db"))
        XCTAssertNil(RecordBackends.urlScheme("./odd://name.db"))
    }

    func testPostgresURLsParseAndNeverShowThePassword() throws {
        let url = try PostgresURL("postgresql://vspc:s%40cret@db.example:6432/vspcd?sslmode=require")
        XCTAssertEqual(url.user, "vspc")
        XCTAssertEqual(url.password, "s@cret")
        XCTAssertEqual(url.host, "db.example")
        XCTAssertEqual(url.port, 6432)
        XCTAssertEqual(url.database, "vspcd")
        XCTAssertEqual(url.sslMode, .require)
        XCTAssertEqual(url.redacted, "postgresql://vspc:***@db.example:6432/vspcd?sslmode=require")
        XCTAssertEqual("\(url)", url.redacted)
        let short = try PostgresURL("postgres://vspc@[::1]/db")
        XCTAssertEqual(short.host, "::1")
        XCTAssertEqual(short.port, 5432)
        XCTAssertEqual(short.sslMode, .prefer)
        XCTAssertEqual(short.redacted, "postgresql://vspc@[::1]:5432/db")
        XCTAssertEqual(try PostgresURL("postgresql://vspc@h").database, "vspc")
        XCTAssertEqual(RecordBackends.redacted("postgresql://u:pw@h/d"), "postgresql://u:***@h:5432/d")
        XCTAssertEqual(PostgresURL.redact("cannot reach postgresql://u:pw@h:1/d now"), "cannot reach postgresql://u:***@h:1/d now")
        for bad in ["postgresql://secret@h/d?sslmode=maybe", "postgresql://:secret@h/d", "postgresql://u:secret@h/d?x=1",
                    "postgresql://u:secret@h:70000/d"] {
            XCTAssertThrowsError(try PostgresURL(bad), bad) { error in
                XCTAssertFalse("\(error)".contains("secret") && !bad.hasPrefix("postgresql://secret"), "\(error)")
            }
        }
        // A server that is not there: unreachable, in words without the password.
        let port = try PrivatePostgres.freePort()
        XCTAssertThrowsError(try RecordBackends.openForDaemon("postgresql://u:secret@127.0.0.1:\(port)/d?sslmode=disable")) { error in
            XCTAssertFalse("\(error)".contains("secret"), "\(error)")
            XCTAssertTrue("\(error)".contains("postgresql://u:***@127.0.0.1:\(port)/d"), "\(error)")
        }
    }

    func testFailureKinds() throws {
        let store = try Store(path: dir.appendingPathComponent("k.db").path)
        XCTAssertEqual(store.failure(of: DatabaseError(resultCode: .SQLITE_FULL)).kind, .diskFull)
        XCTAssertEqual(store.failure(of: DatabaseError(resultCode: .SQLITE_READONLY)).kind, .readOnly)
        XCTAssertEqual(store.failure(of: DatabaseError(resultCode: .SQLITE_BUSY)).kind, .busy)
        XCTAssertEqual(store.failure(of: StoreError.readOnly(path: "x")), StoreFailure(.readOnly, "database at x is opened read-only"))
        XCTAssertEqual(store.failure(of: StoreError.invalidUUID("zz")).kind, .other)
        let full = DatabaseError(resultCode: .SQLITE_FULL)
        XCTAssertEqual(store.failure(of: full).message, "\(full)", "the log keeps the error's own words")
    }
}
