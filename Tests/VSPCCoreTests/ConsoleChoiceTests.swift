import Foundation
import XCTest
@testable import VSPCCore

/// The rule for names that several consoles carry (a VM rebuilt under the same name gets a new uuid, and the
/// old assignment lives until it expires), and its refusal.
final class ConsoleChoiceTests: XCTestCase {
    let old = "0123456789abcdef0000000000000001"
    let new = "fedcba98765432100000000000000002"
    let seen = Date(timeIntervalSince1970: 1_795_615_200)

    func testOfTwoConsolesOfOneNameTheConnectedOneIsPicked() {
        let candidates = [ConsoleCandidate(uuid: old, name: "web-0", port: 20000, connected: false, lastSeen: seen),
                          ConsoleCandidate(uuid: new, name: "web-0", port: 20001, connected: true, lastSeen: seen)]
        XCTAssertEqual(VMLookup.choose("web-0", among: candidates), .found(candidates[1]))
        XCTAssertEqual(VMLookup.choose("WEB", among: candidates), .found(candidates[1]), "a prefix too")
        XCTAssertEqual(VMLookup.choose("web-0", among: candidates, scope: .vm), .found(candidates[1]))
        // The old one by its uuid.
        XCTAssertEqual(VMLookup.choose(old, among: candidates), .found(candidates[0]))
    }

    /// Issue 15 item 6: a VM that exists without the asked label is named, with its labels.
    func testAMissingLabelIsNamedWithTheVMsLabels() {
        let candidates = [ConsoleCandidate(uuid: old, name: "web-0", port: 20000, connected: true),
                          ConsoleCandidate(uuid: old, label: "com1", name: "web-0", port: 20001, connected: true),
                          ConsoleCandidate(uuid: new, label: "com2", name: "db-0", port: 20002)]
        XCTAssertEqual(VMLookup.choose("web-0", among: candidates, label: "com2"), .notFound)
        XCTAssertEqual(VMLookup.notFound("web-0", among: candidates, label: "com2"),
                       "\"web-0\" has no serial port labelled \"com2\"; its labels: (none), \"com1\"")
        XCTAssertEqual(VMLookup.notFound("nothing", among: candidates, label: "com2"), "no VM matches \"nothing\"")
        XCTAssertEqual(VMLookup.notFound("web-0", among: [], label: nil), "no VM matches \"web-0\"")
    }

    func testBothDownIsAmbiguousWithTheList() {
        let candidates = [ConsoleCandidate(uuid: new, name: "web-0", port: 20001, lastSeen: seen.addingTimeInterval(60)),
                          ConsoleCandidate(uuid: old, name: "web-0", port: 20000, lastSeen: seen)]
        let choice = VMLookup.choose("web-0", among: candidates)
        XCTAssertEqual(choice, .ambiguous([candidates[1], candidates[0]]), "sorted by name, label, uuid")
        guard case .ambiguous(let listed) = choice else { return }
        XCTAssertEqual(VMLookup.ambiguity("web-0", listed), """
            "web-0" is ambiguous; it names several consoles:
              web-0  0123456789abcdef-0000000000000001  port 20000  last seen 2026-11-25T14:00:00Z
              web-0  fedcba9876543210-0000000000000002  port 20001  last seen 2026-11-25T14:01:00Z
            """)
        XCTAssertEqual(VMLookup.ambiguity("web-0", listed, listing: false),
                       #""web-0" is ambiguous; it names several consoles; use its uuid"#)
        // Both connected: still ambiguous.
        let up = candidates.map { c -> ConsoleCandidate in var c = c; c.connected = true; return c }
        guard case .ambiguous = VMLookup.choose("web-0", among: up) else { return XCTFail("chose one of two connected") }
    }

    func testEntriesOfOneVMAreMergedAndNamesAreEscaped() {
        // The records: an assignment (current name, port) and old names from the event log, for two VMs.
        let candidates = [
            ConsoleCandidate(uuid: old, name: "db\u{1b}[2J", port: 20000, lastSeen: seen),
            ConsoleCandidate(uuid: old, name: "db-old", lastSeen: seen.addingTimeInterval(-60)),
            ConsoleCandidate(uuid: new, name: "db-new", lastSeen: seen.addingTimeInterval(-30)),
            ConsoleCandidate(uuid: new, label: "com2", name: "db-new", lastSeen: seen.addingTimeInterval(-10)),
        ]
        XCTAssertEqual(VMLookup.choose("db-old", among: candidates, scope: .vm),
                       .found(ConsoleCandidate(uuid: old, name: "db\u{1b}[2J", port: 20000, lastSeen: seen)))
        XCTAssertEqual(VMLookup.choose("db-new", among: candidates, scope: .vm),
                       .found(ConsoleCandidate(uuid: new, name: "db-new", lastSeen: seen.addingTimeInterval(-10))),
                       "a VM's serial ports are one VM")
        guard case .ambiguous(let consoles) = VMLookup.choose("db-new", among: candidates, scope: .console) else {
            return XCTFail("two serial ports are two consoles")
        }
        XCTAssertEqual(consoles.map(\.label), ["", "com2"])
        guard case .ambiguous(let both) = VMLookup.choose("db", among: candidates, scope: .vm) else { return XCTFail() }
        XCTAssertEqual(VMLookup.ambiguity("db", both), """
            "db" is ambiguous; it names several consoles:
              db\\x1b[2J  0123456789abcdef-0000000000000001  port 20000  last seen 2026-11-25T14:00:00Z
              db-new  fedcba9876543210-0000000000000002  no port  last seen 2026-11-25T13:59:50Z
            """)
        XCTAssertEqual(VMLookup.choose("nothing", among: candidates), .notFound)
        XCTAssertEqual(VMLookup.choose("db-new", among: candidates, label: "com2"),
                       .found(ConsoleCandidate(uuid: new, label: "com2", name: "db-new", lastSeen: seen.addingTimeInterval(-10))))
    }
}
