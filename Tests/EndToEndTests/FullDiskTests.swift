import Foundation
import VSPCClient
import VSPCCore
import VSPCSim
import VSPCStore
import XCTest

/// A full disk never takes a console away (issue 8): the database lives on a small tmpfs that the test fills.
final class FullDiskTests: TmpfsTestCase {
    func testAVMConnectingWhileTheDiskIsFullGetsItsPortListedUnsavedAndSavedLater() async throws {
        let db = mountPoint.appendingPathComponent("vspcd.db").path
        daemon.extraArguments = ["--db", db]
        try await daemon.start()
        let filler = mountPoint.appendingPathComponent("filler").path
        fill(filler)

        let uuid = testUUID(1)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "on-a-full-disk")
        defer { vm.close() }
        let listed = try await daemon.waitForList("listed unsaved") { $0.contains { $0.uuid == uuid && $0.saved == false } }
        let info = try XCTUnwrap(listed.first { $0.uuid == uuid })
        XCTAssertTrue(info.listening)
        XCTAssertTrue(info.connected)

        // The console works: output reaches a person, input reaches the VM.
        let client = try await SimulatedClient.connect(port: info.port)
        defer { client.close() }
        try await daemon.waitForList("client") { $0.first { $0.uuid == uuid }?.clients == 1 }
        vm.output("still here\r\n")
        try await client.waitForData(count: 12)
        XCTAssertEqual(client.data, Array("still here\r\n".utf8))
        client.send(Array("ok".utf8))
        try await vm.waitForData(count: 2)

        let table = try Daemon.run("vspc", ["list", "--table", "--admin", "127.0.0.1:\(daemon.adminPort)"])
        XCTAssertTrue(table.out.contains("\(info.port)*"), table.out)
        XCTAssertTrue(table.out.contains("(* = not yet saved"), table.out)
        let classic = try Daemon.run("vspc", ["list", "--admin", "127.0.0.1:\(daemon.adminPort)"])
        XCTAssertEqual(classic.out, "on-a-full-disk:\(UUIDSpelling.classic(uuid)):\(info.port)\n")

        // Room again: the assignment is written by a retry, and the port is the same.
        try FileManager.default.removeItem(atPath: filler)
        let saved = try await daemon.waitForList("saved after the disk recovers", timeout: 60) {
            $0.contains { $0.uuid == uuid && $0.saved == true }
        }
        XCTAssertEqual(saved.first { $0.uuid == uuid }?.port, info.port)
        try await daemon.stop()
        let log = daemon.log
        XCTAssertEqual(log.components(separatedBy: "cannot write to the database").count - 1, 1, log)
        XCTAssertEqual(log.components(separatedBy: "the database takes writes again").count - 1, 1, log)
        XCTAssertTrue(log.contains("stopped; all records committed"), log)
        let store = try Store(path: db, readOnly: true)
        XCTAssertEqual(try store.loadAssignments().first { $0.uuid == uuid }?.port, info.port)
    }

    func testTheShutdownLineSaysWhatWasNeverSaved() async throws {
        let db = mountPoint.appendingPathComponent("vspcd.db").path
        daemon.extraArguments = ["--db", db]
        try await daemon.start()
        fill(mountPoint.appendingPathComponent("filler").path)
        let uuid = testUUID(2)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "never-saved")
        defer { vm.close() }
        try await daemon.waitForList("listed unsaved") { $0.contains { $0.uuid == uuid && $0.saved == false } }
        try await daemon.stop()
        XCTAssertFalse(daemon.log.contains("stopped; all records committed"), daemon.log)
        XCTAssertTrue(daemon.log.contains("never saved"), daemon.log)
    }
}
