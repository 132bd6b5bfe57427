import Foundation
import VSPCCore
import VSPCSim
import VSPCStore
import XCTest

/// `--watch` patterns and the HTTP listener's own resources, admission and flags.
extension ConsoleLogTests {
    // MARK: - 4. watch patterns

    func testAWatchPatternRecordsCountsAndIsLimitedPerConsole() async throws {
        let httpPort = try freePort()
        let daemon = try await startDaemon([
            "--http", "127.0.0.1:\(httpPort)",
            "--watch", "panic=Kernel panic - not syncing", "--watch", "oops=BUG: unable to handle",
        ])
        try await daemon.waitForHTTP()
        let panic = "vspc_console_matches_total{pattern=\"panic\"}"
        let oops = "vspc_console_matches_total{pattern=\"oops\"}"
        let start = try await httpGet(port: httpPort, "/metrics").text
        XCTAssertEqual(seriesValue(start, panic), 0)
        XCTAssertEqual(seriesValue(start, oops), 0)

        let uuid = testUUID(1604)
        let vm = try await connectVM(daemon, uuid, "watched-1604")
        defer { vm.close() }
        // A line that matches, with an ESC in it, among lines that do not.
        vm.output("[    1.0] Booting\r\n[    2.5] Kernel panic - not syncing: \u{1B}[1mVFS\u{1B}[0m: no root\r\nafter\r\n")
        let detail = #"panic: [    2.5] Kernel panic - not syncing: \x1b[1mVFS\x1b[0m: no root"#
        let events = try await waitForEvents(daemon, uuid: uuid, "console-match") { $0.contains { $0.kind == "console-match" } }
        XCTAssertEqual(events.filter { $0.kind == "console-match" }.map(\.detail), [detail])
        XCTAssertEqual(events.last { $0.kind == "console-match" }?.name, "watched-1604")

        let admin = ["--admin", "127.0.0.1:\(daemon.adminPort)"]
        let history = try vspc(["history", "watched-1604"] + admin)
        XCTAssertEqual(history.status, 0, history.err)
        let matchLines = history.lines.filter { historyKinds($0) == ["console-match"] }
        XCTAssertEqual(matchLines.count, 1, history.text)
        XCTAssertTrue(matchLines.first?.hasSuffix("  console-match  " + detail) == true, history.text)
        let json = try vspc(["history", "watched-1604", "--json"] + admin)
        XCTAssertEqual(try decodeEvents(json.out).filter { $0.kind == "console-match" }.map(\.detail), [detail])

        let one = try await waitForMetrics(port: httpPort, "one panic") { seriesValue($0, panic) == 1 }
        XCTAssertEqual(seriesValue(one, panic), 1)
        XCTAssertEqual(seriesValue(one, oops), 0)

        // 29 more: every match is counted, but a console records at most 10 a minute.
        let lines = (2...30).map { "[ \($0)] Kernel panic - not syncing: again \($0)\r\n" }.joined()
        vm.output(lines)
        let thirty = try await waitForMetrics(port: httpPort, "30 panics") { seriesValue($0, panic) == 30 }
        XCTAssertEqual(seriesValue(thirty, panic), 30)
        XCTAssertEqual(seriesValue(thirty, oops), 0)
        // Every match has reached the machine; a name change recorded after them marks the end of their records.
        vm.rename("watched-1604-b")
        let recorded = try await waitForEvents(daemon, uuid: uuid, "the name change") { $0.contains { $0.kind == "name-change" } }
        let matches = recorded.filter { $0.kind == "console-match" }
        XCTAssertEqual(matches.count, 10, "\(matches.map { $0.detail ?? "" })")
        XCTAssertEqual(matches.map(\.detail), [detail] + (2...10).map { "panic: [ \($0)] Kernel panic - not syncing: again \($0)" })
        try await daemon.waitForLog("console-match watched-1604 (\(uuid)): \(detail)")
    }

    // MARK: - 6. the HTTP listener

    func testTheHTTPListenerAnswersHealthReadinessAndMetrics() async throws {
        let httpPort = try freePort()
        let daemon = try await startDaemon(["--http", "127.0.0.1:\(httpPort)"])
        try await daemon.waitForHTTP()
        let health = try await httpGet(port: httpPort, "/healthz")
        XCTAssertEqual(health.status, 200)
        XCTAssertEqual(health.text, "ok\n")
        let ready = try await httpGet(port: httpPort, "/readyz")
        XCTAssertEqual(ready.status, 200)
        XCTAssertEqual(ready.text, "ready\n")
        // An HTTP/1.0 request that does not ask to keep the connection is answered and the connection closed.
        let old = try await RawPeer.connect(port: httpPort)
        old.write(raw: Array("GET /healthz HTTP/1.0\r\n\r\n".utf8))
        try await old.waitForClose(timeout: 30)
        XCTAssertEqual(try parseHTTPReply(old.raw).text, "ok\n")

        let uuid = testUUID(1606)
        let vm = try await connectVM(daemon, uuid, "scraped-1606")
        defer { vm.close() }
        vm.output("0123456789")
        let scrape = try await waitForMetrics(port: httpPort, "10 bytes written") {
            seriesValue($0, "vspc_console_log_written_bytes_total") == 10
        }
        XCTAssertEqual(seriesValue(scrape, "vspc_console_log_lost_bytes_total"), 0)
        XCTAssertEqual(seriesValue(scrape, "vspc_console_log_write_errors_total"), 0)
        XCTAssertNotNil(seriesValue(scrape, "vspc_console_log_queued_bytes"))
    }

    func testAnAddressOutsideHTTPAllowGetsTheRefusalLine() async throws {
        let httpPort = try freePort()
        let daemon = try await startDaemon(["--http", "127.0.0.1:\(httpPort)", "--http-allow", "127.0.0.1/32"])
        try await daemon.waitForHTTP()
        let body = "this address may not use vspcd's HTTP listener (--http-allow)\n"
        let refusal = "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        let outside = try await httpGet(port: httpPort, "/metrics", from: "127.0.0.2")
        XCTAssertEqual(outside.raw, Array(refusal.utf8))
        XCTAssertEqual(outside.status, 403)
        XCTAssertEqual(outside.text, body)
        try await daemon.waitForLog("refused HTTP connection from 127.0.0.2:")

        let inside = try await httpGet(port: httpPort, "/healthz", from: "127.0.0.1")
        XCTAssertEqual(inside.status, 200)
        XCTAssertEqual(inside.text, "ok\n")
    }

    func testMetricsIsAnotherNameForHTTP() async throws {
        let metricsPort = try freePort()
        let alias = try await startDaemon(["--metrics", "127.0.0.1:\(metricsPort)"])
        try await alias.waitForHTTP()
        let scrape = try await httpGet(port: metricsPort, "/metrics")
        XCTAssertEqual(scrape.status, 200)
        XCTAssertNotNil(seriesValue(scrape.text, "vspc_console_log_written_bytes_total"))
        let health = try await httpGet(port: metricsPort, "/healthz")
        XCTAssertEqual(health.text, "ok\n")

        // The same address under both names is one listener; two addresses are an error at start-up.
        let same = try freePort()
        let sameDaemon = try await startDaemon(["--http", "127.0.0.1:\(same)", "--metrics", "127.0.0.1:\(same)"])
        try await sameDaemon.waitForHTTP()
        let sameHealth = try await httpGet(port: same, "/healthz")
        XCTAssertEqual(sameHealth.text, "ok\n")
        let both = try makeDaemon(["--http", "127.0.0.1:\(try freePort())", "--metrics", "127.0.0.1:\(try freePort())"])
        do {
            try await both.start()
            XCTFail("vspcd started with --http and --metrics at different addresses")
        } catch {
            let process = try XCTUnwrap(both.process)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 2)
            XCTAssertEqual(both.log, "vspcd: --metrics is another name for --http; give one of them\n")
        }
    }
}
