// libFuzzer target: the telnet decoder driving a VM connection's state machine (VMLinkStateMachine), as a
// hostile peer on the proxy port would. Built by fuzz/run.sh together with the pure core sources.
//
// Input: a 4-byte seed, then the bytes the peer sends. The seed drives a small generator that splits the bytes
// into reads at arbitrary points and puts the negotiation and name timeouts (and a vMotion adoption) between
// reads. Every run is checked against invariants, and against a second state machine that receives the same
// bytes unsplit: the protocol must not depend on how TCP cut the stream. Any violation traps, so libFuzzer
// records the input as a crash.

/// A step of the plan: a read of `bytes[range]`, or one of the events a timer or the concentrator delivers.
enum FuzzStep {
    case read(Range<Int>)
    case negotiationTimedOut
    case nameTimedOut
    case adoptedByVMotion
}

/// SplitMix64: a deterministic generator from the input's seed.
struct FuzzGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func fuzzPlan(seed: UInt32, count: Int) -> [FuzzStep] {
    var generator = FuzzGenerator(state: UInt64(seed))
    var steps: [FuzzStep] = []
    var offset = 0
    let maxRead = 1 + Int(seed >> 24) // 1...256 bytes per read
    while offset < count {
        let r = generator.next()
        switch r % 32 {
        case 0: steps.append(.negotiationTimedOut)
        case 1: steps.append(.nameTimedOut)
        case 2 where r % 256 == 2: steps.append(.adoptedByVMotion)
        default:
            let length = min(count - offset, 1 + Int((r >> 8) % UInt64(maxRead)))
            steps.append(.read(offset..<(offset + length)))
            offset += length
        }
    }
    // The timers may still fire after the last read.
    if seed & 1 != 0 { steps.append(.negotiationTimedOut) }
    if seed & 2 != 0 { steps.append(.nameTimedOut) }
    return steps
}

/// The same plan with consecutive reads joined into one.
func fuzzJoined(_ steps: [FuzzStep]) -> [FuzzStep] {
    var out: [FuzzStep] = []
    for step in steps {
        if case .read(let r) = step, case .read(let previous)? = out.last {
            out[out.count - 1] = .read(previous.lowerBound..<r.upperBound)
        } else {
            out.append(step)
        }
    }
    return out
}

func fuzzRun(_ steps: [FuzzStep], _ bytes: [UInt8]) -> [VMLinkAction] {
    var link = VMLinkStateMachine(acceptedServiceURI: "vSPC.py")
    var actions = link.start()
    for step in steps {
        switch step {
        case .read(let range): actions += link.received(bytes[range])
        case .negotiationTimedOut: actions += link.negotiationTimedOut()
        case .nameTimedOut: actions += link.nameTimedOut()
        case .adoptedByVMotion: link.adoptedByVMotion()
        }
    }
    return actions
}

/// Console output joined across reads (only where reads cut it), so that two runs compare equal.
func fuzzNormalized(_ actions: [VMLinkAction]) -> [VMLinkAction] {
    var out: [VMLinkAction] = []
    for action in actions {
        if case .vmData(let more) = action, case .vmData(let data)? = out.last {
            out[out.count - 1] = .vmData(data + more)
        } else {
            out.append(action)
        }
    }
    return out
}

func fuzzCheckName(_ name: String) {
    fuzzRequire(!name.isEmpty, "empty VM name")
    fuzzRequire(name.count <= VMLinkStateMachine.maxNameLength, "VM name longer than the bound")
    fuzzRequire(!name.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "C0 control in a VM name")
}

func fuzzCheck(_ actions: [VMLinkAction], inputCount: Int) {
    var ended = false
    var identified = false
    var dataBytes = 0
    for action in actions {
        fuzzRequire(!ended, "an action after the connection was refused or closed: \(action)")
        switch action {
        case .send(let bytes):
            // What the proxy sends is complete, well-formed telnet.
            var decoder = TelnetDecoder(maxSubnegotiation: 4096)
            for event in decoder.decode(bytes) {
                switch event {
                case .subnegotiationTooLong, .subnegotiationMalformed: fatalError("malformed reply \(bytes)")
                default: break
                }
            }
            fuzzRequire(!decoder.isMidSequence, "reply ends mid-sequence: \(bytes)")
        case .vmData(let data):
            fuzzRequire(!data.isEmpty, "empty console data")
            dataBytes += data.count
        case .identified(let uuid, let name, let label):
            fuzzRequire(!identified, "identified twice")
            identified = true
            fuzzRequire(uuid.utf8.count == 32 && uuid.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) },
                         "uuid not 32 lowercase hex: \(uuid)")
            fuzzCheckName(name)
            fuzzRequire(SerialPortLabel.isValid(label), "invalid label \(label)")
        case .renamed(let name):
            fuzzCheckName(name)
        case .reject(let message):
            fuzzRequire(message == VMLinkStateMachine.plainClientMessage)
            ended = true
        case .close:
            ended = true
        case .vmotionBegin, .vmotionPeer, .vmotionComplete, .vmotionAbort, .timingMark, .log:
            break
        }
    }
    fuzzRequire(dataBytes <= inputCount, "more console bytes out than bytes in")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTelnetVMLink(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let start, count >= 4 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: start, count: count))
    let seed = input[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    let bytes = Array(input[4...])

    let plan = fuzzPlan(seed: seed, count: bytes.count)
    let split = fuzzRun(plan, bytes)
    fuzzCheck(split, inputCount: bytes.count)
    let whole = fuzzRun(fuzzJoined(plan), bytes)
    fuzzRequire(fuzzNormalized(split) == fuzzNormalized(whole), "the outcome depends on how the bytes were split")

    // The codec alone: escaping then decoding gives the data back, in any split.
    let escaped = TelnetEncoder.escaped(bytes)
    var decoder = TelnetDecoder()
    var decoded: [UInt8] = []
    var offset = 0
    var generator = FuzzGenerator(state: UInt64(seed) << 1)
    while offset < escaped.count {
        let end = min(escaped.count, offset + 1 + Int(generator.next() % 97))
        for event in decoder.decode(escaped[offset..<end]) {
            guard case .data(let data) = event else { fatalError("escaped data decoded as \(event)") }
            decoded += data
        }
        offset = end
    }
    fuzzRequire(decoded == bytes && !decoder.isMidSequence, "escape/decode round trip changed the data")
    return 0
}

/// A failed check: traps with its message (`precondition` drops messages in optimized builds).
func fuzzRequire(_ condition: Bool, _ message: @autoclosure () -> String = "", file: StaticString = #file, line: UInt = #line) {
    if !condition { fatalError(message(), file: file, line: line) }
}
