/// Telnet (RFC 854) framing: a streaming decoder that survives any split of any sequence across reads,
/// and the encoders for data, option negotiation and subnegotiation. Pure values, no I/O.

public enum Telnet {
    public static let IAC: UInt8 = 0xFF
    public static let DONT: UInt8 = 0xFE
    public static let DO: UInt8 = 0xFD
    public static let WONT: UInt8 = 0xFC
    public static let WILL: UInt8 = 0xFB
    public static let SB: UInt8 = 0xFA
    public static let NOP: UInt8 = 0xF1
    public static let SE: UInt8 = 0xF0
    public static let BRK: UInt8 = 0xF3
}

/// Telnet option codes used on the VM and client legs.
public enum TelnetOption {
    public static let binary: UInt8 = 0
    public static let echo: UInt8 = 1
    public static let suppressGoAhead: UInt8 = 3
    public static let timingMark: UInt8 = 6
    public static let authentication: UInt8 = 37
    public static let comPort: UInt8 = 44
    public static let vmwareExt: UInt8 = 232
}

/// One of the four option-negotiation verbs.
public enum TelnetVerb: UInt8, Sendable {
    case will = 0xFB
    case wont = 0xFC
    case `do` = 0xFD
    case dont = 0xFE
}

/// What the decoder finds in the byte stream.
public enum TelnetEvent: Equatable, Sendable {
    /// In-band data, with IAC IAC already turned into one 0xFF.
    case data([UInt8])
    /// WILL / WONT / DO / DONT option.
    case negotiate(TelnetVerb, UInt8)
    /// IAC SB option payload IAC SE, payload un-escaped.
    case subnegotiation(option: UInt8, payload: [UInt8])
    /// A subnegotiation longer than the decoder's bound; its bytes were discarded.
    case subnegotiationTooLong(option: UInt8)
    /// A subnegotiation cut short by an IAC command other than SE or IAC; its bytes were discarded.
    case subnegotiationMalformed(option: UInt8)
    /// Any other two-byte command (NOP, AYT, BRK, GA, ...).
    case command(UInt8)
}

/// Streaming telnet decoder. Feed it bytes in any split; it returns complete events in order.
/// Subnegotiations are bounded by `maxSubnegotiation` bytes of payload.
public struct TelnetDecoder: Sendable {
    enum State: Sendable {
        case data
        case iac
        case verb(TelnetVerb)
        case sbOption
        case sb(option: UInt8)
        case sbIAC(option: UInt8)
    }

    public let maxSubnegotiation: Int
    var state: State = .data
    var sbPayload: [UInt8] = []
    var sbOverflow = false

    public init(maxSubnegotiation: Int = 1024) {
        self.maxSubnegotiation = maxSubnegotiation
    }

    /// True when the decoder is in the middle of a sequence (used to report truncated input at close).
    public var isMidSequence: Bool {
        if case .data = state { return false }
        return true
    }

    public mutating func decode<C: Collection>(_ bytes: C) -> [TelnetEvent] where C.Element == UInt8 {
        var events: [TelnetEvent] = []
        decode(bytes) { events.append($0) }
        return events
    }

    /// Decodes `bytes`, calling `emit` for each event. Consecutive data bytes are delivered as one chunk.
    public mutating func decode<C: Collection>(_ bytes: C, emit: (TelnetEvent) -> Void) where C.Element == UInt8 {
        var data: [UInt8] = []
        func flushData() {
            if !data.isEmpty {
                emit(.data(data))
                data.removeAll(keepingCapacity: true)
            }
        }
        var index = bytes.startIndex
        while index != bytes.endIndex {
            switch state {
            case .data:
                // Fast path: copy everything up to the next IAC in one go.
                let rest = bytes[index...]
                if let iac = rest.firstIndex(of: Telnet.IAC) {
                    data.append(contentsOf: bytes[index..<iac])
                    state = .iac
                    index = bytes.index(after: iac)
                } else {
                    data.append(contentsOf: rest)
                    index = bytes.endIndex
                }
                continue
            case .iac:
                let byte = bytes[index]
                switch byte {
                case Telnet.IAC:
                    data.append(Telnet.IAC)
                    state = .data
                case Telnet.SB:
                    flushData()
                    state = .sbOption
                case Telnet.WILL, Telnet.WONT, Telnet.DO, Telnet.DONT:
                    state = .verb(TelnetVerb(rawValue: byte)!)
                default:
                    flushData()
                    emit(.command(byte))
                    state = .data
                }
            case .verb(let verb):
                flushData()
                emit(.negotiate(verb, bytes[index]))
                state = .data
            case .sbOption:
                sbPayload.removeAll(keepingCapacity: true)
                sbOverflow = false
                state = .sb(option: bytes[index])
            case .sb(let option):
                let byte = bytes[index]
                if byte == Telnet.IAC {
                    state = .sbIAC(option: option)
                } else {
                    appendSB(byte)
                }
            case .sbIAC(let option):
                let byte = bytes[index]
                switch byte {
                case Telnet.IAC:
                    appendSB(Telnet.IAC)
                    state = .sb(option: option)
                case Telnet.SE:
                    if sbOverflow {
                        emit(.subnegotiationTooLong(option: option))
                    } else {
                        emit(.subnegotiation(option: option, payload: sbPayload))
                    }
                    sbPayload.removeAll(keepingCapacity: false)
                    state = .data
                default:
                    // IAC <command> inside SB: the subnegotiation is broken. Drop it and
                    // read this byte as the command that follows an IAC.
                    emit(.subnegotiationMalformed(option: option))
                    sbPayload.removeAll(keepingCapacity: false)
                    state = .iac
                    continue // re-read the same byte in the .iac state
                }
            }
            index = bytes.index(after: index)
        }
        flushData()
    }

    private mutating func appendSB(_ byte: UInt8) {
        if sbPayload.count < maxSubnegotiation {
            sbPayload.append(byte)
        } else {
            sbOverflow = true
        }
    }
}

/// Encoders for the telnet wire format.
public enum TelnetEncoder {
    /// Appends `data` to `out`, doubling every 0xFF.
    @inlinable
    public static func appendEscaped<C: Collection>(_ data: C, to out: inout [UInt8]) where C.Element == UInt8 {
        var start = data.startIndex
        while let iac = data[start...].firstIndex(of: Telnet.IAC) {
            out.append(contentsOf: data[start...iac])
            out.append(Telnet.IAC)
            start = data.index(after: iac)
        }
        out.append(contentsOf: data[start...])
    }

    public static func escaped<C: Collection>(_ data: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 8)
        appendEscaped(data, to: &out)
        return out
    }

    public static func negotiate(_ verb: TelnetVerb, _ option: UInt8) -> [UInt8] {
        [Telnet.IAC, verb.rawValue, option]
    }

    public static func subnegotiation(option: UInt8, payload: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [Telnet.IAC, Telnet.SB, option]
        appendEscaped(payload, to: &out)
        out.append(contentsOf: [Telnet.IAC, Telnet.SE])
        return out
    }
}
