import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import XCTest
@testable import VSPCNet
import VSPCCore

/// The internal link between two real listeners on 127.0.0.1: a feed's HELLO, ACCEPT and DATA both ways, in the
/// clear and with mutual TLS; a node without a certificate, an oversize frame and a silent peer are refused.
final class ClusterLinkTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!
    var links: [ClusterLink] = []
    let key = ConsoleKey(uuid: "564d0a0b0c0d0e0f1011121314151617", label: "2")

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() async throws {
        for link in links { await link.stop() }
        try await group.shutdownGracefully()
    }

    func makeLink(_ node: String, host: FakeLinkHost, tls: ClusterLinkTLS? = nil, clientTLS: NIOSSLContext? = nil,
                  helloTimeout: TimeAmount = .seconds(5), maxUnauthenticated: Int = 64) async throws -> ClusterLink {
        var settings = ClusterLinkSettings(node: node, listen: Endpoint(host: "127.0.0.1", port: 0))
        settings.maxUnauthenticated = maxUnauthenticated
        settings.serverTLS = tls?.server
        settings.clientTLS = clientTLS ?? tls?.client
        settings.helloTimeout = helloTimeout
        let link = try await host.loop.submit { ClusterLink(settings: settings, host: host, logger: Logger(label: "test")) }.get()
        link.ownerEpoch = { _ in 7 }
        try await link.start()
        links.append(link)
        return link
    }

    /// Owner A serves the console (its core writes a greeting at once); B opens a feed and talks both ways.
    func roundTrip(tls: ClusterLinkTLS?, readerTLS: ClusterLinkTLS? = nil) async throws {
        let ownerHost = FakeLinkHost(loop: group.next())
        ownerHost.onSession = { _, sink in sink.write(ByteBuffer(string: "login: ")) }
        let readerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost, tls: tls)
        let reader = try await makeLink("b", host: readerHost, tls: readerTLS ?? tls)
        let port = try XCTUnwrap(owner.port)
        let key = self.key
        reader.loop.execute { reader.openFeed(-1, key, node: "a", link: "127.0.0.1:\(port)", sinceEpoch: 6) }

        let started = ownerHost.events.wait { if case .sessionStarted = $0 { return true }; return false }
        guard case let .sessionStarted(id, door, peer, request)? = started else { return }
        XCTAssertEqual(door, .node)
        XCTAssertTrue(peer.hasPrefix("node b (127.0.0.1"), peer)
        guard case .console(let asked) = request.target, case .node(let name) = request.principal else {
            return XCTFail("\(request)")
        }
        XCTAssertEqual(asked, key)
        XCTAssertEqual(name, "b")

        readerHost.events.wait { if case .cluster(.feedOpened(-1, Owner(node: "a", epoch: 7))) = $0 { return true }; return false }
        readerHost.events.wait { if case .cluster(.feedBytes(-1, Array("login: ".utf8))) = $0 { return true }; return false }
        readerHost.withSink(-1) { $0.write(ByteBuffer(bytes: [0xff, 0x00, 0x0d, 0x0a])) }
        ownerHost.events.wait { if case .clientBytes(id, [0xff, 0x00, 0x0d, 0x0a]) = $0 { return true }; return false }
        // A large output goes in several frames and arrives whole.
        let big = (0..<200_000).map { UInt8(truncatingIfNeeded: $0) }
        ownerHost.withSink(id) { $0.write(ByteBuffer(bytes: big)) }
        let received = Collected<Int>()
        for _ in 0..<1000 {
            let total = readerHost.events.all.reduce(0) { sum, event in
                if case .cluster(.feedBytes(-1, let bytes)) = event { return sum + bytes.count }
                return sum
            }
            if total >= big.count + 7 { received.append(total); break }
            usleep(10_000)
        }
        XCTAssertEqual(received.all, [big.count + 7])
        let stream = readerHost.events.all.flatMap { event -> [UInt8] in
            if case .cluster(.feedBytes(-1, let bytes)) = event { return bytes }
            return []
        }
        XCTAssertEqual(stream, Array("login: ".utf8) + big)
        let counts = try await owner.loop.submit { (owner.feedsServed, reader.feedsRead) }.get()
        XCTAssertEqual(counts.0, 1)
        XCTAssertEqual(counts.1, 1)

        // The owner's core ends the session: the reader hears why.
        ownerHost.withSink(id) { sink in
            sink.notice("console gone")
            sink.close(flush: true)
        }
        readerHost.events.wait { if case .cluster(.feedClosed(-1, "node a: console gone")) = $0 { return true }; return false }
        ownerHost.events.wait { if case .clientClosed(id) = $0 { return true }; return false }
    }

    func testAFeedRoundTripInTheClear() async throws {
        try await roundTrip(tls: nil)
    }

    func testAFeedRoundTripWithMutualTLS() async throws {
        let files = try certificates()
        func tls(_ node: String) throws -> ClusterLinkTLS {
            try ClusterLinkTLS.load(certificatePath: files.appendingPathComponent("\(node)-cert.pem").path,
                                    keyPath: files.appendingPathComponent("\(node)-key.pem").path,
                                    caPath: files.appendingPathComponent("ca.pem").path)
        }
        try await roundTrip(tls: tls("a"), readerTLS: tls("b"))
    }

    func testTheReaderClosingEndsTheOwnersSession() async throws {
        let ownerHost = FakeLinkHost(loop: group.next())
        let readerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost)
        let reader = try await makeLink("b", host: readerHost)
        let port = try XCTUnwrap(owner.port)
        let key = self.key
        reader.loop.execute { reader.openFeed(-3, key, node: "a", link: "127.0.0.1:\(port)", sinceEpoch: nil) }
        readerHost.events.wait { if case .cluster(.feedOpened(-3, _)) = $0 { return true }; return false }
        readerHost.withSink(-3) { $0.close(flush: false) }
        ownerHost.events.wait { if case .clientClosed = $0 { return true }; return false }
        // The core closed it itself: no feedClosed comes back.
        for _ in 0..<1000 where try await reader.loop.submit({ reader.connections }).get() > 0 { usleep(10_000) }
        XCTAssertFalse(readerHost.events.all.contains { if case .cluster(.feedClosed) = $0 { return true }; return false })
    }

    func testARefusedSessionAndAnUnreachableOwnerCloseTheFeed() async throws {
        let ownerHost = FakeLinkHost(loop: group.next())
        ownerHost.onSession = { _, sink in
            sink.notice("not the owner")
            sink.close(flush: true)
        }
        let readerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost)
        let reader = try await makeLink("b", host: readerHost)
        let port = try XCTUnwrap(owner.port)
        let key = self.key
        reader.loop.execute { reader.openFeed(-1, key, node: "a", link: "127.0.0.1:\(port)", sinceEpoch: nil) }
        readerHost.events.wait { if case .cluster(.feedClosed(-1, "node a: not the owner")) = $0 { return true }; return false }
        XCTAssertFalse(readerHost.events.all.contains { if case .cluster(.feedOpened) = $0 { return true }; return false })
        // Nothing listens on port 1.
        reader.loop.execute { reader.openFeed(-2, key, node: "c", link: "127.0.0.1:1", sinceEpoch: nil) }
        let closed = readerHost.events.wait { if case .cluster(.feedClosed(-2, _)) = $0 { return true }; return false }
        guard case .cluster(.feedClosed(_, let reason))? = closed else { return }
        XCTAssertTrue(reason.hasPrefix("cannot reach node c at 127.0.0.1:1"), reason)
    }

    func testANodeWithoutACertificateIsRefused() async throws {
        let files = try certificates()
        let tls = try ClusterLinkTLS.load(certificatePath: files.appendingPathComponent("a-cert.pem").path,
                                          keyPath: files.appendingPathComponent("a-key.pem").path,
                                          caPath: files.appendingPathComponent("ca.pem").path)
        // A client that trusts the CA but shows no certificate of its own.
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(files.appendingPathComponent("ca.pem").path))
        configuration.certificateVerification = .noHostnameVerification
        let anonymous = try NIOSSLContext(configuration: configuration)
        let ownerHost = FakeLinkHost(loop: group.next())
        let readerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost, tls: tls)
        let reader = try await makeLink("b", host: readerHost, clientTLS: anonymous)
        let port = try XCTUnwrap(owner.port)
        let key = self.key
        reader.loop.execute { reader.openFeed(-1, key, node: "a", link: "127.0.0.1:\(port)", sinceEpoch: nil) }
        readerHost.events.wait { if case .cluster(.feedClosed(-1, _)) = $0 { return true }; return false }
        XCTAssertFalse(ownerHost.events.all.contains { if case .sessionStarted = $0 { return true }; return false })
        XCTAssertFalse(readerHost.events.all.contains { if case .cluster(.feedOpened) = $0 { return true }; return false })
    }

    func testAnOversizeFrameClosesTheConnection() async throws {
        let ownerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost)
        var frame = ByteBuffer()
        frame.writeInteger(UInt8(3))
        frame.writeInteger(UInt32(LinkFrame.maxPayload + 1))
        let answer = try await Self.exchange(port: try XCTUnwrap(owner.port), send: frame, group: group)
        var buffer = ByteBuffer(bytes: answer)
        XCTAssertEqual(try LinkFrameDecoder.next(&buffer), .close("link frame of 65537 bytes (at most 65536)"))
        XCTAssertFalse(ownerHost.events.all.contains { if case .sessionStarted = $0 { return true }; return false })
    }

    func testAPeerWithoutHelloIsClosed() async throws {
        let ownerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost, helloTimeout: .milliseconds(100))
        let answer = try await Self.exchange(port: try XCTUnwrap(owner.port), send: ByteBuffer(), group: group)
        var buffer = ByteBuffer(bytes: answer)
        XCTAssertEqual(try LinkFrameDecoder.next(&buffer), .close("no HELLO within 0.1 s"))
        let unauthenticated = try await owner.loop.submit { owner.unauthenticated }.get()
        XCTAssertEqual(unauthenticated, 0)
    }

    func testConnectionsWithoutHelloAreBounded() async throws {
        let ownerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost, maxUnauthenticated: 1)
        let port = try XCTUnwrap(owner.port)
        let silent = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
        for _ in 0..<1000 where try await owner.loop.submit({ owner.unauthenticated }).get() < 1 { usleep(10_000) }
        // The second one is closed at once, without a word (the first still waits for its HELLO).
        let answer = try await Self.exchange(port: port, send: ByteBuffer(), group: group)
        XCTAssertEqual(answer, [])
        let counts = try await owner.loop.submit { (owner.unauthenticated, owner.connections) }.get()
        XCTAssertEqual(counts.0, 1)
        XCTAssertEqual(counts.1, 1)
        try await silent.close()
    }

    func testFramesParseAndRefuseWhatIsMalformed() throws {
        var buffer = ByteBuffer()
        LinkFrame.hello(LinkHello(node: "b", uuid: key.uuid, label: "2", sinceEpoch: 3)).write(to: &buffer)
        LinkFrame.accept(node: "a", epoch: 4).write(to: &buffer)
        LinkFrame.data([1, 2]).write(to: &buffer)
        LinkFrame.close("bye").write(to: &buffer)
        XCTAssertEqual(try LinkFrameDecoder.next(&buffer), .hello(LinkHello(node: "b", uuid: key.uuid, label: "2", sinceEpoch: 3)))
        XCTAssertEqual(try LinkFrameDecoder.next(&buffer), .accept(node: "a", epoch: 4))
        XCTAssertEqual(try LinkFrameDecoder.next(&buffer), .data([1, 2]))
        XCTAssertEqual(try LinkFrameDecoder.next(&buffer), .close("bye"))
        XCTAssertNil(try LinkFrameDecoder.next(&buffer))
        var partial = ByteBuffer(bytes: [3, 0, 0, 0, 2, 1])
        XCTAssertNil(try LinkFrameDecoder.next(&partial))
        for bad: [UInt8] in [[9, 0, 0, 0, 0], [1, 0, 0, 0, 2, 0x7b, 0x7d], [2, 0, 0, 0, 1, 0x7b]] {
            var buffer = ByteBuffer(bytes: bad)
            XCTAssertThrowsError(try LinkFrameDecoder.next(&buffer), "\(bad)")
        }
    }

    // MARK: helpers

    /// Connects to the link in the clear, sends `bytes`, and returns everything received until the link closes.
    static func exchange(port: Int, send bytes: ByteBuffer, group: EventLoopGroup) async throws -> [UInt8] {
        let received = Collected<[UInt8]>()
        final class Reader: ChannelInboundHandler {
            typealias InboundIn = ByteBuffer
            let received: Collected<[UInt8]>
            init(_ received: Collected<[UInt8]>) { self.received = received }
            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                received.append(Array(unwrapInboundIn(data).readableBytesView))
            }
        }
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { $0.pipeline.addHandler(Reader(received)) }
            .connect(host: "127.0.0.1", port: port).get()
        if bytes.readableBytes > 0 { try await channel.writeAndFlush(bytes) }
        try await channel.closeFuture.get()
        return received.all.flatMap { $0 }
    }

    /// A CA and two node certificates it signed (a, b), made with openssl in a fresh folder.
    func certificates() throws -> URL {
        let folder = try Self.certificates()
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        return folder
    }

    static func certificates() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        func openssl(_ arguments: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["openssl"] + arguments
            process.currentDirectoryURL = folder
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw TLSSetup.SetupError(description: "openssl \(arguments) failed") }
        }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try openssl(["req", "-x509"] + ec + ["-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=cluster test CA"])
        for node in ["a", "b"] {
            try openssl(["req"] + ec + ["-keyout", "\(node)-key.pem", "-out", "\(node).csr", "-subj", "/CN=node-\(node)"])
            try openssl(["x509", "-req", "-in", "\(node).csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                         "-out", "\(node)-cert.pem", "-days", "2"])
        }
        return folder
    }
}
