import Foundation
import VSPCCore
import VSPCSim
import XCTest

/// Many vMotions between two daemons, and a daemon killed in the middle of them. The rate is a target, not an
/// assertion: on a small machine fewer happen, and the tests assert that nothing is lost. `contrib/bench-cluster.sh`
/// reports the rates. Env `VSPC_TEST_STORM_VMS`, `VSPC_TEST_STORM_RATE`, `VSPC_TEST_STORM_SECONDS` scale the storm.
final class ClusterStormTests: ClusterTestCase {
    var storm: VMotionStorm?

    override func tearDown() async throws {
        storm?.closeAll()
        storm = nil
        try await super.tearDown()
    }

    static func setting(_ name: String, _ fallback: Double) -> Double {
        ProcessInfo.processInfo.environment[name].flatMap(Double.init) ?? fallback
    }

    func makeStorm(_ nodes: [Daemon], count: Int) -> VMotionStorm {
        let storm = VMotionStorm(hosts: nodes.map { ProxyAddress(host: $0.host, port: $0.proxyPort) }, count: count,
                                 name: "storm-\(UInt32.random(in: 0...UInt32.max))")
        self.storm = storm
        return storm
    }

    /// uuid -> port once `node` lists every VM of the storm with its port listening there.
    func ports(_ node: Daemon, _ storm: VMotionStorm) async throws -> [String: Int] {
        let listed = try await node.waitForList("\(node.host) to list the storm's \(storm.vms.count) VMs, listening", timeout: 120) { vms in
            storm.vms.allSatisfy { vm in vms.contains { $0.uuid == vm.uuid && $0.listening && $0.saved != false } }
        }
        return Dictionary(listed.map { ($0.uuid, $0.port) }, uniquingKeysWith: { a, _ in a })
    }

    // MARK: - c. the storm

    func testStormOfCrossNodeVMotionsLosesNoConsoleOutput() async throws {
        let count = Int(Self.setting("VSPC_TEST_STORM_VMS", 100))
        let rate = Self.setting("VSPC_TEST_STORM_RATE", 200)
        let seconds = Self.setting("VSPC_TEST_STORM_SECONDS", 30)
        let nodes = try await startNodes(2, portRangeSize: count + 50)
        let storm = makeStorm(nodes, count: count)
        try await storm.connectAll()
        let ports = try await self.ports(nodes[1], storm)
        let portsOnN1 = try await self.ports(nodes[0], storm)
        XCTAssertEqual(portsOnN1, ports, "the same ports on both daemons")

        // Each VM's person is on the daemon the VM does not start on: its console is forwarded from the start.
        let people = try await stormPeople(storm) { vm in (nodes[(vm.host + 1) % 2].host, ports[vm.uuid] ?? 0) }
        connections.append(contentsOf: people.clients)

        let stats = await storm.run(seconds: seconds, rate: rate)
        print("ClusterStormTests: \(VMotionStorm.describe(stats)) (target \(rate)/s over \(count) VMs)")
        XCTAssertGreaterThan(stats.migrations, 0)
        // NOTNOW is the daemons' answer when a vMotion cannot start now (the VM stays and tries again): counted and
        // printed above; every other failure is an error.
        XCTAssertEqual(stats.failed - stats.notNow, 0, "failed vMotions: \(stats.failures)")

        // Every person saw every byte its VM printed since the sync, once, in order.
        await assertEveryPersonSawEveryByte(storm, people)

        // Every completed vMotion is recorded (a few VMs' histories, read from the database).
        let db = try XCTUnwrap(database)
        for vm in storm.vms.prefix(3) {
            let completed = vm.completed
            try await waitForHistory(vm.uuid, db: db, "\(completed) vmotion-complete events of \(vm.name)") { events in
                events.filter { $0["kind"] as? String == "vmotion-complete" }.count >= completed
            }
        }
    }

    // MARK: - d. kill -9 in the middle of the storm

    func testKillingADaemonMidStormLosesNoPortAndNoCommittedEvent() async throws {
        let count = Int(Self.setting("VSPC_TEST_KILL_VMS", 40))
        let nodes = try await startNodes(2, portRangeSize: count + 50)
        let (n1, n2) = (nodes[0], nodes[1])
        let db = try XCTUnwrap(database)
        let storm = makeStorm(nodes, count: count)
        try await storm.connectAll()
        let ports = try await self.ports(n2, storm)

        let stop = StopSwitch()
        let running = Task { await storm.run(seconds: 600, rate: Self.setting("VSPC_TEST_STORM_RATE", 100)) { stop.isOn } }
        try await waitUntil("a few vMotions of the storm", timeout: 120) {
            storm.vms.reduce(0) { $0 + $1.completed } >= 2 * count
        }

        // What the database holds before the kill: committed.
        var before: [String: Set<String>] = [:]
        // (Read through the survivor, which reads the shared table: `vspc history --db postgresql://` is the same read.)
        for vm in storm.vms { before[vm.uuid] = Set(try history(vm.uuid, db: db, via: n2).map(eventLine)) }
        try await n1.kill9()
        stop.turnOn()
        let stats = await running.value
        print("ClusterStormTests (kill): \(VMotionStorm.describe(stats))")

        // Every VM that n1 carried (its connection closed) reconnects through n2, as through a load balancer.
        for vm in storm.vms {
            if vm.host == 0, let connection = vm.connection { try await connection.waitForClose(timeout: 30) }
            guard vm.connection?.closed ?? true else { continue }
            let deadline = Date().addingTimeInterval(60)
            while (try? await storm.connect(vm, to: 1)) == nil {
                if Date() > deadline { throw SimError("\(vm.name) could not reconnect through n2") }
                try await Task.sleep(nanoseconds: 100_000_000)
            }
        }
        let listed = try await n2.waitForList("every VM connected on n2", timeout: 60) { vms in
            storm.vms.allSatisfy { vm in vms.contains { $0.uuid == vm.uuid && $0.connected } }
        }
        for vm in storm.vms {
            XCTAssertEqual(listed.first { $0.uuid == vm.uuid }?.port, ports[vm.uuid], "\(vm.name) keeps its port")
        }
        XCTAssertTrue(storm.vms.allSatisfy { $0.host == 1 })

        // No event committed before the kill is lost.
        for vm in storm.vms {
            let after = Set(try history(vm.uuid, db: db, via: n2).map(eventLine))
            let lost = before[vm.uuid, default: []].subtracting(after)
            XCTAssertTrue(lost.isEmpty, "\(vm.name): events committed before the kill are gone: \(lost)")
        }
    }
}

/// A flag the storm polls.
final class StopSwitch: @unchecked Sendable {
    private let lock = NSLock()
    private var on = false
    var isOn: Bool { lock.withLock { on } }
    func turnOn() { lock.withLock { on = true } }
}
