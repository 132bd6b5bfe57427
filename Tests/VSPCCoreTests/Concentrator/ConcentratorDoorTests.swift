import XCTest
@testable import VSPCCore

/// Issue 13: a door is a value with capabilities; every way a connection ends carries a typed reason, is
/// recorded where it ends a console's connection, and is counted.
final class ConcentratorDoorTests: XCTestCase {
    private let keyA = ConsoleKey(uuid: UUIDs.a, label: "")
    private let fingerprint = "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

    private func key(_ comment: String, readOnly: Bool = false) -> AuthorizedKey {
        AuthorizedKey(keyType: "ssh-ed25519", blob: Array(comment.utf8), comment: comment, readOnly: readOnly)
    }

    private func start(_ h: ConcentratorHarness, _ door: Door, _ user: String, as comment: String = "alice",
                       command: String? = nil) -> ConnectionID {
        let id = h.newConnection(.client)
        let request = SessionRequest(target: .name(user), principal: .key(key(comment), fingerprint: fingerprint),
                                     command: command)
        h.send(.sessionStarted(id, door: door, peer: "198.51.100.7:5000", request: request))
        return id
    }

    /// A door the concentrator has never seen gets what its capabilities say, with no code of its own: raw
    /// bytes, notices, the replay on attach, the escape menu, an exit status, and its name in the audit.
    func testANewDoorIsOneValue() {
        var config = ConcentratorConfig.forTests
        config.replayBytes = 3
        let h = ConcentratorHarness(config: config)
        let vm = h.bringUpVM()
        h.vm(vm, says: Array("boot".utf8) + [0xFF, 0xFF])
        let telnet = h.connectClient(keyA)
        h.take()
        _ = h.takeOutput(telnet)
        let door = Door(name: "kiosk", framing: .raw, input: .escapeMenu, notices: true, ending: .exitStatus,
                        descriptors: 0, whenBehind: .skipAhead, replayOnAttach: true)
        let id = start(h, door, "web01")
        XCTAssertEqual(h.records.map(\.detail), ["door=kiosk mode=read-write key=alice \(fingerprint)"])
        let opening = h.takeOutput(id)
        XCTAssertEqual(Array(opening.prefix(3)), Array("ot".utf8) + [0xFF], "the replay, raw")
        XCTAssertTrue(String(decoding: opening, as: UTF8.self).contains("[vspcd: connected to web01 (up)"))
        XCTAssertEqual(h.takeOutput(telnet), [], "the telnet port gets no notice")
        // Console bytes: one broadcast per framing.
        XCTAssertEqual(h.vm(vm, says: [0x41, 0xFF, 0xFF]), [.broadcast([telnet], [0x41, 0xFF, 0xFF]), .broadcast([id], [0x41, 0xFF])])
        // The escape menu, and the door's way of ending.
        h.client(id, types: [0x1D, UInt8(ascii: ".")])
        XCTAssertEqual(h.exitStatuses[id], 0)
    }

    func testACommandIsRefusedAndRecorded() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        h.take()
        let id = start(h, .ssh, "web01", command: "reboot")
        XCTAssertEqual(String(decoding: h.takeOutput(id), as: UTF8.self),
                       "vspcd: a console runs no command (got \"reboot\"); use ssh VM@host without one\r\n")
        XCTAssertEqual(h.exitStatuses[id], 1)
        XCTAssertEqual(h.records.map(\.kind), [.clientRefused])
    }

    /// A reader that skips ahead is recorded at most once a minute; what it skipped meanwhile is summed, and
    /// the rest is recorded when it leaves.
    func testSkipsAreRecordedOnceAMinuteAndSummedOnDetach() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        let id = start(h, .ssh, "web01")
        h.take()
        h.send(.clientSkipped(id, bytes: 1_200_000))
        h.send(.clientSkipped(id, bytes: 300))
        h.advance(by: 30)
        h.send(.clientSkipped(id, bytes: 700))
        XCTAssertEqual(h.records.map(\.kind), [.clientSkipped])
        XCTAssertEqual(h.records.first?.detail, "1.2 MB skipped, fell behind; door=ssh mode=read-write key=alice \(fingerprint)")
        h.take()
        h.advance(by: 31)
        h.send(.clientSkipped(id, bytes: 5))
        XCTAssertEqual(h.records.map(\.detail), ["1.0 KB skipped, fell behind; door=ssh mode=read-write key=alice \(fingerprint)"])
        h.take()
        h.send(.clientSkipped(id, bytes: 12))
        XCTAssertEqual(h.records, [])
        h.send(.clientClosed(id))
        XCTAssertEqual(h.records.map(\.kind), [.clientSkipped, .clientDetach])
        XCTAssertEqual(h.records.first?.detail, "12 bytes skipped, fell behind; door=ssh mode=read-write key=alice \(fingerprint)")
    }

    /// `vspc forget --force`: the VM's disconnect and every person's drop are in history before the port goes.
    func testForgetForceRecordsEveryEnd() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        let person = h.connectClient(keyA)
        let ssh = start(h, .ssh, "web01")
        h.take()
        let reply = h.admin(AdminRequest(command: "forget", vm: "web01", force: true))
        XCTAssertEqual(reply.response?.ok, true)
        XCTAssertEqual(h.records.map(\.kind), [.vmDisconnect, .clientDropped, .clientDropped, .portForgotten])
        XCTAssertEqual(h.records.map(\.reason), [.disconnect(.forgotten), .drop(.forgotten), .drop(.forgotten), nil])
        XCTAssertEqual(h.closed[person], false)
        XCTAssertEqual(h.exitStatuses[ssh], 1)
        XCTAssertEqual(h.machine.tallies.vmDisconnects, [.forgotten: 1])
        XCTAssertEqual(h.machine.tallies.clientsDropped, [.forgotten: 2])
    }

    /// Every documented reason of `vspc_vm_disconnects_total` comes from a path of its own.
    func testEveryDisconnectReasonIsCounted() throws {
        var config = ConcentratorConfig.forTests
        config.proxyAllow = try AddressAllowList.parse("10.0.0.0/8").get()
        let h = ConcentratorHarness(config: config)
        // closed
        h.send(.vmClosed(h.bringUpVM(UUIDs.a)))
        // error
        h.send(.vmClosed(h.bringUpVM(UUIDs.a), error: true))
        // timeout: negotiates, never identifies
        h.negotiate(h.connectVM())
        h.advance(by: config.identifyTimeout + 1)
        // stuck
        let stuck = h.bringUpVM(UUIDs.a)
        h.send(.writabilityChanged(stuck, writable: false))
        h.advance(by: config.vmStuckTimeout + 1)
        // replaced: a newcomer takes over a console whose connection stays silent
        h.bringUpVM(UUIDs.b, name: "db01")
        h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.9:1")
        h.advance(by: config.takeoverProbeTimeout + 1)
        // refused: not on the allow-list
        h.connectVM(peer: "192.0.2.1:1")
        // migrated: the source of a completed vMotion
        let m = BegunMigration()
        m.h.vm(m.h.connectDestination(cookie: m.cookie), says: ESXi.complete(m.sequence))
        m.h.send(.vmClosed(m.source))
        XCTAssertEqual(m.h.machine.tallies.vmDisconnects, [.migrated: 1])
        // Issue 15 item 7: both connections were accepted on the proxy port, the destination's included.
        XCTAssertEqual(m.h.machine.tallies.vmConnections, 2)
        XCTAssertEqual(m.h.records.filter { $0.kind == .vmDisconnect }, [], "a migration is not the VM going down")
        // forgotten
        h.bringUpVM(UUIDs.a)
        _ = h.admin(AdminRequest(command: "forget", vm: "web01", force: true))
        // shutdown
        h.bringUpVM(UUIDs.c, name: "app01")
        h.send(.shutdown)
        let counted = h.machine.tallies.vmDisconnects
        for reason in [DisconnectReason.closed, .error, .timeout, .stuck, .replaced, .refused, .forgotten, .shutdown] {
            XCTAssertGreaterThan(counted[reason, default: 0], 0, "\(reason)")
        }
        XCTAssertEqual(h.records.filter { $0.reason == .disconnect(.replaced) }.count, 1)
        XCTAssertEqual(h.records.filter { $0.reason == .disconnect(.stuck) }.map(\.detail), ["stopped reading"])
    }

    /// Every documented reason of `vspc_clients_dropped_total` comes from a path of its own.
    func testEveryDropReasonIsCounted() {
        var config = ConcentratorConfig.forTests
        config.descriptorLimit = 20
        config.descriptorReserve = 8
        let h = ConcentratorHarness(config: config, baseline: 8)
        h.bringUpVM()
        // slow
        h.send(.writabilityChanged(h.connectClient(keyA), writable: false))
        // fd_limit
        let people = (0..<9).map { h.connectClient(keyA, peer: "192.0.2.\($0):1") }
        XCTAssertEqual(h.closed[people[8]], false)
        for id in people.prefix(8) { h.send(.clientClosed(id)) }
        // expired: a connection accepted by a listener that is no longer the console's
        let stale = ListenerRef(console: keyA, generation: 999)
        h.send(.clientConnected(h.newConnection(.client), listener: stale, peer: "192.0.2.50:1"))
        // idle, unresponsive: the SSH server ended the session
        h.send(.clientEnded(start(h, .ssh, "web01"), reason: .idle))
        h.send(.clientEnded(start(h, .ssh, "web01"), reason: .unresponsive))
        // revoked: a reload that removes the session's key
        _ = start(h, .ssh, "web01")
        h.send(.keysReloaded(.empty, timeZone: TimeZone(identifier: "UTC")!))
        // forgotten
        h.connectClient(keyA)
        _ = h.admin(AdminRequest(command: "forget", vm: "web01", force: true))
        // shutdown
        h.bringUpVM(UUIDs.b, name: "db01")
        h.connectClient(ConsoleKey(uuid: UUIDs.b, label: ""))
        h.send(.shutdown)
        let counted = h.machine.tallies.clientsDropped
        for reason in DropReason.allCases {
            XCTAssertGreaterThan(counted[reason, default: 0], 0, "\(reason)")
        }
    }

    /// A new VM whose first port is taken by another process is recorded with the port it got.
    func testVMConnectNamesThePortAssigned() {
        let h = ConcentratorHarness()
        h.bindReply = { _, port in port == 20000 ? .addressInUse : .bound }
        h.bringUpVM()
        XCTAssertEqual(h.records.filter { $0.kind == .vmConnect }.map(\.detail), ["port 20001"])
        XCTAssertEqual(h.list().map(\.port), [20001])
    }

    func testStatusCountsPeopleByDoor() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        h.connectClient(keyA)
        _ = start(h, .ssh, "web01")
        _ = start(h, .ssh, "web01", as: "bob")
        _ = h.admin(AdminRequest(command: "tail", vm: "web01", follow: true))
        let status = h.machine.daemonStatus()
        XCTAssertEqual(status.clientsByDoor, ["telnet": 1, "ssh": 2, "tail": 1, "web": 0])
        XCTAssertEqual([status.telnetClients, status.sshClients, status.tailFollowers], [1, 2, 1])
    }
}

/// Issue 14: what a key holder does is on record, and a reload reaches sessions already open.
final class ConcentratorKeyHolderTests: XCTestCase {
    private let keyA = ConsoleKey(uuid: UUIDs.a, label: "")
    private let fingerprint = "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

    private func key(_ comment: String, vms: [String]? = nil, readOnly: Bool = false) -> AuthorizedKey {
        AuthorizedKey(keyType: "ssh-ed25519", blob: Array(comment.utf8), comment: comment, vms: vms, readOnly: readOnly)
    }

    private func ssh(_ h: ConcentratorHarness, _ user: String, _ key: AuthorizedKey, fingerprint: String? = nil) -> ConnectionID {
        let id = h.newConnection(.client)
        h.send(.sshSessionStarted(id, user: user, key: key, fingerprint: fingerprint ?? self.fingerprint, peer: "198.51.100.7:5000"))
        return id
    }

    func testBreakAndListAreRecordedWithTheKey() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        let id = ssh(h, "web01", key("alice"))
        h.take()
        h.client(id, types: [0x1D, UInt8(ascii: "b")])
        XCTAssertEqual(h.records.map(\.kind), [.clientBreak])
        XCTAssertEqual(h.records.first?.detail, "door=ssh mode=read-write key=alice \(fingerprint)")
        h.take()
        _ = ssh(h, "list", key("alice"))
        XCTAssertEqual(h.records.map(\.kind), [.clientList])
        XCTAssertEqual(h.records.first?.detail, "door=ssh key=alice \(fingerprint) consoles=1")
    }

    func testAReloadEndsRemovedKeysAndDowngradesOpenSessions() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        let alice = ssh(h, "web01", key("alice"), fingerprint: "SHA256:alice")
        let bob = ssh(h, "web01", key("bob"), fingerprint: "SHA256:bob")
        let carol = ssh(h, "web01", key("carol"), fingerprint: "SHA256:carol")
        h.client(bob, types: [0x1D, UInt8(ascii: "f")]) // bob holds exclusive write
        for id in [alice, bob, carol] { _ = h.takeOutput(id) }
        h.take()
        h.send(.keysReloaded(AuthorizedKeys(keys: [key("bob", readOnly: true), key("carol", vms: ["db-*"])]),
                             timeZone: TimeZone(identifier: "UTC")!))
        XCTAssertEqual(h.exitStatuses[alice], 1)
        XCTAssertTrue(String(decoding: h.takeOutput(alice), as: UTF8.self).contains("[vspcd: your key was removed: this session ends]"))
        XCTAssertEqual(h.exitStatuses[carol], 1)
        XCTAssertTrue(String(decoding: h.takeOutput(carol), as: UTF8.self).contains("no longer reaches this console"))
        XCTAssertNil(h.exitStatuses[bob], "a read-only key keeps its session")
        XCTAssertTrue(String(decoding: h.takeOutput(bob), as: UTF8.self).contains("[vspcd: your key is now read-only"))
        XCTAssertEqual(h.records.filter { $0.kind == .clientDropped }.map(\.reason), [.drop(.revoked), .drop(.revoked)])
        XCTAssertEqual(h.records.filter { $0.kind == .clientAccessChanged }.map(\.detail),
                       ["read-write -> read-only by a reload; door=ssh mode=read-only key=bob SHA256:bob"])
        XCTAssertEqual(h.records.filter { $0.kind == .exclusiveReleased }.count, 1)
        // What bob types no longer reaches the VM.
        h.take()
        h.client(bob, types: Array("x".utf8))
        XCTAssertEqual(h.take().filter { if case .send(let id, _) = $0 { return id != bob }; return false }, [])
    }

    /// A session opened after a reload on a connection authenticated before it (OpenSSH multiplexing) gets the
    /// key's rights now: none for a removed key (and its connection closes), read-only for a downgraded one.
    func testSessionsOpenedAfterAReloadGetTheRightsInForce() {
        let h = ConcentratorHarness()
        h.bringUpVM()
        h.send(.keysReloaded(AuthorizedKeys(keys: [key("bob", readOnly: true)]), timeZone: TimeZone(identifier: "UTC")!))
        h.take()
        let alice = ssh(h, "web01", key("alice"), fingerprint: "SHA256:alice")
        XCTAssertEqual(h.exitStatuses[alice], 1)
        XCTAssertTrue(h.take().contains(.closeTransport(alice)))
        XCTAssertEqual(String(decoding: h.takeOutput(alice), as: UTF8.self), "vspcd: this key was revoked\r\n")
        let bob = ssh(h, "web01", key("bob"), fingerprint: "SHA256:bob")
        XCTAssertEqual(h.records.map(\.detail), ["door=ssh mode=read-only key=bob SHA256:bob"])
        XCTAssertNil(h.exitStatuses[bob])
    }

    /// Item 9: a refusal keeps the user name in a field of its own, quoted and escaped in the detail (no forged
    /// `key=` field, no new line); it is kept under the VM the name matched; and refusals are bounded per
    /// connection and per key, with a summary.
    func testRefusalsAreTypedUnforgeableFiledUnderTheVMAndBounded() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.a, name: "web-9")
        h.take()
        let limited = key("mallory", vms: ["db-*"])
        let forged = "web-9 key=alice@ops SHA256:forged\nvm-connect"
        _ = ssh(h, forged, limited, fingerprint: "SHA256:mallory")
        _ = ssh(h, "web-9", limited, fingerprint: "SHA256:mallory")
        let refusals = h.records.filter { $0.kind == .clientRefused }
        XCTAssertEqual(refusals.map(\.user), [forged, "web-9"])
        XCTAssertEqual(refusals.map(\.keyComment), ["mallory", "mallory"])
        XCTAssertEqual(refusals.map(\.fingerprint), ["SHA256:mallory", "SHA256:mallory"])
        XCTAssertEqual(refusals.first?.detail, #"door=ssh user="web-9 key=alice@ops SHA256:forged\x0avm-connect" key=mallory SHA256:mallory"#)
        XCTAssertNil(refusals.first?.uuid, "a name that matches no VM")
        XCTAssertEqual(refusals.last?.uuid, UUIDs.a, "kept under the VM the name matched")
        // 100 more from the same connection: 10 a minute are recorded, the rest counted.
        h.take()
        for _ in 0..<100 { _ = ssh(h, "web-9", limited, fingerprint: "SHA256:mallory") }
        XCTAssertEqual(h.records.filter { $0.kind == .clientRefused }.count, 8, "10 a minute, 2 spent above")
        h.take()
        h.advance(by: 61)
        _ = ssh(h, "web-9", limited, fingerprint: "SHA256:mallory")
        XCTAssertEqual(h.records.map(\.kind), [.eventsSuppressed, .clientRefused])
        XCTAssertEqual(h.records.first?.detail, "… 92 more refusals suppressed (this connection)")
    }

    /// A key listed on two lines with `from=`: after a reload, a session opened on a connection authenticated
    /// before gets the line that lets its own address in, not the first line of the key.
    func testAfterAReloadTheLineForTheClientsAddressDecides() throws {
        let h = ConcentratorHarness()
        h.bringUpVM()
        var wide = key("dave")
        wide.from = try AddressPatternList.parse("192.0.2.0/24").get()
        var narrow = key("dave", readOnly: true)
        narrow.from = try AddressPatternList.parse("198.51.100.0/24").get()
        h.send(.keysReloaded(AuthorizedKeys(keys: [wide, narrow]), timeZone: TimeZone(identifier: "UTC")!))
        h.take()
        _ = ssh(h, "web01", key("dave"), fingerprint: "SHA256:dave") // from 198.51.100.7
        XCTAssertEqual(h.records.map(\.detail), ["door=ssh mode=read-only key=dave SHA256:dave"])
    }

    func testTypingIntoAVMThatDoesNotReadIsLoggedWithinTheBudget() {
        let h = ConcentratorHarness()
        let vm = h.bringUpVM()
        let person = h.connectClient(keyA)
        h.send(.writabilityChanged(vm, writable: false))
        h.take()
        for _ in 0..<100 { h.client(person, types: Array("x".utf8)) }
        let warnings = h.take().logs.filter { $0.message.contains("is not reading") }
        XCTAssertLessThanOrEqual(warnings.count, h.config.eventsPerConnectionPerMinute)
        XCTAssertGreaterThan(warnings.count, 0)
    }
}

/// Issue 13, item 6: a name that several consoles carry (a VM rebuilt under the same name) on the SSH door.
final class ConcentratorRebuiltVMTests: XCTestCase {
    private let fingerprint = "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

    private func ssh(_ h: ConcentratorHarness, _ user: String) -> ConnectionID {
        let id = h.newConnection(.client)
        let key = AuthorizedKey(keyType: "ssh-ed25519", blob: [1], comment: "alice")
        h.send(.sshSessionStarted(id, user: user, key: key, fingerprint: fingerprint, peer: "198.51.100.7:5000"))
        return id
    }

    func testTheConnectedOneIsPickedElseTheCandidatesAreListed() {
        let h = ConcentratorHarness()
        let old = h.bringUpVM(UUIDs.a, name: "web-0")
        h.send(.vmClosed(old))
        let rebuilt = h.bringUpVM(UUIDs.b, name: "web-0", peer: "10.0.0.2:900")
        h.take()
        let attached = ssh(h, "web-0")
        XCTAssertNil(h.exitStatuses[attached])
        XCTAssertEqual(h.records.first?.kind, .clientAttach)
        XCTAssertEqual(h.records.first?.uuid, UUIDs.b, "the connected one")
        h.send(.vmClosed(rebuilt))
        h.take()
        let refused = ssh(h, "web-0")
        XCTAssertEqual(h.exitStatuses[refused], 1)
        let text = String(decoding: h.takeOutput(refused), as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("vspcd: \"web-0\" is ambiguous; it names several consoles:\r\n  web-0  "), text)
        XCTAssertTrue(text.contains(UUIDSpelling.classic(UUIDs.a)) && text.contains(UUIDSpelling.classic(UUIDs.b)), text)
        XCTAssertEqual(text.components(separatedBy: "\r\n").filter { $0.hasPrefix("  web-0  ") }.count, 2)
    }
}
