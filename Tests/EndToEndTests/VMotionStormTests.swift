import Foundation
import VSPCSim
import XCTest

/// Many vMotions on one daemon (the embedded database), a person reading each VM: every byte reaches the person
/// once, in order, though each source's last line and the destination's COMPLETE race on two connections. The
/// rate is a target, not an assertion. Env `VSPC_TEST_STORM_VMS`, `VSPC_TEST_STORM_RATE` and
/// `VSPC_TEST_STORM_SECONDS` scale it.
final class VMotionStormTests: DaemonTestCase {
    var storm: VMotionStorm?

    override func tearDown() async throws {
        storm?.closeAll()
        storm = nil
        try await super.tearDown()
    }

    func testStormOfLocalVMotionsLosesNoConsoleOutput() async throws {
        let count = Int(ClusterStormTests.setting("VSPC_TEST_STORM_VMS", 100))
        let rate = ClusterStormTests.setting("VSPC_TEST_STORM_RATE", 200)
        let seconds = ClusterStormTests.setting("VSPC_TEST_STORM_SECONDS", 30)
        let daemon = try await startDaemon(portRangeSize: count + 50)
        let storm = VMotionStorm(hosts: [ProxyAddress(host: daemon.host, port: daemon.proxyPort)], count: count,
                                 name: "local-storm-\(UInt32.random(in: 0...UInt32.max))")
        self.storm = storm
        try await storm.connectAll()
        let listed = try await daemon.waitForList("the storm's \(count) VMs listening", timeout: 120) { vms in
            storm.vms.allSatisfy { vm in vms.contains { $0.uuid == vm.uuid && $0.listening } }
        }
        let ports = Dictionary(listed.map { ($0.uuid, $0.port) }, uniquingKeysWith: { a, _ in a })
        let people = try await stormPeople(storm) { (daemon.host, ports[$0.uuid] ?? 0) }
        defer { people.clients.forEach { $0.close() } }

        let stats = await storm.run(seconds: seconds, rate: rate)
        print("VMotionStormTests: \(VMotionStorm.describe(stats)) (target \(rate)/s over \(count) VMs)")
        XCTAssertGreaterThan(stats.migrations, 0)
        XCTAssertEqual(stats.failed - stats.notNow, 0, "failed vMotions: \(stats.failures)")
        await assertEveryPersonSawEveryByte(storm, people)
    }
}
