import Foundation
import VSPCCore
import VSPCSim

/// The VMs of `vspc-vmsim run`, each in one slot: connected, or waiting to (re)connect with back-off as ESXi does
/// when vspcd closes the VM's connection, refuses it, or cannot be reached. Every change is one line on stdout.
final class Fleet {
    final class Slot {
        let index: Int
        let name: String
        let uuid: String
        var vm: SimulatedVM?
        var everConnected = false
        var retryAt = Date.distantPast
        var backoff = Fleet.firstBackoff
        var lostAt: Date?
        var connectedAt = Date.distantPast
        var announced = false
        var pending: [String] = []
        var getty: Getty

        init(index: Int, name: String, uuid: String) {
            self.index = index
            self.name = name
            self.uuid = uuid
            getty = Getty(hostname: name)
        }
    }

    /// ESXi's rhythm, roughly: retry soon, then less and less often.
    static let firstBackoff = 1.0
    static let maxBackoff = 30.0

    let slots: [Slot]
    let host: String
    let port: Int
    let tls: Bool
    let serviceURI: String
    let bootLog: Bool

    // What happened, for the summary.
    var refused = 0
    var unreachable = 0
    var closedByDaemon = 0
    var reconnected = 0
    var migrations = 0
    var failedMigrations = 0

    init(names: [(name: String, uuid: String)], host: String, port: Int, tls: Bool, serviceURI: String, bootLog: Bool) {
        slots = names.enumerated().map { Slot(index: $0.offset, name: $0.element.name, uuid: $0.element.uuid) }
        self.host = host
        self.port = port
        self.tls = tls
        self.serviceURI = serviceURI
        self.bootLog = bootLog
    }

    var connectedCount: Int { slots.filter { $0.vm != nil && $0.announced }.count }

    func say(_ line: String) {
        print(line)
        fflush(stdout)
    }

    /// Connects every slot that is due; returns how many were tried.
    @discardableResult
    func connectDue(now: Date = Date()) async -> Int {
        var tried = 0
        for slot in slots where slot.vm == nil && now >= slot.retryAt {
            tried += 1
            do {
                let vm = try await SimulatedVM.connect(host: host, port: port, uuid: slot.uuid, name: slot.name,
                                                       serviceURI: serviceURI, tls: tls)
                // Identified before the next VM starts, so that a fresh database gives the ports in name order.
                try? await vm.wait("the name request", timeout: 5) {
                    vm.closed || vm.messages.contains { $0.first == VMwareCommand.getVMName }
                }
                slot.vm = vm
                slot.connectedAt = Date()
                slot.announced = false
            } catch {
                let text = "\(error)"
                let isRefusal = error is SimError
                if isRefusal { refused += 1 } else { unreachable += 1 }
                let what = isRefusal ? "refused by vspcd (\(text))"
                    : "vspcd unreachable at \(host):\(port) (\(Self.plain(text)))"
                scheduleRetry(slot, what)
            }
        }
        return tried
    }

    /// A VM still open `settle` seconds after it was identified has been accepted: it is announced (and boots).
    /// vspcd refuses a VM whose uuid another open connection carries within a round trip or two.
    static let settle = 1.0

    func announceSettled(now: Date = Date()) {
        for slot in slots {
            guard let vm = slot.vm, !slot.announced, !vm.closed,
                  now.timeIntervalSince(slot.connectedAt) >= Self.settle else { continue }
            slot.announced = true
            slot.backoff = Self.firstBackoff
            if slot.everConnected {
                reconnected += 1
                let away = slot.lostAt.map { String(format: " after %.0f s", now.timeIntervalSince($0)) } ?? ""
                say("\(slot.name): reconnected\(away)")
                if bootLog { slot.pending.append("\r\n" + BootLog.prompt(hostname: slot.name)) }
            } else {
                slot.everConnected = true
                say("\(slot.name): connected (uuid \(slot.uuid))")
                if bootLog {
                    slot.pending = BootLog.lines(hostname: slot.name).map { $0 + "\r\n" } + [BootLog.prompt(hostname: slot.name)]
                }
            }
            slot.lostAt = nil
        }
    }

    /// True once every VM is announced or waiting to retry.
    var settled: Bool { slots.allSatisfy { $0.vm == nil || $0.announced } }

    /// A connection error in a few words: the system's text for its errno when it has one.
    static func plain(_ text: String) -> String {
        guard let range = text.range(of: "errno: ") else { return text }
        let digits = text[range.upperBound...].prefix { $0.isNumber }
        guard let code = Int32(digits), let message = strerror(code) else { return text }
        return String(cString: message)
    }

    private func scheduleRetry(_ slot: Slot, _ what: String) {
        if slot.lostAt == nil { slot.lostAt = Date() }
        slot.retryAt = Date().addingTimeInterval(slot.backoff)
        say("\(slot.name): \(what); retrying in \(Int(slot.backoff)) s")
        slot.backoff = min(slot.backoff * 2, Self.maxBackoff)
    }

    /// Notices VMs whose connection vspcd closed.
    func reapClosed() {
        for slot in slots {
            guard let vm = slot.vm, vm.closed else { continue }
            slot.vm = nil
            if slot.announced {
                closedByDaemon += 1
                scheduleRetry(slot, "closed by vspcd")
            } else {
                refused += 1
                scheduleRetry(slot, "refused by vspcd (closed right after identifying; is uuid \(slot.uuid) in use by another VM?)")
            }
        }
    }

    /// Writes the next lines of each boot log (a few per call, so that it reads like a boot).
    func drainBootLogs(linesPerCall: Int = 2) {
        for slot in slots {
            guard let vm = slot.vm, slot.announced, !slot.pending.isEmpty else { continue }
            let n = min(linesPerCall, slot.pending.count)
            vm.output(slot.pending.prefix(n).joined())
            slot.pending.removeFirst(n)
        }
    }

    /// Answers what people typed: the getty in boot-log mode, `NAME: you typed N bytes` otherwise.
    func answerTyping() {
        for slot in slots {
            guard let vm = slot.vm else { continue }
            let typed = vm.takeData()
            guard !typed.isEmpty else { continue }
            if bootLog {
                vm.output(slot.getty.typed(typed))
            } else {
                vm.output("\(vm.name): you typed \(typed.count) bytes\r\n")
            }
        }
    }

    func tick(_ n: Int) {
        for slot in slots where slot.announced { slot.vm?.output("\(slot.name): tick \(n)\r\n") }
    }

    /// Migrates every connected VM once (a vMotion to the same vspcd).
    func migrateAll() async {
        var moved = 0
        for slot in slots {
            guard let vm = slot.vm, slot.announced, !vm.closed else { continue }
            do {
                slot.vm = try await vm.migrate(to: host, port: port, tls: tls)
                moved += 1
            } catch {
                failedMigrations += 1
                say("\(slot.name): vMotion failed (\(error))")
            }
        }
        migrations += moved
        say("migrated \(moved) VMs")
    }

    var summary: String {
        "\(connectedCount) of \(slots.count) VMs connected; refusals \(refused), unreachable \(unreachable) times, "
            + "closed by vspcd \(closedByDaemon) times, reconnections \(reconnected), vMotions \(migrations)"
            + (failedMigrations > 0 ? ", failed vMotions \(failedMigrations)" : "")
    }

    func closeAll() {
        for slot in slots { slot.vm?.close() }
    }
}

/// Set by SIGINT or SIGTERM: `run` stops, closes its VMs and prints its summary.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private var sources: [DispatchSourceSignal] = []

    var isSet: Bool { lock.withLock { stopped } }

    func set() { lock.withLock { stopped = true } }

    func install() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { self.set() }
            source.resume()
            sources.append(source)
        }
    }
}
