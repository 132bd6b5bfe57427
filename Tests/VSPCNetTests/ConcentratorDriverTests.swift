import Foundation
import Logging
import NIOCore
import NIOEmbedded
import VSPCCore
import XCTest
@testable import VSPCNet

/// The real `ConcentratorDriver` running the real machine on an `EmbeddedEventLoop`: channels are
/// `EmbeddedChannel`s with the real handler, the store is a fake that commits at once, and listeners are
/// embedded server channels, so every byte in and out is checked without a socket or a thread.
final class ConcentratorDriverTests: XCTestCase {
    /// Commits at once; reads nothing back.
    final class FakeStore: RecordBackend, @unchecked Sendable {
        var ops: [StoreOp] = []
        var events: [ConsoleEvent] { ops.compactMap { if case .event(let e) = $0 { return e }; return nil } }
        var commitObserver: (@Sendable (Double, Int) -> Void)?
        func enqueue(_ ops: [StoreOp], completion: (@Sendable (Error?) -> Void)?) {
            self.ops += ops
            completion?(nil)
        }
        func flush() {}
        func close() {}
        func loadAssignments() throws -> [Assignment] { [] }
        func allScrollback() throws -> [(uuid: String, label: String, data: [UInt8])] { [] }
        func loadTokens() throws -> [APIToken] { [] }
        func events(uuid: String?, label: String?, since: Date?, limit: Int?) throws -> [ConsoleEvent] { [] }
        func knownConsoles() throws -> [ConsoleCandidate] { [] }
        func scrollback(uuid: String, label: String) throws -> [UInt8]? { nil }
    }

    /// A sink standing for a door the driver has no channel for.
    final class RecordingSink: ConnectionSink {
        var written: [UInt8] = []
        var ended: Int?
        var closed: Bool?
        func write(_ buffer: ByteBuffer) { written += Array(buffer.readableBytesView) }
        func close(flush: Bool) { closed = flush }
        func end(exitStatus: Int) { ended = exitStatus }
        func setReading(_ on: Bool) {}
        func closeTransport() { closed = true }
    }

    let loop = EmbeddedEventLoop()
    let store = FakeStore()
    var driver: ConcentratorDriver!
    var binds: [(ListenerRef, Int)] = []
    let uuid = "0123456789abcdeffedcba9800000000"

    override func setUp() {
        var config = DaemonConfig()
        config.descriptorLimit = 1000
        driver = ConcentratorDriver(config: config, store: store, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), loop: loop,
                                    metrics: VSPCMetrics(version: "test"))
        driver.openListener = { [unowned self] ref, port in
            self.binds.append((ref, port))
            return self.loop.makeSucceededFuture(EmbeddedChannel(loop: self.loop))
        }
        driver.handle(.start(assignments: [], scrollback: [:], descriptorBaseline: 8))
    }

    override func tearDown() {
        driver.shutdown()
        try? loop.syncShutdownGracefully()
    }

    private func connect(_ kind: ConcentratorChannelHandler.Kind, from address: String, port: Int) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: ConcentratorChannelHandler(id: driver.makeID(), kind: kind, driver: driver),
                                      loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: address, port: port)).wait()
        loop.run()
        return channel
    }

    private func outbound(_ channel: EmbeddedChannel) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += Array(buffer.readableBytesView) }
        return bytes
    }

    private func send(_ channel: EmbeddedChannel, _ bytes: [UInt8]) throws {
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        loop.run()
    }

    /// An ESXi host's negotiation, DO-PROXY, uuid and name, as the captures show them.
    private func bringUpVM() throws -> EmbeddedChannel {
        let vm = try connect(.vm, from: "10.0.0.1", port: 900)
        XCTAssertEqual(try outbound(vm), [0xFF, 0xFB, 0x00, 0xFF, 0xFB, 0x03, 0xFF, 0xFB, 0x01, 0xFF, 0xFD, 0x00, 0xFF, 0xFD, 0x03, 0xFF, 0xFD, 0xE8])
        try send(vm, [0xFF, 0xFB, 0x25, 0xFF, 0xFD, 0x00, 0xFF, 0xFD, 0x03, 0xFF, 0xFD, 0x01,
                      0xFF, 0xFB, 0x00, 0xFF, 0xFB, 0x03, 0xFF, 0xFB, 0xE8])
        try send(vm, VMwareCommand.message(VMwareCommand.knownSuboptions1, [0, 1, 2, 3, 40, 41, 43, 44, 45, 46, 48, 70, 71, 73, 80, 81, 84, 85, 86, 87, 82, 83]))
        try send(vm, VMwareCommand.message(VMwareCommand.doProxy, [UInt8(ascii: "S")] + Array("vSPC.py".utf8)))
        try send(vm, VMwareCommand.message(VMwareCommand.vmVCUUID, Array("01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00".utf8)))
        try send(vm, VMwareCommand.message(VMwareCommand.vmName, Array("web01".utf8)))
        _ = try outbound(vm)
        return vm
    }

    func testBytesFlowBetweenAVMAndATelnetPersonThroughTheRealDriver() throws {
        let vm = try bringUpVM()
        XCTAssertEqual(binds.map(\.1), [20000])
        let ref = try XCTUnwrap(binds.first?.0)
        let person = try connect(.telnet(ref), from: "192.0.2.7", port: 40001)
        XCTAssertEqual(try outbound(person), ClientLinkStateMachine.opening)
        // The VM prints "A", 0xFF (IAC IAC on its leg), "B": the telnet person gets 0xFF doubled again.
        try send(vm, [0x41, 0xFF, 0xFF, 0x42])
        XCTAssertEqual(try outbound(person), [0x41, 0xFF, 0xFF, 0x42])
        // What the person types reaches the VM, escaped for its leg.
        try send(person, Array("ls".utf8) + [0xFF, 0xFF])
        XCTAssertEqual(try outbound(vm), Array("ls".utf8) + [0xFF, 0xFF])
        XCTAssertEqual(store.events.map(\.kind), ["vm-connect", "port-assigned", "client-attach"])
        XCTAssertEqual(store.events.last?.peer, "192.0.2.7:40001")
        XCTAssertEqual(store.events.last?.detail, "door=telnet mode=read-write")
    }

    /// A telnet person whose channel goes over its water mark is dropped (byte-exact doors never skip), and the
    /// record and the metric say why.
    func testASlowTelnetReaderIsDroppedWithItsReason() throws {
        _ = try bringUpVM()
        let person = try connect(.telnet(try XCTUnwrap(binds.first?.0)), from: "192.0.2.7", port: 40001)
        person.isWritable = false
        person.pipeline.fireChannelWritabilityChanged()
        loop.run()
        XCTAssertFalse(person.isActive)
        XCTAssertEqual(store.events.suffix(2).map(\.kind), ["client-dropped", "client-detach"])
        XCTAssertEqual(store.events.suffix(2).first?.detail, "stopped reading; door=telnet mode=read-write")
        let text = String(decoding: driver.metrics.exposition(snapshot: driver.metricsSnapshot()), as: UTF8.self)
        XCTAssertTrue(text.contains("vspc_clients_dropped_total{reason=\"slow\"} 1"), text)
    }

    /// Any sink gets what the machine sends to its id: a person on the SSH door gets raw bytes and notices
    /// through the sink, and is ended with an exit status.
    func testEverySinkIsWrittenTheSameWay() throws {
        let vm = try bringUpVM()
        let id = driver.makeID()
        let sink = RecordingSink()
        driver.register(id, sink)
        let key = AuthorizedKey(keyType: "ssh-ed25519", blob: [1], comment: "alice")
        driver.handle(.sessionStarted(id, door: .ssh, peer: "[2001:db8::7]:5000",
                                      request: SessionRequest(target: .name("web01"), principal: .key(key, fingerprint: "SHA256:x"))))
        XCTAssertTrue(String(decoding: sink.written, as: UTF8.self).contains("[vspcd: connected to web01 (up)"))
        sink.written = []
        try send(vm, [0x41, 0xFF, 0xFF])
        XCTAssertEqual(sink.written, [0x41, 0xFF])
        driver.handle(.clientBytes(id, [0x1D, UInt8(ascii: ".")]))
        XCTAssertEqual(sink.ended, 0)
        XCTAssertEqual(store.events.last?.peer, "[2001:db8::7]:5000")
    }

    func testAVMConnectionEndedByAnErrorIsCountedAsOne() throws {
        let vm = try bringUpVM()
        vm.pipeline.fireErrorCaught(IOError(errnoCode: ECONNRESET, reason: "read"))
        loop.run()
        XCTAssertEqual(store.events.last?.kind, "vm-disconnect")
        XCTAssertEqual(store.events.last?.detail, "closed by vspcd after an error")
        let text = String(decoding: driver.metrics.exposition(snapshot: driver.metricsSnapshot()), as: UTF8.self)
        XCTAssertTrue(text.contains("vspc_vm_disconnects_total{reason=\"error\"} 1"), text)
    }
}
