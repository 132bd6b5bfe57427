import Foundation
import VSPCCore
import VSPCClient
import VSPCSim
import VSPCStore
import XCTest

/// Replays the VM side of the four TCP streams of the ESXi capture (three vMotions, one refused and one aborted
/// attempt) through the real daemon, byte for byte as ESXi sent them, with one change: each destination's
/// VMOTION-PEER carries the secret this daemon handed out rather than the capture's. A person attached to the
/// VM's port throughout must see the capture's counting bytes exactly once each, in order.
final class CaptureReplayTests: DaemonTestCase {
    /// The capture's streams, kept as fixtures of the unit tests (one dump line per line).
    static func vmEvents(_ stream: Int) throws -> [TelnetEvent] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("VSPCCoreTests/Fixtures/stream\(stream)-vm.hex")
        let text = try String(contentsOf: url, encoding: .utf8)
        let bytes = text.split(separator: "\n").filter { !$0.hasPrefix("#") }
            .flatMap { $0.split(separator: " ").map { UInt8($0, radix: 16)! } }
        var decoder = TelnetDecoder()
        return decoder.decode(bytes)
    }

    static func encode(_ event: TelnetEvent) -> [UInt8] {
        switch event {
        case .data(let bytes): return TelnetEncoder.escaped(bytes)
        case .negotiate(let verb, let option): return TelnetEncoder.negotiate(verb, option)
        case .subnegotiation(let option, let payload): return TelnetEncoder.subnegotiation(option: option, payload: payload)
        case .command(let c): return [Telnet.IAC, c]
        case .subnegotiationTooLong, .subnegotiationMalformed: return []
        }
    }

    /// The VMware messages a peer has received so far, un-escaped (sub-command first).
    static func vmwareMessages(_ raw: [UInt8]) -> [[UInt8]] {
        var decoder = TelnetDecoder()
        return decoder.decode(raw).compactMap {
            if case .subnegotiation(TelnetOption.vmwareExt, let payload) = $0 { return payload }
            return nil
        }
    }

    func testCaptureStreamsThroughTheDaemon() async throws {
        let daemon = try await startDaemon()
        let uuid = "0123456789abcdeffedcba9800000000"
        var secrets: [[UInt8]: [UInt8]] = [:]   // sequence -> secret this daemon gave
        var replies: [String] = []
        var client: SimulatedClient?
        var previous: RawPeer?

        for stream in 0...3 {
            let peer = try await RawPeer.connect(port: daemon.proxyPort)
            for event in try Self.vmEvents(stream) {
                var event = event
                if case .subnegotiation(TelnetOption.vmwareExt, let payload) = event, payload.first == VMwareCommand.vmotionPeer {
                    let sequence = Array(payload[1...4])
                    let secret = try XCTUnwrap(secrets[sequence], "PEER for a sequence this daemon never accepted")
                    event = .subnegotiation(option: TelnetOption.vmwareExt, payload: [VMwareCommand.vmotionPeer] + sequence + secret)
                }
                peer.write(raw: Self.encode(event))
                guard case .subnegotiation(TelnetOption.vmwareExt, let payload) = event, let command = payload.first else { continue }
                let body = Array(payload.dropFirst())
                switch command {
                case VMwareCommand.vmName where stream == 0:
                    let port = try await daemon.port(of: uuid)
                    client = try await SimulatedClient.connect(port: port)
                    try await daemon.waitForList("the person attached") { $0.first?.clients == 1 }
                case VMwareCommand.vmotionBegin:
                    var reply: [UInt8]?
                    try await peer.wait("GOAHEAD or NOTNOW for \(body)") {
                        reply = Self.vmwareMessages(peer.raw).last { m in
                            (m.first == VMwareCommand.vmotionGoahead || m.first == VMwareCommand.vmotionNotNow)
                                && Array(m.dropFirst().prefix(body.count)) == body
                        }
                        return reply != nil
                    }
                    if reply!.first == VMwareCommand.vmotionGoahead {
                        XCTAssertEqual(reply!.count, 1 + body.count + 8, "GOAHEAD = sequence + 8-byte secret")
                        secrets[body] = Array(reply!.dropFirst(1 + body.count))
                        replies.append("goahead")
                    } else {
                        XCTAssertEqual(Array(reply!.dropFirst()), body, "NOTNOW carries the sequence only")
                        replies.append("notnow")
                    }
                case VMwareCommand.vmotionPeer:
                    try await peer.wait("PEER-OK") { Self.vmwareMessages(peer.raw).contains { $0.first == VMwareCommand.vmotionPeerOK } }
                    XCTAssertEqual(Self.vmwareMessages(peer.raw).first { $0.first == VMwareCommand.vmotionPeerOK },
                                   [VMwareCommand.vmotionPeerOK] + Array(body.prefix(4)), "PEER-OK carries the sequence only")
                case VMwareCommand.vmotionComplete:
                    // ESXi closes the source as the destination completes.
                    previous?.close()
                default:
                    break
                }
            }
            previous = peer
        }
        let person = try XCTUnwrap(client)
        defer { person.close(); previous?.close() }

        // Every counting byte, once, in order, across three handoffs, a refused and an aborted attempt.
        let expected = Array(UInt8(0x20)...UInt8(0x7E)) + Array(UInt8(0x20)...UInt8(0x32))
        try await person.waitForData(count: expected.count)
        // The daemon has read all the last destination sent, and the person has all that it was sent before.
        if let last = previous { try await barrier(last, person) }
        XCTAssertEqual(person.data, expected)
        // Stream 2's three BEGINs meet this daemon's state: the first is accepted (the capture's server refused
        // it artificially), the second, on the same source with no destination yet, restarts it with a new
        // secret, the ABORT ends it, the third is accepted.
        XCTAssertEqual(replies, ["goahead", "goahead", "goahead", "goahead", "goahead"])
        // The destination of the last handoff carries the console, on the port it had from the start.
        let listed = try await daemon.list()
        XCTAssertEqual(listed.count, 1)
        XCTAssertEqual(listed.first?.connected, true)
        XCTAssertEqual(listed.first?.name, "vm-00000")
        // The last destination's PEER-OK is byte for byte the capture's: the sequence 76 19 FF E9, 0xFF doubled.
        XCTAssertTrue(previous!.raw.windows(ofCount: 11).contains([0xFF, 0xFA, 0xE8, 0x2D, 0x76, 0x19, 0xFF, 0xFF, 0xE9, 0xFF, 0xF0]))
    }
}

extension Array where Element == UInt8 {
    func windows(ofCount n: Int) -> [[UInt8]] {
        guard count >= n else { return [] }
        return (0...(count - n)).map { Array(self[$0..<($0 + n)]) }
    }
}
