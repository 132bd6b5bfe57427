import ArgumentParser
import Foundation
import NIOPosix
import VSPCClient
import VSPCCore
import VSPCSim

/// Simulates ESXi VMs with network serial ports, for demos, load and the benchmark.
@main
struct VMSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vspc-vmsim",
        abstract: "Simulate VMs connecting to vspcd's proxy port like ESXi does.",
        subcommands: [Run.self, Bench.self, Storm.self, Failover.self],
        defaultSubcommand: Run.self)
}

struct Common: ParsableArguments {
    @Option(help: "vspcd's proxy host.") var host = "127.0.0.1"
    @Option(help: "vspcd's proxy port.") var port = 6779
    @Flag(help: "Use TLS (telnets://).") var tls = false
    @Option(help: "Service URI sent in DO-PROXY.") var serviceUri = "vSPC.py"
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect VMs like ESXi does and keep them connected.",
        discussion: """
            The VMs are NAME-0, NAME-1, ... Their uuids come from the name prefix (or --uuid-seed) and the index, \
            so the same command gives the same VMs on every run and two prefixes never collide.

            Each VM prints `NAME: tick N` every second; bytes typed on its console port are answered with \
            `NAME: you typed N bytes`. With --boot-log a VM instead prints a Linux boot log once and then a \
            login prompt (`NAME login: `) that echoes what is typed, asks for a password and refuses every login.

            One line is printed when a VM connects, is refused, is closed by vspcd or reconnects. Like ESXi, a VM \
            whose connection vspcd closes, refuses or cannot be reached retries after 1 s, then 2, 4, ... up to \
            30 s. Ctrl-C (or SIGTERM) closes the VMs and prints a summary.
            """)

    @OptionGroup var common: Common
    @Option(help: "Number of VMs.") var count = 1
    @Option(help: "Name prefix: the VMs are NAME-0, NAME-1, ...") var name = "sim-vm"
    @Option(help: "Derive the uuids from this instead of the name prefix (e.g. to keep them across a rename).")
    var uuidSeed: String?
    @Flag(help: "Print a Linux boot log and a login prompt instead of ticks.") var bootLog = false
    @Option(help: "Seconds to run (0 = until interrupted).") var seconds: Double = 0
    @Option(help: "Migrate every VM every N seconds (0 = never).") var vmotionEvery: Double = 0

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard seconds >= 0, vmotionEvery >= 0 else { throw ValidationError("--seconds and --vmotion-every must not be negative") }
    }

    func run() async throws {
        let key = uuidSeed ?? name
        let fleet = Fleet(names: (0..<count).map { ("\(name)-\($0)", SimFleet.uuid(key: key, index: $0)) },
                          host: common.host, port: common.port, tls: common.tls,
                          serviceURI: common.serviceUri, bootLog: bootLog)
        let stop = StopFlag()
        stop.install()
        await fleet.connectDue()
        while !fleet.settled && !stop.isSet {
            try await Task.sleep(nanoseconds: 50_000_000)
            fleet.reapClosed()
            fleet.announceSettled()
        }
        if fleet.connectedCount == count {
            fleet.say("\(count) VMs connected; Ctrl-C to stop")
        } else {
            fleet.say("\(fleet.summary); retrying the others; Ctrl-C to stop")
        }
        let start = Date()
        var lastTick = Date()
        var tick = 0
        var lastMigration = Date()
        while !stop.isSet && (seconds == 0 || Date().timeIntervalSince(start) < seconds) {
            fleet.reapClosed()
            await fleet.connectDue()
            fleet.announceSettled()
            fleet.answerTyping()
            fleet.drainBootLogs()
            if !bootLog, Date().timeIntervalSince(lastTick) >= 1 {
                lastTick = Date()
                tick += 1
                fleet.tick(tick)
            }
            if vmotionEvery > 0, Date().timeIntervalSince(lastMigration) >= vmotionEvery {
                await fleet.migrateAll()
                lastMigration = Date()
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        fleet.closeAll()
        fleet.say("summary: \(fleet.summary)")
    }
}

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure: VMs identified per second, vMotions per second, console throughput.")

    @OptionGroup var common: Common
    @Option(help: "Number of VMs.") var count = 500
    @Option(help: "Rounds of migrating every VM.") var rounds = 3
    @Option(help: "Bytes pushed through one console for the throughput figure.") var bytes = 16 << 20
    @Option(help: "Admin endpoint, to find the VMs' ports.") var admin = "127.0.0.1:6780"

    func run() async throws {
        let seed = UInt32.random(in: 0...UInt32.max)
        var start = Date()
        var vms: [SimulatedVM] = []
        try await withThrowingTaskGroup(of: SimulatedVM.self) { group in
            for i in 0..<count {
                group.addTask {
                    try await SimulatedVM.connect(host: common.host, port: common.port, uuid: SimFleet.uuid(key: "bench-\(seed)", index: i),
                                                  name: "bench-\(seed)-\(i)", tls: common.tls)
                }
            }
            for try await vm in group { vms.append(vm) }
        }
        let connectSeconds = Date().timeIntervalSince(start)
        print(String(format: "connect+negotiate: %d VMs in %.2f s (%.0f VMs/s)", count, connectSeconds, Double(count) / connectSeconds))

        start = Date()
        for _ in 0..<rounds {
            let current = vms
            vms = try await withThrowingTaskGroup(of: SimulatedVM.self) { group in
                for vm in current {
                    group.addTask { try await vm.migrate(to: common.host, port: common.port, tls: common.tls) }
                }
                var next: [SimulatedVM] = []
                for try await vm in group { next.append(vm) }
                return next
            }
        }
        let migrationSeconds = Date().timeIntervalSince(start)
        print(String(format: "vMotion: %d migrations (%d at once) in %.2f s (%.0f migrations/s)",
                     rounds * count, count, migrationSeconds, Double(rounds * count) / migrationSeconds))

        // Throughput: one VM streams `bytes` to a client attached to its port.
        guard let endpoint = AdminEndpoint.parse(admin, defaultHost: "127.0.0.1") else {
            throw ValidationError("--admin must be [host]:port or unix:PATH")
        }
        let listed = try await AdminClient.request(endpoint, AdminRequest(command: "list")).vms ?? []
        guard let vm = vms.first, let info = listed.first(where: { $0.name == vm.name }) else {
            print("throughput: skipped (VM not listed)")
            return
        }
        let client = try await SimulatedClient.connect(host: "127.0.0.1", port: info.port)
        try await Task.sleep(nanoseconds: 100_000_000)
        _ = client.takeData()
        let chunk = [UInt8](repeating: 0x41, count: 64 * 1024)
        start = Date()
        var sent = 0
        while sent < bytes {
            vm.output(chunk)
            sent += chunk.count
            if sent % (1 << 20) == 0 {
                try await client.wait("client catch-up", timeout: 60) { client.data.count >= sent - (2 << 20) }
            }
        }
        try await client.waitForData(count: bytes, timeout: 120)
        let throughputSeconds = Date().timeIntervalSince(start)
        print(String(format: "throughput: %d MiB VM -> client in %.2f s (%.1f MiB/s)", bytes >> 20, throughputSeconds,
                     Double(bytes) / 1_048_576 / throughputSeconds))
        client.close()
        vms.forEach { $0.close() }
    }
}
