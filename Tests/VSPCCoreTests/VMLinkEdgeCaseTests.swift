import XCTest
@testable import VSPCCore

final class VMLinkEdgeCaseTests: XCTestCase {
    static let uuidWire = Array("01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00".utf8)
    static let uuid = "0123456789abcdeffedcba9800000000"
    static let wontProxy = Hex.bytes("FF FA E8 49 FF F0")
    static let willProxy = Hex.bytes("FF FA E8 47 FF F0")

    private func msg(_ command: UInt8, _ payload: [UInt8] = []) -> [UInt8] {
        TelnetEncoder.subnegotiation(option: 0xE8, payload: [command] + payload)
    }
    private func msg(_ command: UInt8, _ text: String) -> [UInt8] { msg(command, Array(text.utf8)) }

    /// A machine that has been through the ESXi opening up to and including KNOWN-SUBOPTIONS-1 and, unless
    /// `proxy` is false, the DO-PROXY 'S' "vSPC.py" of a fresh power-on.
    private func negotiated(proxy: Bool = true) -> VMLinkStateMachine {
        var m = VMLinkStateMachine()
        _ = m.start()
        _ = m.received(Hex.bytes("FF FB 25 FF FD 00 FF FD 03 FF FD 01 FF FB 00 FF FB 03 FF FB E8"))
        _ = m.received(msg(0x00, [0, 1, 2, 3, 40, 41, 43, 44, 45, 46, 48, 70, 71, 73, 80, 81, 84, 85, 86, 87, 82, 83]))
        if proxy { _ = m.received(msg(0x46, "SvSPC.py")) }
        return m
    }

    private func identifiedMachine(proxy: String? = "vSPC.py") -> VMLinkStateMachine {
        var m = negotiated(proxy: false)
        if let proxy { _ = m.received(msg(0x46, "S" + proxy)) }
        _ = m.received(msg(0x50, Self.uuidWire))
        let acts = m.received(msg(0x52, "vm-00000"))
        XCTAssertTrue(acts.contains(.identified(uuid: Self.uuid, name: "vm-00000", label: "")))
        return m
    }

    private func rejects(_ actions: [VMLinkAction]) -> [String] {
        actions.compactMap { if case .reject(let m) = $0 { return m }; return nil }
    }
    private func closes(_ actions: [VMLinkAction]) -> Int {
        actions.filter { if case .close = $0 { return true }; return false }.count
    }

    // MARK: - Plain telnet clients and timeouts

    func testWontVMwareExtensionRejectsAPlainClient() {
        var m = VMLinkStateMachine()
        _ = m.start()
        let acts = m.received(Hex.bytes("FF FD 03 FF FD 01 FF FC E8"))
        XCTAssertEqual(rejects(acts), [VMLinkStateMachine.plainClientMessage])
        XCTAssertTrue(VMLinkStateMachine.plainClientMessage.contains("proxy port"))
        XCTAssertTrue(VMLinkStateMachine.plainClientMessage.hasSuffix("\r\n"))
        XCTAssertEqual(VMLinkStateMachine.plainClientMessage.filter { $0 == "\n" || $0 == "\r\n" }.count, 1, "one line")
        // Rejected: nothing more happens, not even for an ESXi-looking continuation or a timeout.
        XCTAssertEqual(m.received(Hex.bytes("FF FB E8 41 42") + msg(0x52, "x")), [])
        XCTAssertEqual(m.negotiationTimedOut(), [])
        XCTAssertEqual(m.nameTimedOut(), [])
    }

    func testWontVMwareExtensionInTheSameReadAsData() {
        var m = VMLinkStateMachine()
        let acts = m.received(Array("hello".utf8) + Hex.bytes("FF FC E8") + Array("more".utf8))
        XCTAssertEqual(acts.withoutLogs, [.vmData(Array("hello".utf8)), .reject(message: VMLinkStateMachine.plainClientMessage)])
    }

    func testWontVMwareExtensionAfterWillIsNotARejection() {
        var m = VMLinkStateMachine()
        _ = m.received(Hex.bytes("FF FB E8"))
        XCTAssertEqual(rejects(m.received(Hex.bytes("FF FC E8"))), [])
        XCTAssertEqual(m.negotiationTimedOut(), [])
    }

    func testNegotiationTimeoutBeforeWillVMwareExtension() {
        var m = VMLinkStateMachine()
        _ = m.start()
        _ = m.received(Hex.bytes("FF FB 25 FF FD 00"))
        XCTAssertEqual(rejects(m.negotiationTimedOut()), [VMLinkStateMachine.plainClientMessage])
        XCTAssertEqual(m.negotiationTimedOut(), [], "a second timeout does nothing")
        XCTAssertEqual(m.received(Hex.bytes("FF FB E8")), [])
    }

    func testNegotiationTimeoutAfterWillVMwareExtensionDoesNothing() {
        var m = VMLinkStateMachine()
        _ = m.received(Hex.bytes("FF FB E8"))
        XCTAssertEqual(m.negotiationTimedOut(), [])
        XCTAssertTrue(m.hasExtension)
    }

    // MARK: - Options

    func testRefusalsAreSentOncePerOption() {
        var m = VMLinkStateMachine()
        XCTAssertEqual(m.received(Hex.bytes("FF FB 25")).sentBytes, Hex.bytes("FF FE 25"))
        XCTAssertEqual(m.received(Hex.bytes("FF FB 25")).sentBytes, [])
        XCTAssertEqual(m.received(Hex.bytes("FF FB 2C")).sentBytes, Hex.bytes("FF FE 2C"))
        XCTAssertEqual(m.received(Hex.bytes("FF FB 18")).sentBytes, Hex.bytes("FF FE 18"))
        XCTAssertEqual(m.received(Hex.bytes("FF FD 05")).sentBytes, Hex.bytes("FF FC 05"))
        XCTAssertEqual(m.received(Hex.bytes("FF FD 05")).sentBytes, [])
        // Answers to our own WILLs/DOs, and WONT/DONT, need no reply.
        XCTAssertEqual(m.received(Hex.bytes("FF FD 00 FF FD 01 FF FD 03 FF FB 00 FF FB 03 FF FE 01 FF FC 03 FF FC 2C")).withoutLogs, [])
        // NOP is ignored.
        XCTAssertEqual(m.received(Hex.bytes("FF F1")).withoutLogs, [])
    }

    func testDataKeepsNulDC1AndIAC() {
        var m = identifiedMachine()
        XCTAssertEqual(m.received([0x00, 0x11, 0x0D, 0x00, 0xFF, 0xFF, 0x7F]).withoutLogs, [.vmData([0x00, 0x11, 0x0D, 0x00, 0xFF, 0x7F])])
    }

    func testSubnegotiationOfAnotherOptionIsIgnored() {
        var m = negotiated()
        XCTAssertEqual(m.received(TelnetEncoder.subnegotiation(option: 0x2C, payload: [1, 2, 3])).withoutLogs, [])
    }

    func testKnownSuboptions1TwiceRequestsIdentifiersOnce() {
        var m = VMLinkStateMachine()
        let k2 = VMwareCommand.message(1, VMwareCommand.supported)
        let first = m.received(msg(0x00, [0, 1]))
        XCTAssertEqual(first.sentBytes, k2 + Hex.bytes("FF FA E8 51 FF F0 FF FA E8 53 FF F0"))
        XCTAssertEqual(m.received(msg(0x00, [0, 1])).sentBytes, k2)
    }

    // MARK: - DO-PROXY

    func testDoProxyWithPortLabel() {
        var m = negotiated(proxy: false)
        XCTAssertEqual(m.received(msg(0x46, "SvSPC.py?port=com2")).withoutLogs, [.send(Self.willProxy)])
        _ = m.received(msg(0x50, Self.uuidWire))
        XCTAssertEqual(m.received(msg(0x52, "vm-00000")).withoutLogs, [.identified(uuid: Self.uuid, name: "vm-00000", label: "com2")])
        XCTAssertEqual(m.serviceLabel, "com2")
        // A later DO-PROXY does not relabel an identified console.
        XCTAssertEqual(m.received(msg(0x46, "SvSPC.py?port=com3")).sentBytes, Self.willProxy)
        XCTAssertEqual(m.serviceLabel, "com2")
    }

    func testDoProxyClientDirectionAccepted() {
        var m = negotiated(proxy: false)
        XCTAssertEqual(m.received(msg(0x46, "CvSPC.py")).sentBytes, Self.willProxy)
    }

    func testDoProxyWithAnotherServiceURIIsRefusedAndClosed() {
        let refused: [(String, [UInt8])] = [
            ("other URI", Array("Stelnet://other:1234".utf8)), ("longer name", Array("SvSPC.pyx".utf8)),
            ("bad direction byte", Array("XvSPC.py".utf8)), ("label with ':'", Array("SvSPC.py?port=a:b".utf8)),
            ("empty DO-PROXY", []),
        ]
        for (what, payload) in refused {
            var m = negotiated(proxy: false)
            let acts = m.received(msg(0x46, payload))
            XCTAssertEqual(acts.sentBytes, Self.wontProxy, what)
            XCTAssertEqual(closes(acts), 1, what)
            // A refused VM never becomes a console.
            XCTAssertEqual(m.received(msg(0x50, Self.uuidWire) + msg(0x52, "vm-00000")).withoutLogs, [], what)
            XCTAssertFalse(m.isIdentified, what)
        }
    }

    /// A vMotion destination sends PEER instead of DO-PROXY and still answers the uuid and name requests:
    /// it must not be taken for a fresh power-on of the VM.
    func testWithoutDoProxyTheVMIsNotIdentified() {
        var m = negotiated(proxy: false)
        XCTAssertEqual(m.received(msg(0x2C, [1, 2, 3, 4, 5, 6, 7, 8])).withoutLogs, [.vmotionPeer(cookie: [1, 2, 3, 4, 5, 6, 7, 8])])
        XCTAssertEqual(m.received(msg(0x50, Self.uuidWire) + msg(0x52, "vm-00000")).withoutLogs, [])
        XCTAssertFalse(m.isIdentified)
        XCTAssertEqual(m.vmUUID, Self.uuid)
        XCTAssertEqual(m.vmName, "vm-00000")
    }

    /// Once the concentrator has made a destination the VM's connection, a later VM-NAME is a rename.
    func testAdoptedDestinationReportsRenames() {
        var m = negotiated(proxy: false)
        _ = m.received(msg(0x2C, [1, 2, 3, 4, 5, 6, 7, 8]) + msg(0x50, Self.uuidWire) + msg(0x52, "vm-00000"))
        m.adoptedByVMotion()
        XCTAssertTrue(m.isIdentified)
        XCTAssertEqual(m.received(msg(0x52, "vm-00000")).withoutLogs, [])
        XCTAssertEqual(m.received(msg(0x52, "vm-moved")).withoutLogs, [.renamed("vm-moved")])
    }

    func testUUIDAndNameBeforeDoProxyIdentifyOnDoProxy() {
        var m = negotiated(proxy: false)
        XCTAssertEqual(m.received(msg(0x50, Self.uuidWire) + msg(0x52, "vm-00000")).withoutLogs, [])
        XCTAssertEqual(m.received(msg(0x46, "SvSPC.py?port=com2")).withoutLogs,
                       [.send(Self.willProxy), .identified(uuid: Self.uuid, name: "vm-00000", label: "com2")])
    }

    func testCustomAcceptedServiceURI() {
        var m = VMLinkStateMachine(acceptedServiceURI: "vspcd")
        XCTAssertEqual(m.received(msg(0x46, "Svspcd?port=ttyS1")).sentBytes, Self.willProxy)
        XCTAssertEqual(m.serviceLabel, "ttyS1")
        XCTAssertEqual(m.received(msg(0x46, "SvSPC.py")).sentBytes, Self.wontProxy)
    }

    // MARK: - Unknown sub-commands

    func testUnknownSubcommandsAreAnsweredWithUnknownSuboptionRcvd2() {
        var m = negotiated()
        let cases: [(UInt8, [UInt8])] = [
            (84, Self.uuidWire),            // VM-BIOS-UUID with payload
            (86, Self.uuidWire),            // VM-LOCATION-UUID
            (99, [1, 2, 3]),
            (41, [0x44, 0xDA, 0x87, 0xF1]), // GOAHEAD is proxy->VM only
            (85, []), (87, []), (42, []),
        ]
        for (code, payload) in cases {
            XCTAssertEqual(m.received(msg(code, payload)).withoutLogs, [.send([0xFF, 0xFA, 0xE8, 0x03, code, 0xFF, 0xF0])], "code \(code)")
        }
        // Code 0xFF must be escaped in the answer.
        XCTAssertEqual(m.received(msg(0xFF, [])).sentBytes, Hex.bytes("FF FA E8 03 FF FF FF F0"))
        // The machine keeps working: a later VM-VC-UUID / VM-NAME still identifies.
        XCTAssertEqual(m.received(msg(0x50, Self.uuidWire)).withoutLogs, [])
        XCTAssertEqual(m.received(msg(0x52, "vm-00000")).withoutLogs, [.identified(uuid: Self.uuid, name: "vm-00000", label: "")])
    }

    /// Reference (vmware-telnet-ext.md §6 item 6): unknown sub-commands, 84-87 *and 2*, get
    /// UNKNOWN-SUBOPTION-RCVD-2 + code, without killing the connection.
    func testUnknownSuboptionRcvd1WithPayloadIsAnsweredWithUnknownSuboptionRcvd2() {
        var m = negotiated()
        let acts = m.received(msg(0x02, [0x54]))
        XCTAssertEqual(acts.withoutLogs, [.send(Hex.bytes("FF FA E8 03 02 FF F0"))])
        _ = m.received(msg(0x50, Self.uuidWire))
        XCTAssertEqual(m.received(msg(0x52, "vm-00000")).withoutLogs, [.identified(uuid: Self.uuid, name: "vm-00000", label: "")])
    }

    func testEmptyVMwareSubnegotiationIsIgnored() {
        var m = negotiated()
        let acts = m.received(Hex.bytes("FF FA E8 FF F0"))
        XCTAssertEqual(acts.withoutLogs, [])
        _ = m.received(msg(0x50, Self.uuidWire))
        XCTAssertEqual(m.received(msg(0x52, "vm-00000")).withoutLogs, [.identified(uuid: Self.uuid, name: "vm-00000", label: "")])
    }

    // MARK: - Identification

    func testNameBeforeUUIDIdentifiesOnUUID() {
        var m = negotiated()
        XCTAssertEqual(m.received(msg(0x52, "vm-00000")).withoutLogs, [])
        XCTAssertFalse(m.isIdentified)
        XCTAssertEqual(m.received(msg(0x50, "0123456789ABCDEF-FEDCBA9800000000")).withoutLogs,
                       [.identified(uuid: Self.uuid, name: "vm-00000", label: "")])
    }

    func testSecondDifferentUUIDCloses() {
        var m = identifiedMachine()
        // The same uuid in another spelling is not a change.
        XCTAssertEqual(m.received(msg(0x50, "01234567-89ab-cdef-fedc-ba9800000000")).withoutLogs, [])
        let acts = m.received(msg(0x50, "01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 01"))
        XCTAssertEqual(closes(acts), 1)
        XCTAssertEqual(m.vmUUID, Self.uuid)
        XCTAssertEqual(m.received(msg(0x52, "other") + [0x41]), [], "nothing after the close")
    }

    func testSecondDifferentUUIDBeforeNameCloses() {
        var m = negotiated()
        _ = m.received(msg(0x50, Self.uuidWire))
        XCTAssertEqual(closes(m.received(msg(0x50, "ffffffffffffffffffffffffffffffff"))), 1)
    }

    func testRenameAfterIdentification() {
        var m = identifiedMachine()
        XCTAssertEqual(m.received(msg(0x52, "vm-00000")).withoutLogs, [], "same name: no rename")
        XCTAssertEqual(m.received(msg(0x52, "vm-renamed")).withoutLogs, [.renamed("vm-renamed")])
        XCTAssertEqual(m.vmName, "vm-renamed")
        XCTAssertEqual(m.received(msg(0x52, "  ")).withoutLogs, [], "empty name ignored")
        XCTAssertEqual(m.vmName, "vm-renamed")
    }

    func testNameIsSanitized() {
        var m = negotiated()
        _ = m.received(msg(0x50, Self.uuidWire))
        let acts = m.received(msg(0x52, Array("  vm\u{1B}[31m-\u{7F}é\u{00}x \r\n".utf8)))
        XCTAssertEqual(acts.withoutLogs, [.identified(uuid: Self.uuid, name: "vm[31m-éx", label: "")])
        var long = negotiated()
        _ = long.received(msg(0x50, Self.uuidWire))
        let longActs = long.received(msg(0x52, String(repeating: "n", count: 300)))
        XCTAssertEqual(longActs.withoutLogs, [.identified(uuid: Self.uuid, name: String(repeating: "n", count: 256), label: "")])
    }

    func testMalformedUUIDIsIgnored() {
        var m = negotiated()
        for bad in ["", "not a uuid", "0123456789abcdeffedcba980000000", "0123456789abcdeffedcba98000000000",
                    "0123456789abcdeffedcba980000000g"] {
            XCTAssertEqual(m.received(msg(0x50, bad)).withoutLogs, [], bad)
        }
        XCTAssertNil(m.vmUUID)
        XCTAssertEqual(m.received(msg(0x52, "vm-00000")).withoutLogs, [])
        XCTAssertFalse(m.isIdentified)
        XCTAssertEqual(m.nameTimedOut(), [], "no uuid: nothing to identify with")
        XCTAssertEqual(m.received(msg(0x50, Self.uuidWire)).withoutLogs, [.identified(uuid: Self.uuid, name: "vm-00000", label: "")])
    }

    func testNameTimeoutIdentifiesWithTheUUIDAsName() {
        var m = negotiated()
        _ = m.received(msg(0x46, "SvSPC.py?port=com1"))
        _ = m.received(msg(0x50, Self.uuidWire))
        XCTAssertFalse(m.isIdentified)
        let acts = m.nameTimedOut()
        XCTAssertEqual(acts.withoutLogs, [.identified(uuid: Self.uuid, name: "0123456789abcdef-fedcba9800000000", label: "com1")])
        XCTAssertEqual(m.nameTimedOut(), [])
        // A real name arriving later is a rename.
        XCTAssertEqual(m.received(msg(0x52, "vm-00000")).withoutLogs, [.renamed("vm-00000")])
    }

    func testNameTimeoutWithoutUUIDOrAfterIdentificationDoesNothing() {
        var fresh = VMLinkStateMachine()
        XCTAssertEqual(fresh.nameTimedOut(), [])
        var m = identifiedMachine()
        XCTAssertEqual(m.nameTimedOut(), [])
    }

    // MARK: - Robustness

    func testTruncatedSubnegotiationThenMoreBytes() {
        var m = negotiated()
        _ = m.received(msg(0x50, Self.uuidWire))
        XCTAssertEqual(m.received(Hex.bytes("FF FA E8 52 76 6D")).withoutLogs, [])
        XCTAssertEqual(m.received(Hex.bytes("2D 30")).withoutLogs, [])
        XCTAssertEqual(m.received(Hex.bytes("FF")).withoutLogs, [])
        XCTAssertEqual(m.received(Hex.bytes("F0 41")).withoutLogs,
                       [.identified(uuid: Self.uuid, name: "vm-0", label: ""), .vmData([0x41])])
    }

    func testSubnegotiationCutByACommandThenTheMachineContinues() {
        var m = negotiated()
        _ = m.received(msg(0x50, Self.uuidWire))
        // VM-NAME interrupted by IAC WILL 2C: the name is dropped, WILL 2C is answered.
        XCTAssertEqual(m.received(Hex.bytes("FF FA E8 52 76 6D FF FB 2C")).withoutLogs, [.send(Hex.bytes("FF FE 2C"))])
        XCTAssertFalse(m.isIdentified)
        XCTAssertEqual(m.received(msg(0x52, "vm-00000")).withoutLogs, [.identified(uuid: Self.uuid, name: "vm-00000", label: "")])
    }

    func testOversizedSubnegotiationIsDiscarded() {
        var m = VMLinkStateMachine(maxSubnegotiation: 16)
        _ = m.received(Hex.bytes("FF FB E8"))
        _ = m.received(msg(0x50, Self.uuidWire)) // 48 bytes: too long for this bound
        XCTAssertNil(m.vmUUID)
        _ = m.received(msg(0x50, Self.uuid))     // 33 bytes: still too long
        XCTAssertNil(m.vmUUID)
        XCTAssertEqual(m.received(msg(0x52, "vm-0") + [0x42]).withoutLogs, [.vmData([0x42])])
        XCTAssertEqual(m.vmName, "vm-0")
    }

    func testRandomGarbageNeverCrashes() {
        var rng = SplitMix64(seed: 0xC0FFEE)
        // Bytes biased towards telnet/VMware codes so that deep states are reached.
        let interesting: [UInt8] = [0xFF, 0xFF, 0xFA, 0xF0, 0xFB, 0xFC, 0xFD, 0xFE, 0xE8, 0x00, 0x28, 0x2C, 0x2E, 0x30, 0x46, 0x50, 0x52, 0x53]
        var m = VMLinkStateMachine(maxSubnegotiation: 128)
        _ = m.start()
        var total = 0
        var sends = 0
        while total < 100_000 {
            let n = Int.random(in: 1...512, using: &rng)
            let chunk: [UInt8] = (0..<n).map { _ in
                Bool.random(using: &rng) ? interesting.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
            }
            total += n
            for action in m.received(chunk) {
                if case .send(let bytes) = action {
                    sends += 1
                    // Everything we send is well-formed telnet: no data, nothing left mid-sequence.
                    var d = TelnetDecoder()
                    let events = d.decode(bytes)
                    XCTAssertFalse(d.isMidSequence)
                    XCTAssertFalse(events.contains { if case .data = $0 { return true }; return false })
                }
            }
            _ = m.nameTimedOut()
        }
        _ = m.negotiationTimedOut()
        XCTAssertGreaterThan(sends, 0)
    }

    func testRandomGarbageOnAFreshMachineUniform() {
        var rng = SplitMix64(seed: 2024)
        var m = VMLinkStateMachine()
        for _ in 0..<200 { _ = m.received(rng.bytes(512)) }
    }
}
