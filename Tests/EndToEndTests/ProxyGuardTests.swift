import Foundation
import VSPCClient
import VSPCCore
import VSPCSim
import VSPCStore
import XCTest

/// The proxy port against strangers, end to end with connections from other loopback addresses (127.0.0.2 and
/// more; Linux routes all of 127/8 to the loopback): a backed-up VM keeps its console, half-open connections and
/// made-up uuids are bounded per address, and refusals make a bounded number of log lines. `--proxy-allow` and
/// its reloads are in ProxyGuardTests+Allow.swift.
final class ProxyGuardTests: DaemonTestCase {
    var connections: [SimConnection] = []
    var sockets: [AddressedSocket] = []

    override func tearDown() async throws {
        connections.forEach { $0.close() }
        sockets.forEach { $0.close() }
        connections = []
        sockets = []
        try await super.tearDown()
    }

    /// The VM stops reading; the person types until the daemon's queue to the VM (4 MiB) is full and it says so.
    /// Each MiB is followed by a barrier on the person's connection: the daemon has read it all. Returns the bytes
    /// typed.
    func typeUntilBackedUp(_ daemon: Daemon, _ vm: SimulatedVM, _ name: String, _ person: SimulatedClient) async throws -> Int {
        vm.pauseReading()
        let chunk = [UInt8](repeating: UInt8(ascii: "t"), count: 64 * 1024)
        var typed = 0
        while !daemon.log.contains("discarded: VM \(name) is not reading") {
            guard typed < 128 << 20 else { throw SimError("typed \(typed) bytes and the VM was never backed up") }
            for _ in 0..<16 { person.send(chunk) }
            typed += 16 * chunk.count
            try await person.barrier(timeout: 60)
        }
        return typed
    }

    func describe(_ events: [ConsoleEvent]) -> String {
        events.map { "\($0.kind)[\($0.detail ?? "")]" }.joined(separator: ", ")
    }

    /// A simulated VM connecting from `localHost`, kept for tearDown.
    func vm(_ daemon: Daemon, _ uuid: String, _ name: String, from localHost: String = "127.0.0.1",
            waitForProxy: Bool = true) async throws -> SimulatedVM {
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: name,
                                               waitForProxy: waitForProxy, localHost: localHost)
        connections.append(vm)
        return vm
    }

    // MARK: - 14.1 a backed-up VM keeps its console

    func testABackedUpVMThatStillPrintsKeepsItsConsole() async throws {
        let daemon = try await startDaemon(["--vm-stuck-timeout", "600"])
        let uuid = testUUID(1)
        let holder = try await vm(daemon, uuid, "backed-up-1")
        let port = try await daemon.port(of: uuid)
        let person = try await SimulatedClient.connect(port: port)
        connections.append(person)
        try await daemon.waitForList("the person attached") { $0.first?.clients == 1 }

        let typed = try await typeUntilBackedUp(daemon, holder, "backed-up-1", person)
        XCTAssertGreaterThan(typed, 4 << 20)

        // It keeps printing (the daemon does not read it now), and a second connection claims its uuid.
        holder.output("still printing\r\n")
        let contender = try await vm(daemon, uuid, "backed-up-1", waitForProxy: false)
        try await contender.waitForClose(timeout: 60)
        holder.output("and printing\r\n")
        let events = try await waitForEvents(daemon, uuid: uuid, "vm-takeover-refused") {
            $0.contains { $0.kind == "vm-takeover-refused" }
        }
        XCTAssertEqual(events.filter { $0.kind == "vm-takeover-refused" }.count, 1, describe(events))
        XCTAssertFalse(events.contains { $0.kind == "vm-disconnect" }, describe(events))
        XCTAssertFalse(holder.closed)
        let listed = try await daemon.list()
        XCTAssertEqual(listed.count, 1)
        XCTAssertTrue(listed.first?.connected == true, "\(listed)")

        // Reading again, it drains what was queued, and its console works both ways as before.
        holder.resumeReading()
        try await holder.barrier(timeout: 120)
        holder.output("after the backlog\r\n")
        try await person.wait("the VM's output at the person", timeout: 60) {
            String(decoding: person.data, as: UTF8.self).contains("after the backlog\r\n")
        }
        let got = holder.data.count
        person.send(Array("typed-after".utf8))
        try await holder.wait("the person's input at the VM", timeout: 60) {
            String(decoding: holder.data.dropFirst(got), as: UTF8.self).contains("typed-after")
        }
        XCTAssertFalse(holder.closed)
    }

    // MARK: - 14.4 half-open connections per address

    func testHalfOpenConnectionsFromOneAddressAreBounded() async throws {
        let daemon = try await startDaemon(["--proxy-max-unidentified-per-address", "64", "--identify-timeout", "600"])
        var first: [AddressedSocket] = []
        for _ in 0..<64 {
            let socket = try AddressedSocket(from: "127.0.0.2", to: daemon.proxyPort)
            socket.send([0xFF, 0xFB, 0xE8]) // IAC WILL 232, and then nothing
            first.append(socket)
            sockets.append(socket)
        }
        // Connections count against the limit once they have stayed unidentified past a grace of 1 s (a host
        // booting many VMs at once is never refused): until then another one is answered like the first 64.
        // Once the 64 are past it, the next ones are closed at once, before the daemon says anything.
        var answered = 0
        var refusedAtOnce = 0
        let deadline = Date().addingTimeInterval(60)
        while refusedAtOnce < 6 {
            guard Date() < deadline else { throw SimError("no connection refused; \(answered) answered") }
            let socket = try AddressedSocket(from: "127.0.0.2", to: daemon.proxyPort)
            socket.send([0xFF, 0xFB, 0xE8])
            sockets.append(socket)
            var outcome: AddressedSocket.Outcome?
            try await waitUntil("the daemon to answer or close connection \(answered + refusedAtOnce + 65)") {
                outcome = socket.outcome
                return outcome != nil
            }
            if outcome == .closedSilently {
                refusedAtOnce += 1
            } else {
                XCTAssertEqual(refusedAtOnce, 0, "a connection was answered after one was refused")
                answered += 1
                try await Task.sleep(nanoseconds: 50_000_000) // a poll interval while the grace runs out
            }
        }
        // A VM from another address still connects and gets its port, and none of the 64 was closed.
        let real = try await vm(daemon, testUUID(41), "real-41")
        _ = try await daemon.port(of: real.uuid)
        XCTAssertEqual(first.filter(\.closedByPeer).count, 0)
        XCTAssertTrue(daemon.log.contains("refused proxy connection from 127.0.0.2:"), daemon.log)
        XCTAssertTrue(daemon.log.contains("64 connections from this address have not identified themselves (the limit)"), daemon.log)

        // With --identify-timeout 2, the 64 are closed after it.
        let quick = try await startDaemon(["--proxy-max-unidentified-per-address", "64", "--identify-timeout", "2"])
        var halfOpen: [AddressedSocket] = []
        for _ in 0..<64 {
            let socket = try AddressedSocket(from: "127.0.0.2", to: quick.proxyPort)
            socket.send([0xFF, 0xFB, 0xE8])
            halfOpen.append(socket)
            sockets.append(socket)
        }
        try await waitUntil("the 64 closed after the identify timeout", timeout: 60) { halfOpen.allSatisfy(\.closedByPeer) }
        try await quick.waitForLog("not identified within 2")
        let after = try await vm(quick, testUUID(42), "real-42", from: "127.0.0.2")
        _ = try await quick.port(of: after.uuid)
    }

    // MARK: - 14.5 made-up uuids

    func testMadeUpUUIDsFromOneAddressGetFivePortsAMinute() async throws {
        let daemon = try await startDaemon(["--new-ports-per-minute", "5"])
        var assigned: [String] = []
        var refused: [String] = []
        for i in 0..<20 {
            let uuid = testUUID(500 + i)
            let made = try await vm(daemon, uuid, "made-up-\(i)", from: "127.0.0.2", waitForProxy: false)
            // Either it is listed (a port) or the daemon closes it (refused).
            let deadline = Date().addingTimeInterval(30)
            while !made.closed, !(try await daemon.list().contains { $0.uuid == uuid && $0.saved != false }) {
                guard Date() < deadline else { throw SimError("made-up-\(i) neither listed nor closed") }
                try await Task.sleep(nanoseconds: 10_000_000)
            }
            if made.closed { refused.append(uuid) } else { assigned.append(uuid) }
        }
        XCTAssertEqual(assigned.count, 5, "assigned \(assigned.count), refused \(refused.count)")
        XCTAssertEqual(refused.count, 15)
        let listed = try await daemon.list()
        XCTAssertEqual(Set(listed.map(\.uuid)), Set(assigned))

        // The refusals are recorded as port-refused, within the per-address log bound (one a minute per
        // address, the rest counted as suppressed).
        var refusals: [ConsoleEvent] = []
        try await waitUntil("port-refused events") {
            let store = try Store(path: daemon.dbPath, readOnly: true)
            refusals = try refused.flatMap { try store.events(uuid: $0) }.filter { $0.kind == "port-refused" }
            return !refusals.isEmpty
        }
        XCTAssertEqual(refusals.first?.detail, "5 new port assignments from this address in the last minute (the limit)")
        XCTAssertEqual(refusals.first?.uuid, refused.first)
        XCTAssertEqual(refusals.count, 1, "one port-refused record a minute per address: \(describe(refusals))")
        for uuid in refused {
            let events = try Store(path: daemon.dbPath, readOnly: true).events(uuid: uuid)
            XCTAssertFalse(events.contains { $0.kind == "port-assigned" || $0.kind == "vm-connect" }, describe(events))
        }

        // Another address is not held back.
        let real = try await vm(daemon, testUUID(599), "real-599")
        _ = try await daemon.port(of: real.uuid)
    }

    // MARK: - 14.9 refusals from many addresses

    func testRefusalsFromAThousandAddressesMakeABoundedNumberOfLogLines() async throws {
        let daemon = try await startDaemon(["--proxy-allow", "127.0.0.1/32"])
        // 1,000 addresses 127.0.x.y with x in 1...4: never 127.0.0.1. Two connections from each.
        let addresses = (0..<1000).map { "127.0.\($0 / 250 + 1).\($0 % 250 + 1)" }
        let failures = DataBox()
        DispatchQueue.concurrentPerform(iterations: 2000) { i in
            do {
                let socket = try AddressedSocket(from: addresses[i % 1000], to: daemon.proxyPort)
                defer { socket.close() }
                if !socket.waitForPeerClose(timeout: 60) { failures.append(Data("\(addresses[i % 1000]) still open\n".utf8)) }
            } catch {
                failures.append(Data("\(error)\n".utf8))
            }
        }
        XCTAssertEqual(String(decoding: failures.value, as: UTF8.self), "")
        // Each refusal is logged (or not) before its connection is closed: every line there will be is there.
        let lines = daemon.log.split(separator: "\n").filter { $0.contains("refused proxy connection from") }
        XCTAssertGreaterThan(lines.count, 0)
        XCTAssertLessThanOrEqual(lines.count, 64, "\(lines.count) refusal lines")
        let real = try await vm(daemon, testUUID(91), "real-91")
        _ = try await daemon.port(of: real.uuid)
    }
}

/// A blocking TCP socket to 127.0.0.1:port from another local address.
final class AddressedSocket {
    let fd: Int32
    private var sawClose = false

    init(from local: String, to port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SimError("socket: errno \(errno)") }
        var source = sockaddr_in()
        source.sin_family = sa_family_t(AF_INET)
        source.sin_addr.s_addr = inet_addr(local)
        let bound = withUnsafePointer(to: &source) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            let error = errno
            Glibc.close(fd)
            throw SimError("bind to \(local): errno \(error)")
        }
        var addr = StuckSocket.address(port)
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let error = errno
            Glibc.close(fd)
            throw SimError("connect from \(local) to port \(port): errno \(error)")
        }
    }

    enum Outcome: Equatable {
        /// The daemon sent something (the connection is served).
        case answered
        /// The daemon closed it without a byte.
        case closedSilently
    }

    /// What the daemon did with the connection so far (nil: nothing yet); never blocks.
    var outcome: Outcome? {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK))
        if n > 0 { return .answered }
        if n == 0 { return .closedSilently }
        let error = errno
        return error == EAGAIN || error == EWOULDBLOCK || error == EINTR ? nil : .closedSilently
    }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// True once the daemon has closed the connection (what it sent is read and thrown away); never blocks.
    var closedByPeer: Bool {
        if sawClose { return true }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { continue }
            let error = errno
            if n < 0, error == EINTR { continue }
            if n < 0, error == EAGAIN || error == EWOULDBLOCK { return false }
            sawClose = true
            return true
        }
    }

    /// Blocks until the daemon closes the connection (true) or `timeout` seconds pass (false).
    func waitForPeerClose(timeout: Double) -> Bool {
        var limit = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { continue }
            let error = errno
            if n < 0, error == EINTR { continue }
            return n == 0 || error == ECONNRESET
        }
    }

    func close() { _ = Glibc.close(fd) }
}
