import Foundation
import XCTest
@testable import VSPCCore

/// A small deterministic PRNG (SplitMix64) so "random" tests are reproducible on every platform.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) }
    }
}

enum Hex {
    /// "ff fa e8" / "FFFAE8" -> bytes. Whitespace is ignored.
    static func bytes(_ text: String) -> [UInt8] {
        let digits = Array(text.filter { !$0.isWhitespace })
        precondition(digits.count % 2 == 0, "odd number of hex digits in \(text)")
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var i = 0
        while i < digits.count {
            guard let b = UInt8(String(digits[i...i + 1]), radix: 16) else { preconditionFailure("bad hex in \(text)") }
            out.append(b)
            i += 2
        }
        return out
    }

    static func string(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02x", $0) }.joined(separator: " ")
    }
}

struct FixtureMissing: Error, CustomStringConvertible {
    var name: String
    var description: String { "fixture Fixtures/\(name) not found in Bundle.module" }
}

/// Loads `Fixtures/<name>`: text lines of hex bytes, one chunk per line; lines starting with `#` are comments.
enum Fixture {
    static func url(_ name: String) throws -> URL {
        if let url = Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil) { return url }
        if let dir = Bundle.module.url(forResource: "Fixtures", withExtension: nil) {
            let url = dir.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: url.path) { return url }
        }
        throw FixtureMissing(name: name)
    }

    static func chunks(_ name: String) throws -> [[UInt8]] {
        let text = try String(contentsOf: url(name), encoding: .utf8)
        return text.split(whereSeparator: { $0 == "\n" || $0 == "\r" })
            .map(String.init)
            .filter { !$0.hasPrefix("#") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            .map(Hex.bytes)
    }

    static func bytes(_ name: String) throws -> [UInt8] {
        try chunks(name).flatMap { $0 }
    }
}

/// Splits a raw telnet byte stream into wire messages (each negotiation, each subnegotiation, each command and
/// each run of data), without un-escaping, for message-by-message comparisons.
func wireMessages(_ bytes: [UInt8]) -> [[UInt8]] {
    var out: [[UInt8]] = []
    var i = 0
    var data: [UInt8] = []
    func flush() { if !data.isEmpty { out.append(data); data = [] } }
    while i < bytes.count {
        if bytes[i] != 0xFF { data.append(bytes[i]); i += 1; continue }
        guard i + 1 < bytes.count else { flush(); out.append(Array(bytes[i...])); break }
        let cmd = bytes[i + 1]
        switch cmd {
        case 0xFF:
            data.append(contentsOf: [0xFF, 0xFF]); i += 2
        case 0xFB...0xFE:
            flush(); out.append(Array(bytes[i..<min(i + 3, bytes.count)])); i += 3
        case 0xFA:
            flush()
            var j = i + 2
            while j + 1 < bytes.count, !(bytes[j] == 0xFF && bytes[j + 1] == 0xF0) {
                j += bytes[j] == 0xFF ? 2 : 1
            }
            let end = min(j + 2, bytes.count)
            out.append(Array(bytes[i..<end])); i = end
        default:
            flush(); out.append([0xFF, cmd]); i += 2
        }
    }
    flush()
    return out
}

/// Merges adjacent `.data` events (the decoder may cut a run of data at a read boundary).
func coalesced(_ events: [TelnetEvent]) -> [TelnetEvent] {
    var out: [TelnetEvent] = []
    for event in events {
        if case .data(let more) = event, case .data(let prev)? = out.last {
            out[out.count - 1] = .data(prev + more)
        } else if case .data(let d) = event, d.isEmpty {
            continue
        } else {
            out.append(event)
        }
    }
    return out
}

/// Merges adjacent `.vmData` actions and drops `.log` actions (their wording is not protocol).
func normalized(_ actions: [VMLinkAction]) -> [VMLinkAction] {
    var out: [VMLinkAction] = []
    for action in actions {
        switch action {
        case .log: continue
        case .vmData(let more):
            if case .vmData(let prev)? = out.last { out[out.count - 1] = .vmData(prev + more) } else if !more.isEmpty { out.append(action) }
        default: out.append(action)
        }
    }
    return out
}

extension Array where Element == VMLinkAction {
    /// All bytes of the `.send` actions, concatenated in order.
    var sentBytes: [UInt8] {
        flatMap { action -> [UInt8] in
            if case .send(let b) = action { return b }
            return []
        }
    }
    var vmDataBytes: [UInt8] {
        flatMap { action -> [UInt8] in
            if case .vmData(let b) = action { return b }
            return []
        }
    }
    var withoutLogs: [VMLinkAction] { filter { if case .log = $0 { return false } else { return true } } }
}
