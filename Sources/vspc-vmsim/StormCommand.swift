import ArgumentParser
import Foundation
import VSPCClient
import VSPCCore
import VSPCSim

/// `--hosts a:port,b:port`: the proxy addresses of one or more daemons.
struct Hosts: ParsableArguments {
    @Option(help: ArgumentHelp("vspcd proxy addresses, comma-separated; VM i connects to host i mod n and each vMotion goes to the next host.", valueName: "host:port[,host:port...]"))
    var hosts = "127.0.0.1:6779"

    var addresses: [ProxyAddress] { hosts.split(separator: ",").compactMap { ProxyAddress(String($0)) } }

    func validate() throws {
        let parts = hosts.split(separator: ",")
        guard !parts.isEmpty, parts.allSatisfy({ ProxyAddress(String($0)) != nil }) else {
            throw ValidationError("--hosts must be host:port[,host:port...]")
        }
    }
}

func percentileText(_ values: [Double], _ p: Double) -> String {
    StormStats.quantile(values, p).map { String(format: "%.1f", $0 * 1000) } ?? "-"
}

struct Storm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect VMs over one or more daemons and migrate them between the daemons at a given rate.",
        discussion: """
            VM i connects to host i mod n of --hosts; each vMotion goes to the next host (with one host, to the \
            same daemon). Every VM prints a numbered line before each vMotion and one inside its window. Prints the \
            connect rate, the vMotion rate, and the duration of a vMotion as the VM sees it (BEGIN to COMPLETE: the \
            window) across daemons and on one daemon, median and p99; the last line is `result key=value ...`.
            """)

    @OptionGroup var hosts: Hosts
    @Option(help: "Number of VMs.") var count = 100
    @Option(help: "vMotions per second, in all.") var rate: Double = 200
    @Option(help: "Seconds to migrate for.") var seconds: Double = 30
    @Option(help: "VMs connecting at once.") var concurrency = 32
    @Option(help: "Name prefix (the uuids derive from it).") var name = "storm"

    func validate() throws {
        guard count >= 1, rate > 0, seconds >= 0, concurrency >= 1 else {
            throw ValidationError("--count, --rate and --concurrency must be positive, --seconds not negative")
        }
    }

    func run() async throws {
        let storm = VMotionStorm(hosts: hosts.addresses, count: count, name: "\(name)-\(UInt32.random(in: 0...UInt32.max))")
        let connectSeconds = try await storm.connectAll(concurrency: concurrency)
        let connectRate = Double(count) / max(connectSeconds, 0.000_001)
        print(String(format: "connect: %d VMs over %d daemon(s) in %.2f s (%.0f VMs/s)", count, hosts.addresses.count,
                     connectSeconds, connectRate))
        let stop = StopFlag()
        stop.install()
        let stats = await storm.run(seconds: seconds, rate: rate) { stop.isSet }
        print(VMotionStorm.describe(stats))
        for failure in stats.failures { print("failed: \(failure)") }
        storm.closeAll()
        print(String(format: "result daemons=%d vms=%d connect_rate=%.1f migrations=%d failed=%d notnow=%d migration_rate=%.1f",
                     hosts.addresses.count, count, connectRate, stats.migrations, stats.failed, stats.notNow, stats.rate)
              + " cross_median_ms=\(percentileText(stats.crossNode, 0.5)) cross_p99_ms=\(percentileText(stats.crossNode, 0.99))"
              + " local_median_ms=\(percentileText(stats.local, 0.5)) local_p99_ms=\(percentileText(stats.local, 0.99))")
    }
}

struct Failover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure failover: VMs on the first host, a person on the second; kill -9 the first daemon; time until each console is reachable again on the second.",
        discussion: """
            Connects --count VMs to the first address of --hosts, finds their ports with the second daemon's admin \
            endpoint, attaches a person (telnet) to each port on the second daemon's address, sends SIGKILL to \
            --kill-pid, and reconnects each VM to the second address as ESXi reconnects through a load balancer. A \
            console counts as reachable again when the person there sees a line the VM printed after the kill. \
            Prints median and maximum; the last line is `result key=value ...`.
            """)

    @OptionGroup var hosts: Hosts
    @Option(help: "The survivor's admin endpoint, to find the ports.") var admin = "127.0.0.1:6780"
    @Option(help: "The pid of the daemon at the first address, killed with SIGKILL.") var killPid: Int32
    @Option(help: "Number of VMs.") var count = 20
    @Option(help: "Seconds to wait for every console.") var timeout: Double = 60

    func run() async throws {
        let addresses = hosts.addresses
        guard addresses.count >= 2 else { throw ValidationError("--hosts needs the victim and the survivor") }
        guard let endpoint = AdminEndpoint.parse(admin, defaultHost: "127.0.0.1") else {
            throw ValidationError("--admin must be [host]:port or unix:PATH")
        }
        let storm = VMotionStorm(hosts: [addresses[0]], count: count, name: "failover-\(UInt32.random(in: 0...UInt32.max))")
        try await storm.connectAll()
        // The survivor knows every port (shared assignments) before the kill.
        var ports: [String: Int] = [:]
        let deadline = Date().addingTimeInterval(timeout)
        while ports.count < count {
            let listed = try await AdminClient.request(endpoint, AdminRequest(command: "list")).vms ?? []
            ports = Dictionary(listed.map { ($0.uuid, $0.port) }, uniquingKeysWith: { a, _ in a })
                .filter { uuid, _ in storm.vms.contains { $0.uuid == uuid } }
            if Date() > deadline { throw SimError("the survivor lists \(ports.count) of \(count) VMs") }
            if ports.count < count { try await Task.sleep(nanoseconds: 50_000_000) }
        }
        let survivor = addresses[1]
        var people: [String: SimulatedClient] = [:]
        for vm in storm.vms {
            people[vm.uuid] = try await SimulatedClient.connect(host: survivor.host, port: ports[vm.uuid]!)
        }
        let killedAt = Date()
        guard kill(killPid, SIGKILL) == 0 else { throw SimError("kill -9 \(killPid): errno \(errno)") }
        let timeout = self.timeout
        let times = try await withThrowingTaskGroup(of: Double.self) { group in
            for vm in storm.vms {
                let port = ports[vm.uuid]!
                let person = people[vm.uuid]!
                group.addTask {
                    try await Self.recover(vm, storm: storm, survivor: survivor, port: port, person: person,
                                           since: killedAt, timeout: timeout)
                }
            }
            var all: [Double] = []
            for try await t in group { all.append(t) }
            return all
        }
        storm.closeAll()
        people.values.forEach { $0.close() }
        let median = StormStats.quantile(times, 0.5) ?? 0, worst = times.max() ?? 0
        print("failover: \(times.count) consoles reachable again on \(survivor) after kill -9: "
              + String(format: "median %.2f s, max %.2f s", median, worst))
        print(String(format: "result failover_median_s=%.3f failover_max_s=%.3f", median, worst))
    }

    /// Reconnects the VM to the survivor (retrying, as ESXi does) and prints until the person there sees it.
    static func recover(_ vm: StormVM, storm: VMotionStorm, survivor: ProxyAddress, port: Int, person: SimulatedClient,
                        since: Date, timeout: Double) async throws -> Double {
        let deadline = since.addingTimeInterval(timeout)
        var watcher = person
        try await watcher.wait("\(vm.name)'s connection to close", timeout: timeout) { vm.connection?.closed ?? true }
        let reconnect = VMotionStorm(hosts: [survivor], count: 0, name: "unused")
        while true {
            if (try? await reconnect.connect(vm, to: 0)) != nil { break }
            if Date() > deadline { throw SimError("\(vm.name) could not reconnect to \(survivor)") }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        let marker = Array(" is back\r\n".utf8)
        while true {
            if watcher.closed {
                watcher = (try? await SimulatedClient.connect(host: survivor.host, port: port)) ?? watcher
            }
            vm.printNext("is back")
            try await Task.sleep(nanoseconds: 20_000_000)
            if contains(watcher.data, marker) { return Date().timeIntervalSince(since) }
            if Date() > deadline { throw SimError("\(vm.name)'s console did not come back on \(survivor.host):\(port)") }
        }
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        for i in 0...(haystack.count - needle.count) where haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
        return false
    }
}
