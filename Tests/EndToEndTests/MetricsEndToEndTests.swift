import Foundation
import VSPCClient
import VSPCCore
import VSPCSim
import XCTest

/// `--metrics`: the Prometheus series move with the work the daemon does.
final class MetricsEndToEndTests: DaemonTestCase {
    /// One scrape: GET /metrics over a plain connection, the body as text.
    private func scrape(_ port: Int) async throws -> String {
        let peer = try await RawPeer.connect(port: port)
        peer.write(raw: Array("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8))
        try await peer.waitForClose()
        let text = String(decoding: peer.raw, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.0 200") || text.hasPrefix("HTTP/1.1 200"), String(text.prefix(200)))
        return text
    }

    /// The value of one series (`name` with its labels, as printed), or nil.
    private func value(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    func testSeriesMoveWithConnectionsBytesAndVMotion() async throws {
        let metricsPort = try freePort()
        let daemon = try await startDaemon(["--metrics", "127.0.0.1:\(metricsPort)"])
        try await daemon.waitForHTTP()

        let before = try await scrape(metricsPort)
        XCTAssertEqual(value(before, "vspc_vms_connected"), 0)
        XCTAssertEqual(value(before, "vspc_vm_connections_total"), 0)
        XCTAssertEqual(value(before, "vspc_vmotions_total{result=\"complete\"}"), 0)
        XCTAssertEqual(value(before, "vspc_ports_free"), Double(daemon.portRange.count))
        XCTAssertEqual(value(before, "vspc_build_info{version=\"\(VSPCVersion.current)\"}"), 1)
        XCTAssertNotNil(value(before, "process_open_fds"))

        let uuid = testUUID(1)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "scraped")
        let port = try await daemon.port(of: uuid)
        let client = try await SimulatedClient.connect(port: port)
        defer { client.close() }
        try await daemon.waitForList("client") { $0.first?.clients == 1 }
        vm.output("0123456789")
        try await client.waitForData(count: 10)
        client.send(Array("abc".utf8))
        try await vm.waitForData(count: 3)

        let during = try await scrape(metricsPort)
        XCTAssertEqual(value(during, "vspc_vms_connected"), 1)
        XCTAssertEqual(value(during, "vspc_consoles"), 1)
        XCTAssertEqual(value(during, "vspc_clients{door=\"telnet\"}"), 1)
        XCTAssertEqual(value(during, "vspc_vm_connections_total"), 1)
        XCTAssertEqual(value(during, "vspc_ports_free"), Double(daemon.portRange.count - 1))
        XCTAssertGreaterThanOrEqual(value(during, "vspc_vm_output_bytes_total") ?? 0, 10)
        XCTAssertGreaterThanOrEqual(value(during, "vspc_client_input_bytes_total") ?? 0, 3)

        // A vMotion completes: counted, and its window observed.
        let destination = try await vm.migrate(port: daemon.proxyPort)
        defer { destination.close() }
        destination.output("x")
        try await client.waitForData(count: 11)
        vm.close()
        var after = ""
        for _ in 0..<500 {
            after = try await scrape(metricsPort)
            if value(after, "vspc_vmotions_total{result=\"complete\"}") == 1 { break }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        XCTAssertEqual(value(after, "vspc_vmotions_total{result=\"complete\"}"), 1)
        XCTAssertEqual(value(after, "vspc_vmotion_window_seconds_count"), 1)
        XCTAssertEqual(value(after, "vspc_vms_connected"), 1)
        // Issue 15 item 7: the vMotion destination's connection was accepted on the proxy port too.
        XCTAssertEqual(value(after, "vspc_vm_connections_total"), 2)
        XCTAssertGreaterThanOrEqual(value(after, "vspc_store_commit_seconds_count") ?? 0, 1)
    }
}
