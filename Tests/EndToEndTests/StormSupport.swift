import Foundation
import VSPCSim
import XCTest

/// The people of a storm of vMotions: one telnet reader for each VM, and what each must see.
struct StormPeople {
    var clients: [SimulatedClient]
    /// For each VM, how much of what it printed came before its person was in sync: the rest must be seen.
    var mustSeeFrom: [Int]
}

extension DaemonTestCase {
    /// Connects a person to each VM of the storm (at `address(vm)`, a daemon's host and the VM's port), and has
    /// each VM print sync lines until its person sees one.
    func stormPeople(_ storm: VMotionStorm, at address: (StormVM) -> (host: String, port: Int)) async throws -> StormPeople {
        var people = StormPeople(clients: [], mustSeeFrom: [])
        for vm in storm.vms {
            let (host, port) = address(vm)
            people.clients.append(try await SimulatedClient.connect(host: host, port: port))
        }
        for (vm, person) in zip(storm.vms, people.clients) {
            let deadline = Date().addingTimeInterval(60)
            while !containsBytes(person.data, Array(" sync\r\n".utf8)) {
                if Date() > deadline { throw SimError("\(vm.name)'s person never saw its output") }
                vm.printNext("sync")
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            people.mustSeeFrom.append(vm.printed.count)
        }
        return people
    }

    /// Each VM prints a last line; every person sees every byte its VM printed since it was in sync, once, in
    /// order, and stays attached.
    func assertEveryPersonSawEveryByte(_ storm: VMotionStorm, _ people: StormPeople,
                                       file: StaticString = #filePath, line: UInt = #line) async {
        for vm in storm.vms { vm.printNext("done") }
        try? await waitUntil("every person to see its VM's last line", timeout: 120) {
            zip(storm.vms, people.clients).allSatisfy { vm, person in person.data.suffix(8) == vm.printed.suffix(8) }
        }
        for (i, (vm, person)) in zip(storm.vms, people.clients).enumerated() {
            let printed = vm.printed
            let seen = person.data
            let seenText = String(decoding: seen, as: UTF8.self)
            let missing = String(decoding: printed.dropFirst(people.mustSeeFrom[i]), as: UTF8.self)
                .components(separatedBy: "\r\n").filter { !$0.isEmpty && !seenText.contains($0 + "\r\n") }
            XCTAssertEqual(missing, [], "\(vm.name) (\(vm.completed) vMotions): lines its person did not see",
                           file: file, line: line)
            XCTAssertEqual(seen, Array(printed.suffix(seen.count)), "\(vm.name): the person's bytes are the VM's, once, in order",
                           file: file, line: line)
            XCTAssertFalse(person.closed, "\(vm.name)'s person stays attached", file: file, line: line)
        }
    }
}
