import Foundation
import NIOCore
import VSPCCore

/// One frame of the internal link between nodes: `[type u8][length u32 BE][payload]`, the payload at most
/// `LinkFrame.maxPayload` bytes. A minimal codec for the driver's handlers; every input is bounded.
enum LinkFrame: Equatable {
    /// X -> O: the node X asks for a feed of the console, from what it printed since the claim at `sinceEpoch`.
    case hello(LinkHello)
    /// O -> X: the owner accepted, at this epoch.
    case accept(node: String, epoch: Int64)
    /// Console output (O -> X) or input for the VM (X -> O), raw.
    case data([UInt8])
    /// The end, with its reason.
    case close(String)

    static let maxPayload = 64 * 1024
    static let headerLength = 5

    enum Kind: UInt8 {
        case hello = 1, accept = 2, data = 3, close = 4
    }

    /// Writes the frame; DATA longer than `maxPayload` goes as several frames.
    func write(to buffer: inout ByteBuffer) {
        switch self {
        case .hello(let hello):
            Self.put(.hello, Array((try? JSONEncoder().encode(hello)) ?? Data()), into: &buffer)
        case let .accept(node, epoch):
            Self.put(.accept, Array((try? JSONEncoder().encode(LinkAccept(node: node, epoch: epoch))) ?? Data()), into: &buffer)
        case .data(let bytes):
            var offset = 0
            repeat {
                let end = min(bytes.count, offset + Self.maxPayload)
                Self.put(.data, bytes[offset..<end], into: &buffer)
                offset = end
            } while offset < bytes.count
        case .close(let reason):
            Self.put(.close, Array(reason.utf8.prefix(1024)), into: &buffer)
        }
    }

    private static func put<C: Collection>(_ kind: Kind, _ payload: C, into buffer: inout ByteBuffer) where C.Element == UInt8 {
        buffer.writeInteger(kind.rawValue)
        buffer.writeInteger(UInt32(payload.count))
        buffer.writeBytes(payload)
    }

    var buffer: ByteBuffer {
        var buffer = ByteBuffer()
        write(to: &buffer)
        return buffer
    }
}

struct LinkHello: Codable, Equatable {
    var node: String
    var uuid: String
    var label: String
    var sinceEpoch: Int64?
}

struct LinkAccept: Codable, Equatable {
    var node: String
    var epoch: Int64
}

/// Why a peer's frames were refused.
struct LinkFrameError: Error, CustomStringConvertible, Equatable {
    var description: String
}

/// Splits the link's bytes into frames; an unknown type, an oversize length or a malformed HELLO/ACCEPT is an
/// error (the handler closes the connection).
struct LinkFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = LinkFrame

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.next(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }

    /// The next whole frame of `buffer` (consumed), nil if it is not all there yet.
    static func next(_ buffer: inout ByteBuffer) throws -> LinkFrame? {
        guard let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self) else { return nil }
        guard let kind = LinkFrame.Kind(rawValue: type) else {
            throw LinkFrameError(description: "unknown link frame type \(type)")
        }
        guard length <= LinkFrame.maxPayload else {
            throw LinkFrameError(description: "link frame of \(length) bytes (at most \(LinkFrame.maxPayload))")
        }
        guard buffer.readableBytes >= LinkFrame.headerLength + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: LinkFrame.headerLength)
        let payload = buffer.readBytes(length: Int(length)) ?? []
        switch kind {
        case .hello:
            guard let hello = try? JSONDecoder().decode(LinkHello.self, from: Data(payload)),
                  !hello.node.isEmpty, !hello.uuid.isEmpty else {
                throw LinkFrameError(description: "malformed HELLO")
            }
            return .hello(hello)
        case .accept:
            guard let accept = try? JSONDecoder().decode(LinkAccept.self, from: Data(payload)) else {
                throw LinkFrameError(description: "malformed ACCEPT")
            }
            return .accept(node: accept.node, epoch: accept.epoch)
        case .data:
            return .data(payload)
        case .close:
            return .close(String(decoding: payload, as: UTF8.self))
        }
    }
}
