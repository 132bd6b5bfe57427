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
        subcommands: [Run.self, Bench.self],
        defaultSubcommand: Run.self)
}

struct Common: ParsableArguments {
    @Option(help: "vspcd's proxy host.") var host = "127.0.0.1"
    @Option(help: "vspcd's proxy port.") var port = 6779
    @Flag(help: "Use TLS (telnets://).") var tls = false
    @Option(help: "Service URI sent in DO-PROXY.") var serviceUri = "vSPC.py"
}

func uuidFor(_ index: Int, seed: UInt32) -> String {
    String(format: "%08x%08x%016x", seed, index, UInt64(index) &* 0x9E3779B97F4A7C15)
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Connect VMs and print a counting line every second from each.")

    @OptionGroup var common: Common
    @Option(help: "Number of VMs.") var count = 1
    @Option(help: "Name prefix.") var name = "sim-vm"
    @Option(help: "Seconds to run (0 = until interrupted).") var seconds: Double = 0
    @Option(help: "Migrate every VM every N seconds (0 = never).") var vmotionEvery: Double = 0

    func run() async throws {
        var vms: [SimulatedVM] = []
        for i in 0..<count {
            let vm = try await SimulatedVM.connect(host: common.host, port: common.port,
                                                   uuid: uuidFor(i, seed: 0x51_4d_00_00), name: "\(name)-\(i)",
                                                   serviceURI: common.serviceUri, tls: common.tls)
            vms.append(vm)
        }
        print("\(vms.count) VMs connected; Ctrl-C to stop")
        let start = Date()
        var tick = 0
        var lastMigration = Date()
        while seconds == 0 || Date().timeIntervalSince(start) < seconds {
            tick += 1
            for vm in vms { vm.output("\(vm.name): tick \(tick)\r\n") }
            for vm in vms {
                let typed = vm.takeData()
                if !typed.isEmpty { vm.output("\(vm.name): you typed \(typed.count) bytes\r\n") }
            }
            if vmotionEvery > 0, Date().timeIntervalSince(lastMigration) >= vmotionEvery {
                lastMigration = Date()
                for i in vms.indices {
                    vms[i] = try await vms[i].migrate(to: common.host, port: common.port, tls: common.tls)
                }
                print("migrated \(vms.count) VMs")
            }
            try await Task.sleep(nanoseconds: 1_000_000_000)
        }
        vms.forEach { $0.close() }
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
                    try await SimulatedVM.connect(host: common.host, port: common.port, uuid: uuidFor(i, seed: seed),
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
