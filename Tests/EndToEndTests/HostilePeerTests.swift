import Foundation
import VSPCCore
import VSPCClient
import VSPCSim
import VSPCStore
import XCTest

/// End to end, against the real vspcd binary: peers that attack the daemon (a reply flood from a peer that never
/// reads, a BEGIN/ABORT flood, connections from outside `--proxy-allow`, an oversized admin request) cost only
/// themselves, and the other consoles keep working. Takeover and vMotion restarts are in
/// HostilePeerTests+Takeover.swift.
final class HostilePeerTests: DaemonTestCase {
    // MARK: - helpers (shared with HostilePeerTests+Takeover.swift)

    /// VMware sub-command codes and telnet bytes, spelled out so the tests do not lean on the code under test.
    enum Code {
        static let knownSuboptions1: UInt8 = 0x00
        static let unknownSuboptionRcvd2: UInt8 = 0x03
        static let begin: UInt8 = 0x28
        static let goahead: UInt8 = 0x29
        static let notNow: UInt8 = 0x2B
        static let peer: UInt8 = 0x2C
        static let abort: UInt8 = 0x30
        static let doProxy: UInt8 = 0x46
        static let vcUUID: UInt8 = 0x50
        static let vmName: UInt8 = 0x52
        static let getVMName: UInt8 = 0x53
        /// IAC DO TIMING-MARK: the daemon's liveness probe.
        static let doTimingMark: [UInt8] = [0xFF, 0xFD, 0x06]
    }

    /// `IAC SB 232 <command> <payload, 0xFF doubled> IAC SE`.
    func wireMessage(_ command: UInt8, _ payload: [UInt8] = []) -> [UInt8] {
        [0xFF, 0xFA, 0xE8, command] + payload.flatMap { $0 == 0xFF ? [0xFF, 0xFF] : [$0] } + [0xFF, 0xF0]
    }

    /// What ESXi sends to open a connection and identify, all at once: WILL VMWARE-EXT, KNOWN-SUBOPTIONS-1,
    /// DO-PROXY for vSPC.py, its uuid and its name (the daemon accepts the uuid and name before asking).
    func esxiOpening(uuid: String, name: String) -> [UInt8] {
        [0xFF, 0xFB, 0xE8]
            + wireMessage(Code.knownSuboptions1, SimulatedVM.esxiKnownSuboptions)
            + wireMessage(Code.doProxy, Array("SvSPC.py".utf8))
            + wireMessage(Code.vcUUID, Array(SimulatedVM.wireUUID(uuid).utf8))
            + wireMessage(Code.vmName, Array(name.utf8))
    }

    /// A VM with one telnet client attached to its port.
    func vmWithClient(_ daemon: Daemon, _ uuid: String, name: String) async throws -> (SimulatedVM, SimulatedClient) {
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: name)
        let port = try await daemon.port(of: uuid)
        let client = try await SimulatedClient.connect(port: port)
        try await daemon.waitForList("a client on \(name)") { $0.first { $0.uuid == uuid }?.clients == 1 }
        return (vm, client)
    }

    /// The VM's output reaches the person, and the person's input reaches the VM (generous deadlines: the
    /// daemon may be busy with a flood; this checks that it still serves, not how fast).
    func roundTrip(_ vm: SimulatedVM, _ client: SimulatedClient, _ n: Int, timeout: Double = 60) async throws {
        let output = Array("out-\(n);".utf8)
        let seen = client.data.count
        vm.output(output)
        try await client.waitForData(count: seen + output.count, timeout: timeout)
        XCTAssertEqual(Array(client.data.suffix(output.count)), output, "round trip \(n): VM output")
        let input = Array("in-\(n);".utf8)
        let got = vm.data.count
        client.send(input)
        try await vm.wait("round trip \(n): input at the VM", timeout: timeout) { vm.data.count >= got + input.count }
        XCTAssertEqual(Array(vm.data.suffix(input.count)), input, "round trip \(n): person's input")
    }

    /// Waits until the daemon's log contains `text`.
    func waitForLog(_ daemon: Daemon, _ text: String, timeout: Double = 30) async throws {
        try await daemon.waitForLog(text, timeout: timeout)
    }

    func occurrences(of text: String, in log: String) -> Int {
        log.components(separatedBy: text).count - 1
    }

    /// VmRSS and VmHWM (peak) of a process, from /proc.
    func memory(of pid: Int32) -> (rss: String, peak: String) {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> String {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return "?" }
            return line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)
        }
        return (field("VmRSS"), field("VmHWM"))
    }

    /// "127.0.0.1:PORT", the daemon's view of this socket's peer address.
    func localAddress(_ fd: Int32) -> String {
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &len) }
        }
        return "127.0.0.1:\(UInt16(bigEndian: addr.sin_port))"
    }

    // MARK: - 1. reply flood from a peer that never reads

    func testReplyFloodFromAPeerThatNeverReadsIsClosedAndOthersKeepWorking() async throws {
        let daemon = try await startDaemon(["--vm-stuck-timeout", "1"])
        let (vm, client) = try await vmWithClient(daemon, testUUID(801), name: "bystander")
        defer { vm.close(); client.close() }
        var trips = 0
        try await roundTrip(vm, client, trips)
        let pid = try XCTUnwrap(daemon.process).processIdentifier
        let before = memory(of: pid)

        // A plain socket with a small receive buffer that identifies as a VM, then never reads.
        let floodUUID = testUUID(802)
        let sock = try StuckSocket(port: daemon.proxyPort)
        defer { sock.close() }
        let opening = esxiOpening(uuid: floodUUID, name: "flood")
        XCTAssertEqual(opening.withUnsafeBytes { send(sock.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }, opening.count)
        try await daemon.waitForList("the flooding peer identified") { $0.first { $0.uuid == floodUUID }?.connected == true }
        let floodPeer = localAddress(sock.fd)
        _ = fcntl(sock.fd, F_SETFL, fcntl(sock.fd, F_GETFL) | O_NONBLOCK)

        // Unknown VMware sub-commands, each answered with UNKNOWN-SUBOPTION-RCVD-2 that is never read. The
        // stream stays whole across partial writes: each write resumes where the last one stopped.
        let unit: [UInt8] = [0xFF, 0xFA, 0xE8, 0x63, 0xFF, 0xF0]
        let chunk = [UInt8]([[UInt8]](repeating: unit, count: 10_000).joined())
        let floodStart = Date()
        var sent = 0
        var outcome: String?
        var stalls = 0
        let deadline = Date().addingTimeInterval(240)
        var nextTrip = Date().addingTimeInterval(0.3)
        while outcome == nil, sent < 1 << 30, Date() < deadline {
            let offset = sent % chunk.count
            let n = chunk.withUnsafeBytes { send(sock.fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            let error = errno
            if n > 0 {
                sent += n
            } else if n < 0, error == EAGAIN || error == EWOULDBLOCK {
                // The daemon is not taking more: it has stopped reading us, or is busy. Has it closed?
                stalls += 1
                let rdhup: Int16 = 0x2000 // POLLRDHUP: the peer closed its side
                var p = pollfd(fd: sock.fd, events: rdhup, revents: 0)
                if poll(&p, 1, 0) > 0, p.revents & (Int16(POLLERR) | Int16(POLLHUP) | rdhup) != 0 {
                    outcome = "poll revents 0x\(String(p.revents, radix: 16)) (peer closed)"
                }
                try await Task.sleep(nanoseconds: 5_000_000)
            } else if n < 0, error == EINTR {
                continue
            } else {
                outcome = n == 0 ? "send returned 0" : "send failed: \(String(cString: strerror(error)))"
                XCTAssertTrue(n == 0 || error == EPIPE || error == ECONNRESET, outcome!)
            }
            // The other VM and its person are served throughout.
            if outcome == nil, Date() >= nextTrip {
                trips += 1
                try await roundTrip(vm, client, trips)
                nextTrip = Date().addingTimeInterval(0.3)
            }
        }
        let atClose = memory(of: pid)
        XCTAssertNotNil(outcome, "the daemon never closed the flooding connection (sent \(sent) bytes)")

        // One log line, naming the peer; the console is down; the bystander still works.
        try await waitForLog(daemon, "has not read what it was sent")
        try await daemon.waitForList("the flooding VM down") { $0.first { $0.uuid == floodUUID }?.connected == false }
        let log = daemon.log
        XCTAssertEqual(occurrences(of: "has not read what it was sent", in: log), 1, log)
        let line = log.split(separator: "\n").first { $0.contains("has not read what it was sent") } ?? ""
        XCTAssertTrue(line.contains(floodPeer), "the line names the peer \(floodPeer): \(line)")
        // Its log lines and events were held to the budget (20 a minute), the rest summarised at the close.
        let floodMinutes = Int(Date().timeIntervalSince(floodStart) / 60) + 1
        let answeredLines = occurrences(of: "answered unknown VMware sub-command", in: log)
        XCTAssertLessThanOrEqual(answeredLines, 20 * floodMinutes, "log lines about the flood")
        let floodEvents = try await waitForEvents(daemon, uuid: floodUUID, "the flood's summary") {
            $0.contains { $0.kind == "events-suppressed" }
        }
        XCTAssertTrue(floodEvents.contains { $0.kind == "events-suppressed" && $0.detail?.contains("more suppressed") == true })
        trips += 1
        try await roundTrip(vm, client, trips)
        let after = memory(of: pid)
        let bystander = try await daemon.list().first { $0.uuid == vm.uuid }
        XCTAssertEqual(bystander?.connected, true)

        print("""
            HostilePeerTests reply flood: sent \(sent) bytes (\(sent / unit.count) unknown sub-commands) until \(outcome ?? "-"); \
            \(stalls) stalled writes; \(trips) bystander round trips; \(answeredLines) log lines about it; \
            events for it: \(floodEvents.map { "\($0.kind)[\($0.detail ?? "")]" })
            HostilePeerTests reply flood: vspcd VmRSS before \(before.rss), at close \(atClose.rss), after \(after.rss); \
            VmHWM (peak) before \(before.peak), after \(after.peak)
            """)
    }

    // MARK: - 2. BEGIN/ABORT flood

    func testBeginAbortFloodIsRecordedWithinTheBudgetAndSummarised() async throws {
        let daemon = try await startDaemon()
        let otherUUID = testUUID(811)
        let (other, otherClient) = try await vmWithClient(daemon, otherUUID, name: "neighbour")
        defer { other.close(); otherClient.close() }
        try await roundTrip(other, otherClient, 0)
        let otherBefore = try await waitForEvents(daemon, uuid: otherUUID, "the neighbour's history") { events in
            ["vm-connect", "port-assigned", "client-attach"].allSatisfy { kind in events.contains { $0.kind == kind } }
        }

        let uuid = testUUID(812)
        let flapper = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "flapper")
        _ = try await daemon.port(of: uuid)
        let pairs = 2000
        var flood: [UInt8] = []
        for i in 0..<pairs {
            let sequence: [UInt8] = [0x5A, UInt8(truncatingIfNeeded: i >> 16), UInt8(truncatingIfNeeded: i >> 8), UInt8(truncatingIfNeeded: i)]
            flood += wireMessage(Code.begin, sequence) + wireMessage(Code.abort)
        }
        flapper.write(raw: flood)
        // Every BEGIN is answered; once the last one is and the console is no longer migrating, all were handled.
        try await flapper.wait("\(pairs) answers to BEGIN", timeout: 180) {
            flapper.messages.filter { $0.first == Code.goahead || $0.first == Code.notNow }.count >= pairs
        }
        try await daemon.waitForList("the last ABORT handled", timeout: 60) { $0.first { $0.uuid == uuid }?.migrating == false }
        XCTAssertEqual(flapper.messages.filter { $0.first == Code.goahead }.count, pairs, "each BEGIN after an ABORT gets GOAHEAD")
        try await roundTrip(other, otherClient, 1)

        // Closing the connection reports what its budget left out.
        flapper.close()
        let events = try await waitForEvents(daemon, uuid: uuid, "events-suppressed after the close") { events in
            events.contains { $0.kind == "events-suppressed" } && events.contains { $0.kind == "vm-disconnect" }
        }
        let summaries = events.filter { $0.kind == "events-suppressed" }
        for summary in summaries {
            XCTAssertTrue(summary.detail?.contains("more suppressed") == true, summary.detail ?? "no detail")
        }
        let suppressed = summaries.compactMap { summary -> Int? in
            guard let detail = summary.detail, let range = detail.range(of: " more suppressed") else { return nil }
            return Int(detail[..<range.lowerBound].filter(\.isNumber))
        }.reduce(0, +)
        // Each pair causes at least a vmotion-begin and a vmotion-abort; all but the budget's 20 are left out.
        XCTAssertGreaterThanOrEqual(suppressed, pairs, summaries.map { $0.detail ?? "" }.joined(separator: " | "))
        XCTAssertLessThanOrEqual(events.count, 40, "events recorded for the flooding VM: \(events.map(\.kind.rawValue))")
        let kinds = Dictionary(grouping: events, by: \.kind.rawValue).mapValues(\.count).sorted { $0.key < $1.key }
        print("HostilePeerTests BEGIN/ABORT flood: \(pairs) pairs -> \(events.count) events recorded for the VM (\(kinds.map { "\($0.key)=\($0.value)" }.joined(separator: " "))); summaries say \(suppressed) suppressed")

        // The neighbour's history is intact, and it keeps working.
        let otherAfter = try await waitForEvents(daemon, uuid: otherUUID, "the neighbour's history afterwards") { _ in true }
        XCTAssertEqual(Array(otherAfter.prefix(otherBefore.count)), otherBefore)
        XCTAssertFalse(otherAfter.contains { $0.kind == "events-suppressed" })
        try await roundTrip(other, otherClient, 2)
    }

    // MARK: - 3. --proxy-allow

    func testProxyAllowClosesOtherAddressesBeforeAnyByteAndLogsOnce() async throws {
        let daemon = try await startDaemon(["--proxy-allow", "10.0.0.0/8,fd00::/8"])
        for i in 0..<2 {
            let peer = try await RawPeer.connect(port: daemon.proxyPort)
            peer.write(raw: [0xFF, 0xFB, 0x25]) // what ESXi says first (WILL AUTHENTICATION)
            try await peer.waitForClose(timeout: 30)
            XCTAssertEqual(peer.raw, [], "connection \(i) from 127.0.0.1 was sent bytes")
        }
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(821), name: "outsider", waitForProxy: false)
        try await vm.waitForClose(timeout: 30)
        XCTAssertEqual(vm.raw, [], "a VM from 127.0.0.1 was sent bytes")
        // The refusal is logged before the close, so by now every line there will be is in the log.
        let log = daemon.log
        XCTAssertEqual(occurrences(of: "not in --proxy-allow", in: log), 1, log)
        XCTAssertTrue(log.contains("refused proxy connection from 127.0.0.1:"), log)
        let listed = try await daemon.list()
        XCTAssertTrue(listed.isEmpty, "a refused peer left a console behind: \(listed)")

        // Allowed: a VM from loopback connects as usual.
        let open = try await startDaemon(["--proxy-allow", "127.0.0.0/8"])
        let (allowed, client) = try await vmWithClient(open, testUUID(822), name: "insider")
        defer { allowed.close(); client.close() }
        try await roundTrip(allowed, client, 0)
        XCTAssertFalse(open.log.contains("not in --proxy-allow"), open.log)
    }

    func testInvalidProxyAllowStopsStartup() async throws {
        let daemon = try makeDaemon(["--proxy-allow", "10.0.0.0/33"])
        do {
            try await daemon.start(timeout: 20)
            XCTFail("vspcd started with --proxy-allow 10.0.0.0/33")
        } catch {
            let process = try XCTUnwrap(daemon.process)
            XCTAssertFalse(process.isRunning)
            XCTAssertNotEqual(process.terminationStatus, 0)
            XCTAssertTrue(daemon.log.contains("--proxy-allow"), daemon.log)
            XCTAssertTrue(daemon.log.contains("10.0.0.0/33"), daemon.log)
        }
    }

    // MARK: - 6. admin request size

    func testOversizedAdminRequestIsRefusedAndTheDaemonKeepsAnswering() async throws {
        let daemon = try await startDaemon()
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: testUUID(861), name: "listed")
        defer { vm.close() }
        _ = try await daemon.port(of: vm.uuid)

        // A valid `list` request padded with whitespace to 70 KB: refused, not answered.
        func paddedList(_ size: Int) -> [UInt8] {
            let head = Array("{\"version\":1,\"command\":\"list\"".utf8)
            return head + [UInt8](repeating: 0x20, count: size - head.count - 2) + Array("}\n".utf8)
        }
        let peer = try await RawPeer.connect(port: daemon.adminPort)
        peer.write(raw: paddedList(70_000))
        try await peer.waitForClose(timeout: 30)
        let reply = String(decoding: peer.raw, as: UTF8.self)
        let firstLine = try XCTUnwrap(reply.split(separator: "\n").first, "no answer to a 70 KB request")
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(firstLine.utf8)) as? [String: Any], reply)
        XCTAssertEqual(json["ok"] as? Bool, false, reply)
        XCTAssertTrue((json["error"] as? String)?.contains("longer than") == true, reply)
        XCTAssertNil(json["vms"], "a 70 KB request was answered: \(reply.prefix(200))")

        // The same request under 64 KiB is answered, and the daemon keeps answering `list`.
        let under = try await RawPeer.connect(port: daemon.adminPort)
        under.write(raw: paddedList(60_000))
        try await under.waitForClose(timeout: 30)
        XCTAssertTrue(String(decoding: under.raw, as: UTF8.self).contains("\"ok\":true"), String(decoding: under.raw, as: UTF8.self))
        let listed = try await daemon.list()
        XCTAssertEqual(listed.map(\.uuid), [vm.uuid])
    }
}
