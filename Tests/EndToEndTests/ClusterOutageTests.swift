import Foundation
import VSPCCore
import VSPCSim
import XCTest

/// PostgreSQL stopped for 20 s under two daemons (a private server of the test's own) and started again: the
/// consoles keep working on both daemons, a new VM is refused with a clear log line, and the events of the outage
/// arrive once the database is back.
final class ClusterOutageTests: ClusterTestCase {
    static let outageSeconds = ProcessInfo.processInfo.environment["VSPC_TEST_OUTAGE_SECONDS"].flatMap(Double.init) ?? 20

    func testConsolesKeepWorkingWhilePostgreSQLIsDownAndTheEventsArriveAfter() async throws {
        let db = try makePrivateDatabase()
        let server = try XCTUnwrap(privateServer)
        let nodes = try await startNodes(2, database: db)
        let (n1, n2) = (nodes[0], nodes[1])
        let uuidA = testUUID(4), uuidB = testUUID(5)
        let vmA = try await connectVM(n1, uuidA, "outage-a")
        let vmB = try await connectVM(n2, uuidB, "outage-b")
        let portA = try await port(n2, uuidA), portB = try await port(n1, uuidB)
        // A's people: one on its owner n1, one forwarded on n2; B's person on its owner n2.
        let a1 = try await telnet(n1, portA), a2 = try await telnet(n2, portA), b2 = try await telnet(n2, portB)
        let syncA = try await synchronize([a1, a2]) { vmA.output($0) }
        let syncB = try await synchronize([b2]) { vmB.output($0) }

        try server.stop()
        let outageStart = Date()

        // The consoles work on both daemons.
        let duringA = patternBytes(3000, seed: 61), duringB = patternBytes(3000, seed: 62)
        vmA.output(duringA)
        vmB.output(duringB)
        try await expectOutput([a1, a2], syncA + duringA, "A's output during the outage")
        try await expectOutput([b2], syncB + duringB, "B's output during the outage")
        a2.send(Array("typed-on-n2;".utf8))
        try await vmA.wait("n2's person's input at A", timeout: 30) {
            String(decoding: vmA.data, as: UTF8.self).contains("typed-on-n2;")
        }

        // Events of the outage: a person attaches to A on n1 (queued until the database is back).
        let late = try await telnet(n1, portA)
        try await late.barrier()

        // A new VM cannot get a port: it is refused, with the log line saying why.
        let newcomer = try await SimulatedVM.connect(host: n1.host, port: n1.proxyPort, uuid: testUUID(6), name: "outage-new",
                                                     waitForProxy: false)
        connections.append(newcomer)
        try await newcomer.waitForClose(timeout: 60)
        try await n1.waitForLog("cannot assign a port to VM", timeout: 60)

        // The rest of the outage, then the database comes back.
        let rest = Self.outageSeconds - Date().timeIntervalSince(outageStart)
        if rest > 0 { try await Task.sleep(nanoseconds: UInt64(rest * 1e9)) }
        let stillA = Array("A still printing at the end of the outage\r\n".utf8)
        vmA.output(stillA)
        try await expectOutput([a1, a2], syncA + duringA + stillA, "A's output at the end of the outage")
        try server.start()

        // The queued events arrive: the late person's client-attach, recorded during the outage.
        let outageSecond = outageStart.addingTimeInterval(-1)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let plain = ISO8601DateFormatter()
        try await waitForHistory(uuidA, db: db, "a client-attach of A recorded during the outage", timeout: 120) { events in
            events.contains { event in
                guard event["kind"] as? String == "client-attach", let time = event["time"] as? String,
                      let date = formatter.date(from: time) ?? plain.date(from: time) else { return false }
                return date >= outageSecond
            }
        }
        XCTAssertFalse(a1.closed || a2.closed || b2.closed, "the people stayed through the outage")

        // And new VMs get ports again.
        let uuidAfter = testUUID(7)
        let after = try await connectVM(n1, uuidAfter, "outage-after")
        XCTAssertFalse(after.closed)
        _ = try await port(n2, uuidAfter)
    }
}
