import Foundation
import VSPCCore
import VSPCSim
import XCTest

/// The base of the tests of several daemons sharing PostgreSQL: each daemon (node n1, n2, n3) on its own loopback
/// address (127.0.0.2, 127.0.0.3, 127.0.0.4) for its proxy, admin, per-VM ports and internal link, all with one port
/// range and one database (a fresh one per test). A load balancer is the simulator connecting to a chosen address.
class ClusterTestCase: DaemonTestCase {
    /// The test's database (dropped in tearDown), and the private server when the test has one.
    var database: PostgresDatabase?
    var privateServer: PrivatePostgres?
    var connections: [SimConnection] = []
    /// Seconds a node's lease lasts without a heartbeat: short, so that a killed node is declared dead soon.
    static let leaseTimeout = 3

    override func setUp() async throws {
        try await super.setUp()
        signal(SIGPIPE, SIG_IGN)
    }

    override func tearDown() async throws {
        connections.forEach { $0.close() }
        connections = []
        try await super.tearDown()
        database?.drop()
        database = nil
        privateServer?.cleanup()
        privateServer = nil
    }

    /// A fresh database on the shared test server (skips without one).
    func makeDatabase() throws -> PostgresDatabase {
        let db = try PostgresDatabase.fresh(name)
        database = db
        return db
    }

    /// A private PostgreSQL server, started, with a fresh database on it (skips without PostgreSQL's programs).
    func makePrivateDatabase() throws -> PostgresDatabase {
        let server = try PrivatePostgres(name)
        privateServer = server
        try server.start()
        let db = try PostgresDatabase(serverURL: server.url)
        database = db
        return db
    }

    static func address(ofNode index: Int) -> String { "127.0.0.\(index + 2)" }

    /// `count` daemons n1, n2 ... on one database (a fresh one unless `database` is given) and one port range, not
    /// started. `extra` is given to every daemon.
    func makeNodes(_ count: Int, portRangeSize: Int = 200, database: PostgresDatabase? = nil,
                   _ extra: [String] = []) throws -> [Daemon] {
        let db = try database ?? self.database ?? makeDatabase()
        var nodes: [Daemon] = []
        for i in 0..<count {
            let daemon = try makeDaemon(portRangeSize: portRangeSize)
            if let first = nodes.first { daemon.portRange = first.portRange }
            let host = Self.address(ofNode: i)
            daemon.host = host
            daemon.database = db.url
            daemon.extraArguments = ["--node", "n\(i + 1)", "--listen-host", host,
                                     "--cluster-listen", "\(host):\(try freePort())",
                                     "--lease-timeout", "\(Self.leaseTimeout)",
                                     // The tests' VMs all come from one address.
                                     "--new-ports-per-minute", "100000", "--proxy-max-unidentified-per-address", "10000"]
                + extra
            nodes.append(daemon)
        }
        return nodes
    }

    /// `count` daemons, started one after the other (each answers on its admin endpoint).
    func startNodes(_ count: Int, portRangeSize: Int = 200, database: PostgresDatabase? = nil,
                    _ extra: [String] = []) async throws -> [Daemon] {
        let nodes = try makeNodes(count, portRangeSize: portRangeSize, database: database, extra)
        for node in nodes { try await node.start(timeout: 60) }
        return nodes
    }

    // MARK: - VMs and people

    /// A fresh VM (DO-PROXY) on `node`'s proxy, identified.
    func connectVM(_ node: Daemon, _ uuid: String, _ name: String) async throws -> SimulatedVM {
        let vm = try await SimulatedVM.connect(host: node.host, port: node.proxyPort, uuid: uuid, name: name)
        connections.append(vm)
        try await vm.wait("\(name)'s name request") { vm.closed || vm.messages.contains { $0.first == VMwareCommand.getVMName } }
        return vm
    }

    /// A person's telnet client on `port` at `node`'s address.
    func telnet(_ node: Daemon, _ port: Int) async throws -> SimulatedClient {
        let client = try await SimulatedClient.connect(host: node.host, port: port)
        connections.append(client)
        return client
    }

    /// The VM's port, once `node` lists it with its port listening (its assignment is committed: every node knows
    /// it then, and binds its port).
    func port(_ node: Daemon, _ uuid: String) async throws -> Int {
        let vms = try await node.waitForList("\(uuid) listening on \(node.host)", timeout: 60) {
            $0.contains { $0.uuid == uuid && $0.saved != false && $0.listening }
        }
        return vms.first { $0.uuid == uuid }!.port
    }

    // MARK: - vspc against a node

    /// `vspc ARGS --admin NODE`, which must succeed; its stdout.
    @discardableResult
    func vspc(_ node: Daemon, _ arguments: [String]) throws -> String {
        let result = try Daemon.runTool("vspc", arguments + ["--admin", "\(node.host):\(node.adminPort)"])
        guard result.status == 0 else { throw SimError("vspc \(arguments) on \(node.host) failed: \(result.err)") }
        return result.text
    }

    /// `vspc list --json` on `node`: one object per console (name, uuid, port, connected, owner ...).
    func listJSON(_ node: Daemon) throws -> [[String: Any]] {
        let text = try vspc(node, ["list", "--json"])
        guard let array = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]] else {
            throw SimError("vspc list --json is not an array: \(text)")
        }
        return array
    }

    /// uuid -> port, as `vspc list --json` on `node` shows them.
    func listedPorts(_ node: Daemon) throws -> [String: Int] {
        var ports: [String: Int] = [:]
        for entry in try listJSON(node) {
            if let uuid = entry["uuid"] as? String, let port = entry["port"] as? Int { ports[uuid] = port }
        }
        return ports
    }

    /// The owner node `vspc list --json` on `node` shows for the VM (nil: none shown).
    func listedOwner(_ node: Daemon, _ uuid: String) throws -> String? {
        try listJSON(node).first { $0["uuid"] as? String == uuid }?["owner"] as? String
    }

    /// `vspc status --json` on `node`: its `nodes` (name -> alive).
    func nodesAlive(_ node: Daemon) throws -> [String: Bool] {
        let text = try vspc(node, ["status", "--json"])
        guard let status = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw SimError("vspc status --json is not an object: \(text)")
        }
        var alive: [String: Bool] = [:]
        for entry in status["nodes"] as? [[String: Any]] ?? [] {
            if let name = entry["name"] as? String { alive[name] = entry["alive"] as? Bool ?? false }
        }
        return alive
    }

    /// `vspc history VM --json --db URL`: the VM's events as the database has them (read offline), each a JSON
    /// object; in the order printed (oldest first). With `node`: `vspc history VM --json --admin NODE` instead, the
    /// shared events as that daemon reads them.
    func history(_ vm: String, db: PostgresDatabase, via node: Daemon? = nil) throws -> [[String: Any]] {
        let arguments = ["history", vm, "--json"] + (node.map { ["--admin", "\($0.host):\($0.adminPort)"] } ?? ["--db", db.url])
        var result = try Daemon.runTool("vspc", arguments)
        for _ in 0..<2 where result.status != 0 {
            // Once more: a failed run is reported below if the next ones fail too.
            print("vspc \(arguments) failed (\(result.status)), again: \(result.err.prefix(300))")
            result = try Daemon.runTool("vspc", arguments)
        }
        guard result.status == 0 else { throw SimError("vspc \(arguments) failed: \(result.err)") }
        guard let array = try JSONSerialization.jsonObject(with: result.out) as? [[String: Any]] else {
            throw SimError("vspc history --json is not an array: \(result.text)")
        }
        return array
    }

    /// Polls the VM's history in the database until `condition` holds.
    @discardableResult
    func waitForHistory(_ vm: String, db: PostgresDatabase, _ what: String, timeout: Double = 60,
                        _ condition: ([[String: Any]]) -> Bool) async throws -> [[String: Any]] {
        let deadline = Date().addingTimeInterval(timeout)
        var events: [[String: Any]] = []
        while true {
            events = (try? history(vm, db: db)) ?? events
            if condition(events) { return events }
            if Date() > deadline {
                throw SimError("timed out waiting for \(what); events: \(events.map { "\($0["kind"] ?? "?")[\($0["detail"] ?? "")]" })")
            }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
    }

    /// The VM's owner node in the database's ownership table (nil: no row).
    func ownerInDatabase(_ uuid: String, db: PostgresDatabase) throws -> String? {
        try db.sql("SELECT node FROM ownership WHERE uuid = '\(uuid)' AND label = ''").first
    }

    // MARK: - console output seen by people

    /// Has `print` write numbered sync lines until every person has seen one (a person on a daemon that does not own
    /// the console sees the output once its feed is open); returns what was printed, the byte stream the people
    /// see a suffix of.
    func synchronize(_ people: [SimulatedClient], timeout: Double = 60, _ print: ([UInt8]) -> Void) async throws -> [UInt8] {
        var printed: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var n = 0
        while !people.allSatisfy({ containsBytes($0.data, Array("sync ".utf8)) }) {
            if Date() > deadline { throw SimError("the people did not see the console's output within \(timeout) s") }
            n += 1
            let line = Array("sync \(n)\r\n".utf8)
            print(line)
            printed += line
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        return printed
    }

    /// Waits until each person has seen everything printed after the sync lines of `expected`, and checks that what
    /// each saw is a suffix of `expected`: every byte once, in order, nothing else.
    func expectOutput(_ people: [SimulatedClient], _ expected: [UInt8], _ what: String, timeout: Double = 60) async throws {
        let mustSee = expected.count - syncEnd(expected)
        let tail = Array(expected.suffix(min(16, mustSee)))
        for (i, person) in people.enumerated() {
            do {
                try await waitUntil("person \(i + 1) to see \(what)", timeout: timeout) {
                    let seen = person.data
                    return seen.count >= expected.count || (seen.count >= mustSee && Array(seen.suffix(tail.count)) == tail)
                }
            } catch {
                throw SimError("\(error): \(Self.compare(person.data, expected))")
            }
            let seen = person.data
            XCTAssertLessThanOrEqual(seen.count, expected.count, "person \(i + 1) saw more than was printed (\(what))")
            XCTAssertEqual(seen, Array(expected.suffix(seen.count)), "person \(i + 1): \(what), byte for byte, once")
            XCTAssertGreaterThanOrEqual(seen.count, mustSee, "person \(i + 1) missed bytes (\(what))")
        }
    }

    /// What differs between what a person saw and the stream it should be a suffix of, in a few words.
    static func compare(_ seen: [UInt8], _ expected: [UInt8]) -> String {
        let aligned = Array(expected.suffix(seen.count))
        let firstDifference = zip(seen, aligned).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        let end = String(decoding: seen.suffix(80), as: UTF8.self).debugDescription
        return "saw \(seen.count) of \(expected.count) bytes; "
            + (seen.count > expected.count ? "more than printed; "
               : firstDifference.map { "differs from the printed stream's suffix at \($0); " } ?? "a suffix of the printed stream; ")
            + "its end: \(end)"
    }

    /// Where the sync lines at the start of `expected` end.
    func syncEnd(_ expected: [UInt8]) -> Int {
        var end = 0
        while expected.count - end > 5, Array(expected[end..<(end + 5)]) == Array("sync ".utf8),
              let lineEnd = expected[end...].firstIndex(of: 0x0A) {
            end = lineEnd + 1
        }
        return end
    }
}

/// A JSON object of an event as one comparable line (its keys sorted).
func eventLine(_ event: [String: Any]) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])) ?? Data()
    return String(decoding: data, as: UTF8.self)
}

/// True if `haystack` holds `needle` somewhere.
func containsBytes(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, needle.count <= haystack.count else { return needle.isEmpty }
    for i in 0...(haystack.count - needle.count) where haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
    return false
}
