import NIOCore
import VSPCCore

/// The internal link's frames on a channel, through the core's `ClusterLinkCodec`: bytes in, frames out, in
/// the order they came. The codec holds at most one frame (a header and `ClusterLinkCodec.maxPayload` bytes);
/// on the first bad frame it reports the error (the handlers answer with CLOSE and close) and reads no more.
final class LinkFrameHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ClusterLinkFrame

    private var decoder = ClusterLinkCodec.Decoder()
    private var failed = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let bytes = Array(unwrapInboundIn(data).readableBytesView)
        do {
            for frame in try decoder.decode(bytes) {
                // A frame may have closed the link: what follows it is not read.
                guard context.channel.isActive else { return }
                context.fireChannelRead(wrapInboundOut(frame))
            }
        } catch {
            failed = true
            context.fireErrorCaught(error)
        }
    }
}

/// Frames as bytes to write.
enum LinkWire {
    /// A CLOSE's reason is cut to this many bytes (whole characters).
    static let maxReason = 1024

    static func buffer(_ frame: ClusterLinkFrame) -> ByteBuffer {
        // Only an over-long payload fails to encode; HELLO and ACCEPT are small, reasons are cut, DATA is split.
        ByteBuffer(bytes: (try? ClusterLinkCodec.encode(frame)) ?? [])
    }

    static func close(_ reason: String) -> ByteBuffer {
        var cut = ""
        var length = 0
        for character in reason {
            length += character.utf8.count
            guard length <= maxReason else { break }
            cut.append(character)
        }
        return buffer(.close(cut))
    }

    /// Console bytes of any length as DATA frames.
    static func data(_ bytes: ByteBuffer) -> ByteBuffer {
        ByteBuffer(bytes: ClusterLinkCodec.dataFrames(Array(bytes.readableBytesView)))
    }
}
