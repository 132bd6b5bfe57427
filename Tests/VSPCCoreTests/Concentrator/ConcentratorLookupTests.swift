import Foundation
import XCTest
@testable import VSPCCore

/// Which console `vspc tail <vm>` means: `VMLookup`'s rules, as the concentrator applies them to its consoles.
final class ConcentratorLookupTests: XCTestCase {
    /// The name and label of the console a tail of `query` streams, or the refusal.
    private func tail(_ h: ConcentratorHarness, _ query: String, label: String? = nil) -> String {
        let reply = h.admin(AdminRequest(command: "tail", vm: query, label: label))
        guard let response = reply.response else { return "no answer" }
        guard response.ok, let vm = response.vm else { return "error: \(response.error ?? "?")" }
        return vm.label.isEmpty ? vm.name : "\(vm.name)#\(vm.label)"
    }

    /// The refusal of an ambiguous `query`: these connected consoles (shown name, uuid, label), in this order.
    private func ambiguity(_ h: ConcentratorHarness, _ query: String, _ consoles: [(String, String, String)]) -> String {
        let listed = h.list()
        return (["\"\(query)\" is ambiguous; it names several consoles:"] + consoles.map { shown, uuid, label in
            let port = listed.first { $0.uuid == uuid && $0.label == label }?.port ?? -1
            return "  \(shown)  \(UUIDSpelling.classic(uuid))  port \(port)  connected"
        }).joined(separator: "\n")
    }

    func testExactNameBeatsAUUIDPrefix() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.b, name: "abcdef", peer: "10.0.0.2:900")
        h.bringUpVM(UUIDs.c, name: "app01", peer: "10.0.0.3:900") // uuid abcdef00...
        XCTAssertEqual(tail(h, "abcdef"), "abcdef")
        XCTAssertEqual(tail(h, "abcdef0"), "app01", "no name starts so: the uuid prefix")
        XCTAssertEqual(tail(h, "ABCDEF00"), "app01")
    }

    func testFullUUIDInAnySpelling() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.a, name: "web01")
        h.bringUpVM(UUIDs.b, name: "db01", peer: "10.0.0.3:900")
        for spelling in ["0123456789abcdeffedcba9800000000", "0123456789ABCDEFFEDCBA9800000000",
                         "01234567-89ab-cdef-fedc-ba9800000000", "{01234567-89AB-CDEF-FEDC-BA9800000000}",
                         "0123456789abcdef-fedcba9800000000", "01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00",
                         "  0123456789abcdeffedcba9800000000\t"] {
            XCTAssertEqual(tail(h, spelling), "web01", spelling)
        }
    }

    func testNameIgnoringCaseComesAfterTheExactName() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.a, name: "web01")
        XCTAssertEqual(tail(h, "WEB01"), "web01")
        let both = ConcentratorHarness()
        both.bringUpVM(UUIDs.a, name: "Web")
        both.bringUpVM(UUIDs.b, name: "web", peer: "10.0.0.3:900")
        XCTAssertEqual(tail(both, "web"), "web")
        XCTAssertEqual(tail(both, "Web"), "Web")
        XCTAssertEqual(tail(both, "WEB"), "error: " + ambiguity(both, "WEB", [("Web", UUIDs.a, ""), ("web", UUIDs.b, "")]))
    }

    func testPrefixesOfNamesAndOfUUIDs() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.a, name: "web01")
        h.bringUpVM(UUIDs.b, name: "db-primary", peer: "10.0.0.3:900")
        XCTAssertEqual(tail(h, "db"), "db-primary")
        XCTAssertEqual(tail(h, "DB-P"), "db-primary")
        XCTAssertEqual(tail(h, "0123 4567"), "web01", "a uuid prefix in the wire spelling")
        XCTAssertEqual(tail(h, "01234567-89"), "web01")
        XCTAssertEqual(tail(h, "1111-2222"), "db-primary")
        XCTAssertEqual(tail(h, "x"), #"error: no VM matches "x""#)
    }

    func testAPrefixOfOneNameAndOfAnotherUUIDIsAmbiguous() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.b, name: "alpha", peer: "10.0.0.2:900")
        h.bringUpVM(UUIDs.c, name: "zulu", peer: "10.0.0.3:900") // uuid abcdef00...
        XCTAssertEqual(tail(h, "a"), "error: " + ambiguity(h, "a", [("alpha", UUIDs.b, ""), ("zulu", UUIDs.c, "")]))
        XCTAssertEqual(tail(h, "al"), "alpha")
        XCTAssertEqual(tail(h, "ab"), "zulu")
    }

    func testSeveralSerialPortsOfOneVMNeedALabel() {
        let h = ConcentratorHarness()
        h.bringUpVM(UUIDs.a, name: "web01", peer: "10.0.0.1:900")
        h.bringUpVM(UUIDs.a, name: "web01", label: "com2", peer: "10.0.0.1:901")
        XCTAssertEqual(tail(h, "web01"),
                       "error: " + ambiguity(h, "web01", [("web01", UUIDs.a, ""), ("web01#com2", UUIDs.a, "com2")]))
        XCTAssertEqual(tail(h, "web01", label: "com2"), "web01#com2")
        XCTAssertEqual(tail(h, "web01", label: ""), "web01")
        XCTAssertEqual(tail(h, UUIDs.a, label: "com2"), "web01#com2")
        // Issue 15 item 6: the VM exists without that label: said so, with its labels.
        XCTAssertEqual(tail(h, "web01", label: "com3"), #"error: "web01" has no serial port labelled "com3"; its labels: (none), "com2""#)
        XCTAssertEqual(tail(h, "nothing", label: "com3"), #"error: no VM matches "nothing""#)
    }

    func testOldNamesStillFindTheVMAndResultsArePerUUID() {
        let candidates = [
            VMLookup.Candidate(uuid: UUIDs.a, name: "web01"),
            VMLookup.Candidate(uuid: UUIDs.a, name: "web01-old"),
            VMLookup.Candidate(uuid: UUIDs.b, name: "db01"),
        ]
        XCTAssertEqual(VMLookup.resolve("web01-old", among: candidates), .found(uuid: UUIDs.a))
        XCTAssertEqual(VMLookup.resolve("web", among: candidates), .found(uuid: UUIDs.a), "two names, one VM")
        XCTAssertEqual(VMLookup.resolve("", among: candidates), .notFound)
        XCTAssertEqual(VMLookup.resolve("   ", among: candidates), .notFound)
        XCTAssertEqual(VMLookup.resolve("1", among: candidates), .found(uuid: UUIDs.b))
        XCTAssertEqual(VMLookup.resolve("-", among: candidates), .notFound,
                       "nothing but separators is no uuid prefix (it would match every VM)")
    }
}
