import Foundation

/// The frames of the internal link between nodes (a feed of a console from its owner):
/// `[type u8][length u32 big-endian][payload]`, the payload at most `ClusterLinkCodec.maxPayload` bytes.
/// HELLO (the feeding node asks for a console) and ACCEPT (the owner took it) carry JSON; DATA carries console
/// output (owner to feeder) or input for the VM (feeder to owner); CLOSE carries a UTF-8 reason; BREAK (feeder to
/// owner, no payload: one that has one is read as BREAK all the same) asks for a telnet BREAK to the VM.
public enum ClusterLinkFrame: Sendable, Equatable {
    case hello(Hello)
    case accept(Accept)
    case data([UInt8])
    case close(String)
    case brk

    /// X -> O: the console asked for, and the owner's epoch since whose claim its output is wanted (nil: from now;
    /// 0: since the owner's latest claim).
    public struct Hello: Sendable, Equatable, Codable {
        public var node: String
        public var uuid: String
        public var label: String
        public var sinceEpoch: Int64?

        public init(node: String, uuid: String, label: String, sinceEpoch: Int64?) {
            self.node = node
            self.uuid = uuid
            self.label = label
            self.sinceEpoch = sinceEpoch
        }

        public var key: ConsoleKey { ConsoleKey(uuid: uuid, label: label) }
    }

    /// O -> X: the owner accepted the feed, and owns the console at this epoch.
    public struct Accept: Sendable, Equatable, Codable {
        public var node: String
        public var epoch: Int64

        public init(node: String, epoch: Int64) {
            self.node = node
            self.epoch = epoch
        }
    }

    public enum Kind: UInt8, Sendable {
        case hello = 1
        case accept = 2
        case data = 3
        case close = 4
        case brk = 5
    }

    public var kind: Kind {
        switch self {
        case .hello: return .hello
        case .accept: return .accept
        case .data: return .data
        case .close: return .close
        case .brk: return .brk
        }
    }
}

/// What is wrong with a link's bytes, or with a frame to send.
public enum ClusterLinkError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A frame type this version does not know.
    case unknownType(UInt8)
    /// A frame whose payload is longer than `maxPayload`.
    case tooLong(type: UInt8, length: Int)
    /// A HELLO or ACCEPT whose JSON does not read.
    case badJSON(type: UInt8, String)
    /// A CLOSE whose reason is not UTF-8.
    case badText
    /// The decoder failed before: the link must be closed.
    case failed

    public var description: String {
        switch self {
        case .unknownType(let type): return "unknown frame type \(type)"
        case let .tooLong(type, length):
            return "frame of type \(type) too long: \(length) bytes (at most \(ClusterLinkCodec.maxPayload))"
        case let .badJSON(type, why): return "frame of type \(type) carries unreadable JSON: \(why)"
        case .badText: return "CLOSE frame whose reason is not UTF-8"
        case .failed: return "the link already sent a bad frame"
        }
    }
}

/// Encodes and decodes the internal link's frames. Pure and bounded: the decoder holds at most one frame's
/// header and payload, and fails (for good) on the first bad frame.
public enum ClusterLinkCodec {
    public static let maxPayload = 64 * 1024
    public static let headerLength = 5

    /// One frame's bytes. A payload over `maxPayload` is an error (`dataFrames` splits console bytes).
    public static func encode(_ frame: ClusterLinkFrame) throws -> [UInt8] {
        let payload: [UInt8]
        switch frame {
        case .hello(let hello): payload = try json(hello)
        case .accept(let accept): payload = try json(accept)
        case .data(let bytes): payload = bytes
        case .close(let reason): payload = Array(reason.utf8)
        case .brk: payload = []
        }
        guard payload.count <= maxPayload else {
            throw ClusterLinkError.tooLong(type: frame.kind.rawValue, length: payload.count)
        }
        return header(frame.kind, payload.count) + payload
    }

    /// Console bytes (any length) as DATA frames of at most `maxPayload` bytes each, concatenated.
    public static func dataFrames(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + (bytes.count / maxPayload + 1) * headerLength)
        var start = 0
        repeat {
            let end = min(bytes.count, start + maxPayload)
            out += header(.data, end - start)
            out += bytes[start..<end]
            start = end
        } while start < bytes.count
        return out
    }

    static func header(_ kind: ClusterLinkFrame.Kind, _ length: Int) -> [UInt8] {
        let n = UInt32(length)
        return [kind.rawValue, UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
    }

    static func json<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    /// The incremental decoder of one link: feed it what arrives, in any pieces; it gives back every complete
    /// frame. On a bad frame it throws, and keeps throwing `.failed` after: the link is closed.
    public struct Decoder: Sendable {
        private var buffer: [UInt8] = []
        private var failed = false

        public init() {}

        /// Bytes held for a frame not complete yet (at most a header and `maxPayload`).
        public var pending: Int { buffer.count }

        public mutating func decode(_ bytes: [UInt8]) throws -> [ClusterLinkFrame] {
            guard !failed else { throw ClusterLinkError.failed }
            do {
                return try consume(bytes)
            } catch {
                failed = true
                buffer = []
                throw error
            }
        }

        private mutating func consume(_ bytes: [UInt8]) throws -> [ClusterLinkFrame] {
            var frames: [ClusterLinkFrame] = []
            var input = bytes[...]
            // First the frame left partial by the last call, completed with as much of `input` as it needs.
            while !buffer.isEmpty {
                try Self.check(buffer[...])
                let wanted = buffer.count >= headerLength ? headerLength + Self.announced(buffer[...]) : headerLength
                if buffer.count < wanted {
                    guard !input.isEmpty else { return frames }
                    let take = min(input.count, wanted - buffer.count)
                    buffer += input.prefix(take)
                    input = input.dropFirst(take)
                    continue
                }
                if let (frame, _) = try Self.frame(in: buffer[...]) { frames.append(frame) }
                buffer = []
            }
            // Then whole frames straight from `input`; only a partial one (already checked) is kept.
            while let (frame, used) = try Self.frame(in: input) {
                frames.append(frame)
                input = input.dropFirst(used)
            }
            buffer = Array(input)
            return frames
        }

        private static func announced(_ bytes: ArraySlice<UInt8>) -> Int {
            let b = bytes.startIndex
            return Int(bytes[b + 1]) << 24 | Int(bytes[b + 2]) << 16 | Int(bytes[b + 3]) << 8 | Int(bytes[b + 4])
        }

        /// Throws as soon as the type byte or the length is known to be bad.
        private static func check(_ bytes: ArraySlice<UInt8>) throws {
            guard let type = bytes.first else { return }
            guard ClusterLinkFrame.Kind(rawValue: type) != nil else { throw ClusterLinkError.unknownType(type) }
            guard bytes.count >= headerLength else { return }
            let length = announced(bytes)
            guard length <= maxPayload else { throw ClusterLinkError.tooLong(type: type, length: length) }
        }

        /// The first frame of `bytes` and how many bytes it took, nil if it is not complete.
        private static func frame(in bytes: ArraySlice<UInt8>) throws -> (ClusterLinkFrame, Int)? {
            try check(bytes)
            guard bytes.count >= headerLength else { return nil }
            let length = announced(bytes)
            guard bytes.count >= headerLength + length else { return nil }
            let start = bytes.startIndex + headerLength
            let payload = Array(bytes[start..<(start + length)])
            guard let type = bytes.first, let kind = ClusterLinkFrame.Kind(rawValue: type) else { return nil }
            switch kind {
            case .hello: return (.hello(try decodeJSON(payload, type)), headerLength + length)
            case .accept: return (.accept(try decodeJSON(payload, type)), headerLength + length)
            case .data: return (.data(payload), headerLength + length)
            case .close:
                guard let reason = String(validating: payload, as: UTF8.self) else { throw ClusterLinkError.badText }
                return (.close(reason), headerLength + length)
            case .brk: return (.brk, headerLength + length)
            }
        }

        private static func decodeJSON<T: Decodable>(_ payload: [UInt8], _ type: UInt8) throws -> T {
            do {
                return try JSONDecoder().decode(T.self, from: Data(payload))
            } catch let error as DecodingError {
                throw ClusterLinkError.badJSON(type: type, Self.describe(error))
            } catch {
                throw ClusterLinkError.badJSON(type: type, "\(error)")
            }
        }

        private static func describe(_ error: DecodingError) -> String {
            switch error {
            case .keyNotFound(let key, _): return "missing \"\(key.stringValue)\""
            case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
                let path = context.codingPath.map(\.stringValue).joined(separator: ".")
                return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
            @unknown default: return "\(error)"
            }
        }
    }
}
