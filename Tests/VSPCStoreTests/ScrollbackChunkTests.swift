import Foundation
import GRDB
import XCTest
import VSPCCore
@testable import VSPCStore

/// Scrollback on disk is appended by what changed and trimmed to the console's size.
final class ScrollbackChunkTests: XCTestCase {
    var dir: URL!
    let uuid = "0123456789abcdef0123456789abcdef"

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vspcd-chunks-\(UUID().uuidString)")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    private func chunkCount(_ path: String) throws -> Int {
        try DatabaseQueue(path: path).read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM scrollback_chunk") ?? 0
        }
    }

    func testAppendsAreConcatenatedAndTrimmedToTheLastBytesKept() throws {
        let path = dir.appendingPathComponent("s.db").path
        let store = try Store(path: path)
        var model: [UInt8] = []
        for i in 0..<200 {
            let chunk = [UInt8](repeating: UInt8(i % 251), count: 1 + i % 7)
            model += chunk
            store.enqueue([.appendScrollback(uuid: uuid, label: "", data: chunk, keep: 64, at: Date())], completion: nil)
        }
        store.flush()
        let saved = try XCTUnwrap(try store.scrollback(uuid: uuid, label: ""))
        XCTAssertGreaterThanOrEqual(saved.count, 64)
        XCTAssertEqual(saved, Array(model.suffix(saved.count)), "whole chunks, in order, ending with the newest byte")
        XCTAssertLessThanOrEqual(try chunkCount(path), ScrollbackChunks.maxChunks + 1)
        XCTAssertEqual(try store.allScrollback().first?.data, saved)

        // A replace (after a failed save) starts over from the whole ring.
        store.enqueue(.saveScrollback(uuid: uuid, label: "", data: [1, 2, 3], at: Date()))
        store.enqueue([.appendScrollback(uuid: uuid, label: "", data: [4], keep: 64, at: Date())], completion: nil)
        store.flush()
        XCTAssertEqual(try store.scrollback(uuid: uuid, label: ""), [1, 2, 3, 4])
    }

    func testMigrationMovesTheOldWholeRingTableIntoChunks() throws {
        let path = dir.appendingPathComponent("old.db").path
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        // A database as the daemon before migration 0002 left it.
        let initial = try XCTUnwrap(EmbeddedMigrations.sqlite.first { $0.name.hasPrefix("0001") })
        try DatabaseQueue(path: path).write { db in
            try db.execute(sql: initial.sql)
            try db.execute(sql: "CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)")
            try db.execute(sql: "INSERT INTO grdb_migrations VALUES (?)", arguments: [initial.name])
            try db.execute(sql: "INSERT INTO scrollback (uuid, label, data, updated_at) VALUES (?, '', ?, 1)",
                           arguments: [uuid, Data("old ring".utf8)])
        }
        let store = try Store(path: path)
        XCTAssertEqual(try store.scrollback(uuid: uuid, label: ""), Array("old ring".utf8))
    }
}
