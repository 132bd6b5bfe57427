import Foundation
import Logging
import NIOCore
import NIOEmbedded
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
                  helloTimeout: TimeAmount = .seconds(5), maxUnauthenticated: Int = 256,
                  maxPerAddress: Int = 64, maxOpening: Int = 32,
                  waterMark: ChannelOptions.Types.WriteBufferWaterMark? = nil) async throws -> ClusterLink {
        var settings = ClusterLinkSettings(node: node, listen: Endpoint(host: "127.0.0.1", port: 0))
        settings.maxUnauthenticated = maxUnauthenticated
        settings.maxUnauthenticatedPerAddress = maxPerAddress
        settings.maxOpeningPerNode = maxOpening
        if let waterMark { settings.waterMark = waterMark }
        settings.serverTLS = tls?.server
        settings.clientTLS = clientTLS ?? tls?.client
        settings.helloTimeout = helloTimeout
        let link = try await host.loop.submit { ClusterLink(settings: settings, host: host, logger: Logger(label: "test")) }.get()
        try await link.start()
        links.append(link)
        return link
    }

    /// Owner a and reader b, each a link on a loop of its own; `link` is where b reaches a. b's own TLS is a's
    /// unless `readerTLS` says otherwise (`.some(nil)`: none).
    func twoNodes(tls: ClusterLinkTLS? = nil, readerTLS: ClusterLinkTLS?? = nil, readerClientTLS: NIOSSLContext? = nil)
        async throws -> (ownerHost: FakeLinkHost, readerHost: FakeLinkHost, reader: ClusterLink, link: String) {
        let ownerHost = FakeLinkHost(loop: group.next())
        let readerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost, tls: tls)
        let reader = try await makeLink("b", host: readerHost, tls: readerTLS ?? tls, clientTLS: readerClientTLS)
        let port = try XCTUnwrap(owner.port)
        return (ownerHost, readerHost, reader, "127.0.0.1:\(port)")
    }

    /// Owner A serves the console (its core writes a greeting at once); B opens a feed and talks both ways.
    func roundTrip(tls: ClusterLinkTLS?, readerTLS: ClusterLinkTLS? = nil) async throws {
        let (ownerHost, readerHost, reader, link) = try await twoNodes(tls: tls, readerTLS: .some(readerTLS ?? tls))
        ownerHost.onSession = { _, sink in sink.write(ByteBuffer(string: "login: ")) }
        let key = self.key
        reader.loop.execute { reader.openFeed(-1, key, node: "a", link: link, sinceEpoch: 6) }

        let started = ownerHost.events.wait { if case .sessionStarted = $0 { return true }; return false }
        guard case let .sessionStarted(id, door, peer, request)? = started else { return }
        XCTAssertEqual(door, .node)
        XCTAssertTrue(peer.hasPrefix("node b (127.0.0.1"), peer)
        guard case .console(let asked) = request.target, case .node(let name) = request.principal else {
            return XCTFail("\(request)")
        }
        XCTAssertEqual(asked, key)
        XCTAssertEqual(name, "b")
        XCTAssertEqual(request.sinceEpoch, 6)

        readerHost.events.wait { if case .cluster(.feedOpened(-1, Owner(node: "a", epoch: 7))) = $0 { return true }; return false }
        readerHost.events.wait { if case .cluster(.feedBytes(-1, Array("login: ".utf8))) = $0 { return true }; return false }
        readerHost.withSink(-1) { $0.write(ByteBuffer(bytes: [0xff, 0x00, 0x0d, 0x0a])) }
        ownerHost.events.wait { if case .clientBytes(id, [0xff, 0x00, 0x0d, 0x0a]) = $0 { return true }; return false }
        // The escape menu's BREAK, asked on the reader's side, reaches the owner's core as the session's.
        readerHost.withSink(-1) { ($0 as? LinkSink)?.sendBreak() }
        ownerHost.events.wait { if case .cluster(.breakAsked(id)) = $0 { return true }; return false }
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
        let (ownerHost, readerHost, reader, link) = try await twoNodes()
        let key = self.key
        reader.loop.execute { reader.openFeed(-3, key, node: "a", link: link, sinceEpoch: nil) }
        readerHost.events.wait { if case .cluster(.feedOpened(-3, _)) = $0 { return true }; return false }
        readerHost.withSink(-3) { $0.close(flush: false) }
        ownerHost.events.wait { if case .clientClosed = $0 { return true }; return false }
        // The core closed it itself: no feedClosed comes back.
        for _ in 0..<1000 where try await reader.loop.submit({ reader.connections }).get() > 0 { usleep(10_000) }
        XCTAssertFalse(readerHost.events.all.contains { if case .cluster(.feedClosed) = $0 { return true }; return false })
    }

    func testAFeedTheCoreClosesWhileItConnectsEndsQuietly() async throws {
        let (ownerHost, readerHost, reader, link) = try await twoNodes()
        let key = self.key
        try await reader.loop.submit {
            reader.openFeed(-4, key, node: "a", link: link, sinceEpoch: nil)
            // The core's close in the same turn of the loop reaches the feed's sink.
            readerHost.sinks[-4]?.close(flush: false)
        }.get()
        // Once connected, the connection closes and the sink goes.
        for _ in 0..<1000 where try await reader.loop.submit({ readerHost.sinks[-4] != nil }).get() { usleep(10_000) }
        let gone = try await reader.loop.submit { readerHost.sinks[-4] == nil }.get()
        XCTAssertTrue(gone)
        XCTAssertFalse(readerHost.events.all.contains { if case .cluster = $0 { return true }; return false })
        XCTAssertFalse(ownerHost.events.all.contains { if case .sessionStarted = $0 { return true }; return false })
    }

    func testARefusedSessionAndAnUnreachableOwnerCloseTheFeed() async throws {
        let (ownerHost, readerHost, reader, link) = try await twoNodes()
        // The core refuses a feed of a console this node does not own by closing the session at once.
        ownerHost.onSession = { _, sink in sink.close(flush: false) }
        let key = self.key
        reader.loop.execute { reader.openFeed(-1, key, node: "a", link: link, sinceEpoch: nil) }
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
        let (ownerHost, readerHost, reader, link) = try await twoNodes(tls: tls, readerTLS: .some(nil), readerClientTLS: anonymous)
        let key = self.key
        reader.loop.execute { reader.openFeed(-1, key, node: "a", link: link, sinceEpoch: nil) }
        readerHost.events.wait { if case .cluster(.feedClosed(-1, _)) = $0 { return true }; return false }
        XCTAssertFalse(ownerHost.events.all.contains { if case .sessionStarted = $0 { return true }; return false })
        XCTAssertFalse(readerHost.events.all.contains { if case .cluster(.feedOpened) = $0 { return true }; return false })
    }

    func testAnOversizeFrameClosesTheConnection() async throws {
        let ownerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost)
        var frame = ByteBuffer()
        frame.writeInteger(UInt8(3))
        frame.writeInteger(UInt32(ClusterLinkCodec.maxPayload + 1))
        let answer = try await Self.exchange(port: try XCTUnwrap(owner.port), send: frame, group: group)
        XCTAssertEqual(try Self.frames(answer), [.close("frame of type 3 too long: 65537 bytes (at most 65536)")])
        XCTAssertFalse(ownerHost.events.all.contains { if case .sessionStarted = $0 { return true }; return false })
    }

    func testAPeerWithoutHelloIsClosed() async throws {
        let ownerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost, helloTimeout: .milliseconds(100))
        let answer = try await Self.exchange(port: try XCTUnwrap(owner.port), send: ByteBuffer(), group: group)
        XCTAssertEqual(try Self.frames(answer), [.close("no HELLO within 0.1 s")])
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

    /// Idle sockets from one address (127.0.0.2) take at most their share: the next from there is closed at
    /// once, while another address (127.0.0.1) still gets in, and a HELLO frees a place.
    func testIdleConnectionsFromOneAddressAreBoundedApartFromOthers() async throws {
        let ownerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost, maxPerAddress: 2)
        let port = try XCTUnwrap(owner.port)
        func connect(from source: String) async throws -> Channel {
            try await ClientBootstrap(group: group).bind(to: try SocketAddress(ipAddress: source, port: 0))
                .connect(host: "127.0.0.1", port: port).get()
        }
        func counts() async throws -> (Int, [String: Int]) {
            try await owner.loop.submit { (owner.unauthenticated, owner.unauthenticatedFrom) }.get()
        }
        let idle = [try await connect(from: "127.0.0.2"), try await connect(from: "127.0.0.2")]
        for _ in 0..<1000 where try await counts().0 < 2 { usleep(10_000) }
        let third = try await connect(from: "127.0.0.2")
        try await third.closeFuture.get()
        let local = try await connect(from: "127.0.0.1")
        for _ in 0..<1000 where try await counts().0 < 3 { usleep(10_000) }
        var now = try await counts()
        XCTAssertEqual(now.0, 3)
        XCTAssertEqual(now.1, ["127.0.0.2": 2, "127.0.0.1": 1])
        // One of the idle ones says HELLO: its place is free again.
        let hello = try ClusterLinkCodec.encode(.hello(.init(node: "b", uuid: key.uuid, label: "", sinceEpoch: nil)))
        try await idle[0].writeAndFlush(ByteBuffer(bytes: hello))
        for _ in 0..<1000 where try await counts().0 > 2 { usleep(10_000) }
        now = try await counts()
        XCTAssertEqual(now.1, ["127.0.0.2": 1, "127.0.0.1": 1])
        let again = try await connect(from: "127.0.0.2")
        for _ in 0..<1000 where try await counts().0 < 3 { usleep(10_000) }
        now = try await counts()
        XCTAssertEqual(now.1, ["127.0.0.2": 2, "127.0.0.1": 1])
        for channel in idle + [local, again] { try? await channel.close() }
        for _ in 0..<1000 where try await counts().0 > 0 { usleep(10_000) }
        now = try await counts()
        XCTAssertEqual(now.1, [:], "closed before HELLO: counted out")
    }

    /// A burst of feeds to one node (people attaching after a failover) connects a few at a time, so it stays
    /// inside that node's per-address bound: every feed opens, none is refused; one the core closes while it
    /// waits its turn never connects.
    func testABurstOfFeedsToOneNodeConnectsAFewAtATime() async throws {
        let ownerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost, maxPerAddress: 2)
        let readerHost = FakeLinkHost(loop: group.next())
        let reader = try await makeLink("b", host: readerHost, maxOpening: 2)
        let link = "127.0.0.1:\(try XCTUnwrap(owner.port))"
        let key = self.key
        reader.loop.execute {
            for id in 1...20 { reader.openFeed(-id, key, node: "a", link: link, sinceEpoch: nil) }
        }
        readerHost.withSink(-20) { $0.close(flush: false) }
        for id in 1...19 {
            readerHost.events.wait { if case .cluster(.feedOpened(-id, _)) = $0 { return true }; return false }
        }
        XCTAssertFalse(readerHost.events.all.contains { if case .cluster(.feedClosed) = $0 { return true }; return false })
        let sessions = ownerHost.events.all.filter { if case .sessionStarted = $0 { return true }; return false }
        XCTAssertEqual(sessions.count, 19, "the feed closed while waiting never connected")
        let opening = try await reader.loop.submit { reader.opening }.get()
        XCTAssertEqual(opening, [:])
    }

    /// A reader that says HELLO and then never reads: once what waits for it passes the water mark, the owner's
    /// core hears that the connection is not writable (and drops it, as any slow person); its close reaches
    /// the socket, and no one else is held up.
    func testAReaderThatNeverReadsIsReportedNotWritableAndClosedAlone() async throws {
        let ownerHost = FakeLinkHost(loop: group.next())
        let owner = try await makeLink("a", host: ownerHost,
                                       waterMark: .init(low: 32 * 1024, high: 64 * 1024))
        let port = try XCTUnwrap(owner.port)
        let stalled = try await ClientBootstrap(group: group)
            .channelOption(ChannelOptions.autoRead, value: false)
            .channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: 4096)
            .connect(host: "127.0.0.1", port: port).get()
        let hello = try ClusterLinkCodec.encode(.hello(.init(node: "b", uuid: key.uuid, label: "", sinceEpoch: nil)))
        try await stalled.writeAndFlush(ByteBuffer(bytes: hello))
        let started = ownerHost.events.wait { if case .sessionStarted = $0 { return true }; return false }
        guard case let .sessionStarted(id, _, _, _)? = started else { return XCTFail("no session") }
        // Written until the kernel's buffers are full and the link's own queue passes its high water mark.
        let chunk = ByteBuffer(bytes: [UInt8](repeating: 0x41, count: 64 * 1024))
        func stalledReported() -> Bool {
            ownerHost.events.all.contains { if case .writabilityChanged(id, writable: false) = $0 { return true }; return false }
        }
        for _ in 0..<4096 where !stalledReported() {
            ownerHost.withSink(id) { $0.write(chunk) }
            usleep(1000)
        }
        XCTAssertTrue(stalledReported())
        // Another reader is served meanwhile.
        let readerHost = FakeLinkHost(loop: group.next())
        let reader = try await makeLink("b", host: readerHost)
        let key = self.key
        reader.loop.execute { reader.openFeed(-5, key, node: "a", link: "127.0.0.1:\(port)", sinceEpoch: nil) }
        readerHost.events.wait { if case .cluster(.feedOpened(-5, _)) = $0 { return true }; return false }
        // The core drops it: closed at once, not after what it never read.
        ownerHost.withSink(id) { $0.close(flush: false) }
        ownerHost.events.wait { if case .clientClosed(id) = $0 { return true }; return false }
        try await stalled.close()
    }

    func testTheFrameHandlerReadsFramesInAnyPiecesAndStopsAtABadOne() throws {
        let channel = EmbeddedChannel(handler: LinkFrameHandler())
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let frames: [ClusterLinkFrame] = [.hello(.init(node: "b", uuid: key.uuid, label: "2", sinceEpoch: 3)),
                                          .accept(.init(node: "a", epoch: 4)), .data([1, 2]), .close("bye")]
        let bytes = try frames.flatMap { try ClusterLinkCodec.encode($0) }
        for byte in bytes { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
        try channel.writeInbound(ByteBuffer(bytes: [3, 0, 0, 0, 2, 1]))
        for frame in frames { XCTAssertEqual(try channel.readInbound(as: ClusterLinkFrame.self), frame) }
        XCTAssertNil(try channel.readInbound(as: ClusterLinkFrame.self))
        // The partial DATA is completed; then a bad type is an error, and nothing is read after it.
        try channel.writeInbound(ByteBuffer(bytes: [7]))
        XCTAssertEqual(try channel.readInbound(as: ClusterLinkFrame.self), .data([1, 7]))
        XCTAssertThrowsError(try channel.writeInbound(ByteBuffer(bytes: [9, 0, 0, 0, 0])))
        try channel.writeInbound(ByteBuffer(bytes: try ClusterLinkCodec.encode(.data([5]))))
        XCTAssertNil(try channel.readInbound(as: ClusterLinkFrame.self))
        _ = try channel.finish()
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

    /// The frames of what a link sent.
    static func frames(_ bytes: [UInt8]) throws -> [ClusterLinkFrame] {
        var decoder = ClusterLinkCodec.Decoder()
        return try decoder.decode(bytes)
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
