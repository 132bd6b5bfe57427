import XCTest
@testable import VSPCNet
import VSPCCore

/// The cluster's settings: defaults, checks, the link's TLS all three or none, and no link in the clear off
/// loopback.
final class ClusterSettingsTests: XCTestCase {
    func resolveError(_ given: [String: SettingValue]) -> String {
        do {
            _ = try DaemonSettings.resolve(file: nil, commandLine: given)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testDefaultsAndChecks() throws {
        let settings = try DaemonSettings.resolve(file: nil, commandLine: [:]).settings
        XCTAssertNil(settings.node)
        XCTAssertEqual(settings.leaseTimeout, 10)
        XCTAssertNil(settings.clusterListen)
        XCTAssertTrue(DaemonSettings.defaultLines.contains("lease-timeout = 10"), "\(DaemonSettings.defaultLines)")
        let given = try DaemonSettings.resolve(file: nil, commandLine: [
            "node": .string("vspc-a"), "lease-timeout": .number(2.5), "cluster-listen": .string("127.0.0.2:7000"),
        ]).settings
        XCTAssertEqual(given.node, "vspc-a")
        XCTAssertEqual(given.leaseTimeout, 2.5)
        XCTAssertEqual(given.clusterListen, "127.0.0.2:7000")
        XCTAssertEqual(resolveError(["lease-timeout": .number(0)]),
                       "--lease-timeout must be more than 0 and at most 3600 seconds (got 0)")
        XCTAssertEqual(resolveError(["cluster-listen": .string("here")]), "--cluster-listen must be [host]:port (got \"here\")")
        XCTAssertEqual(resolveError(["node": .string("a b")]),
                       "--node must be at most 128 printable ASCII characters without spaces (got \"a b\")")
    }

    func testTheLinksTLSTakesThreeFiles() {
        XCTAssertEqual(resolveError(["cluster-cert": .string("c.pem"), "cluster-key": .string("k.pem")]),
                       "--cluster-cert needs --cluster-ca too: the cluster link's TLS takes cluster-cert, cluster-key and cluster-ca together")
        XCTAssertEqual(resolveError(["cluster-cert": .string("c.pem"), "cluster-key": .string("k.pem"), "cluster-ca": .string("ca.pem")]),
                       "no error")
    }

    func testALinkInTheClearOnlyOnLoopback() {
        XCTAssertNil(ClusterLinkConfig(listen: Endpoint(host: "127.0.0.2", port: 6781), tls: nil).refusal)
        XCTAssertNil(ClusterLinkConfig(listen: Endpoint(host: "::1", port: 6781), tls: nil).refusal)
        XCTAssertEqual(ClusterLinkConfig(listen: Endpoint(host: "10.0.0.11", port: 6781), tls: nil).refusal,
                       "the cluster link 10.0.0.11:6781 is not on loopback: give --cluster-cert, --cluster-key and --cluster-ca (mutual TLS), or listen on 127.0.0.1")
    }
}
