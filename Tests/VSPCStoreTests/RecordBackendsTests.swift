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

    func testServerURLsAreRefusedClearly() {
        for (url, text) in [
            ("postgresql://vspc:secret@db.example/vspcd", "--db postgresql://...: PostgreSQL is not supported yet; give a SQLite database file path"),
            ("postgres://db/vspcd", "--db postgres://...: PostgreSQL is not supported yet; give a SQLite database file path"),
            ("mysql://db/x", "--db mysql://...: unknown database URL scheme; give a SQLite database file path"),
        ] {
            XCTAssertThrowsError(try RecordBackends.openForDaemon(url)) { XCTAssertEqual("\($0)", text) }
            XCTAssertThrowsError(try RecordBackends.openForReading(url)) { error in
                XCTAssertEqual("\(error)", text)
                XCTAssertFalse("\(error)".contains("secret"))
            }
        }
        XCTAssertNil(RecordBackends.urlScheme("/var/lib/vspcd/vspcd.db"))
        XCTAssertNil(RecordBackends.urlScheme("./odd://name.db"))
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
