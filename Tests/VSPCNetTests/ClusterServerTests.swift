import Foundation
import Logging
import NIOCore
import XCTest
@testable import VSPCNet
import VSPCCore

/// The daemon in cluster mode: the agent runs the driver's cluster requests, the link listens, and a node's
/// HELLO reaches the real concentrator, which answers it.
final class ClusterServerTests: XCTestCase {
    func testTheServerWiresTheAgentAndTheLink() async throws {
        var config = DaemonConfig()
        config.proxyHost = "127.0.0.1"
        config.proxyPort = 0
        config.adminHost = "127.0.0.1"
        config.adminPort = 0
        config.concentrator.cluster = ClusterConfig(node: "a", leaseTimeout: 10, linkAddress: "127.0.0.1:0")
        config.clusterLink = ClusterLinkConfig(listen: Endpoint(host: "127.0.0.1", port: 0), tls: nil)
        let server = VSPCServer(config: config, store: ConcentratorDriverTests.FakeStore(), logger: Logger(label: "test"))
        let records = MemoryClusterRecords()
        server.clusterRecords = records
        try await server.start(saved: SavedState(assignments: [], scrollback: [:]))
        let wired = try await server.eventLoop.submit { server.driver.cluster === server.clusterAgent }.get()
        XCTAssertTrue(wired)
        let port = try XCTUnwrap(server.clusterLink?.port)
        let snapshot = await server.httpServices().snapshot()
        XCTAssertEqual(snapshot.cluster?.leases, 0)
        XCTAssertNil(snapshot.storeQueue)

        // A node asks for a console this one does not have: the concentrator refuses, and the link says so.
        var hello = ByteBuffer()
        LinkFrame.hello(LinkHello(node: "b", uuid: "564d0a0b0c0d0e0f1011121314151617", label: "", sinceEpoch: nil)).write(to: &hello)
        let answer = try await ClusterLinkTests.exchange(port: port, send: hello, group: server.group)
        var buffer = ByteBuffer(bytes: answer)
        guard case .close? = try LinkFrameDecoder.next(&buffer) else { return XCTFail("\(answer)") }
        await server.shutdown()
    }
}
