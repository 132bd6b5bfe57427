import Foundation
import VSPCSim
import XCTest

/// A full disk under the console logs (issue 16) takes nothing from the console: the log folder lives on a small
/// tmpfs that the test fills (the database stays on the ordinary disk).
final class ConsoleLogFullDiskTests: TmpfsTestCase {
    override var tmpfsSize: String { "2m" }

    func testAFullLogDiskLosesNoConsoleBytesAndTheLogResumesWhenThereIsRoom() async throws {
        guard let mountPoint else { return }
        let httpPort = try freePort()
        let folder = mountPoint.appendingPathComponent("consoles").path
        daemon.extraArguments = ["--console-log-dir", folder, "--http", "127.0.0.1:\(httpPort)"]
        try await daemon.start()
        try await daemon.waitForHTTP()
        let uuid = testUUID(1605)
        let path = folder + "/" + uuid
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "full-1605")
        defer { vm.close() }
        let port = try await daemon.port(of: uuid)
        let client = try await SimulatedClient.connect(port: port)
        defer { client.close() }
        try await daemon.waitForList("a client") { $0.first { $0.uuid == uuid }?.clients == 1 }

        let before = Array("before the disk filled\r\n".utf8)
        vm.output(before)
        let first = try await waitForFile(path, count: before.count)
        XCTAssertEqual(first, before)

        // The disk is full: the VM keeps printing and its reader gets every byte.
        let filler = mountPoint.appendingPathComponent("filler").path
        fill(filler)
        let during = patternBytes(256 * 1024, seed: 1605)
        output(on: vm, during)
        try await client.waitForData(count: before.count + during.count, timeout: 60)
        XCTAssertEqual(client.data, before + during)
        let failing = try await waitForMetrics(port: httpPort, "failed console log writes") {
            (seriesValue($0, "vspc_console_log_write_errors_total") ?? 0) > 0
                || (seriesValue($0, "vspc_console_log_lost_bytes_total") ?? 0) > 0
        }
        XCTAssertFalse(client.closed)
        XCTAssertFalse(vm.closed)

        // Room again: later output reaches the file.
        try FileManager.default.removeItem(atPath: filler)
        let later = Array("after the disk has room again\r\n".utf8)
        vm.output(later)
        try await client.waitForData(count: before.count + during.count + later.count)
        var logged: [UInt8] = []
        try await waitUntil("the later output in the log", timeout: 60) {
            logged = fileBytes(path) ?? []
            return logged.count >= later.count && Array(logged.suffix(later.count)) == later
        }
        XCTAssertEqual(Array(logged.prefix(before.count)), before)
        let scrape = try await httpGet(port: httpPort, "/metrics").text
        if seriesValue(scrape, "vspc_console_log_lost_bytes_total") == 0 {
            // Nothing was given up: the bytes kept for a retry were written once there was room.
            XCTAssertEqual(logged, before + during + later, "nothing lost, yet the log differs; first scrape:\n\(failing)")
        }
        let failed = try await daemon.waitForLog("console logs: ")
        XCTAssertTrue(failed.first?.contains("failed writes") == true, "\(failed)")
        try await daemon.waitForLog("console logs: writing again")
    }
}
