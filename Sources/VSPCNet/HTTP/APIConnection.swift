import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import NIOSSL

/// TLS on the HTTP listener (`--http-cert`, `--http-key`): the handshake runs before the HTTP handlers, behind
/// the admission (a refused connection is answered and closed before any TLS).
struct APITLSChannel<Inner: ServerChildChannel>: ServerChildChannel {
    typealias Value = Inner.Value
    let inner: Inner
    /// nil: plain HTTP.
    let tls: NIOSSLContext?

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        if let tls {
            do {
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }
        return inner.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// Puts what the connection knows of its client on each request head, for the API's audit: the client's
/// address and, with `--http-client-ca`, its certificate's subject. Fields of those names that
/// the client sent are removed first, so a request can never speak for itself.
final class APIRequestFacts: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    static let peerField = HTTPField.Name("vspcd-peer")!
    static let subjectField = HTTPField.Name("vspcd-client-subject")!

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        head.headerFields[Self.peerField] = nil
        head.headerFields[Self.subjectField] = nil
        head.headerFields[Self.peerField] = PeerAddress.describe(context.channel.remoteAddress)
        if let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self),
            let der = try? tls.peerCertificate?.toDERBytes(), let subject = APICertificateSubject.subject(der: der)
        {
            head.headerFields[Self.subjectField] = Self.fieldSafe(subject)
        }
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }

    /// Printable ASCII only, at most 256 characters (a certificate's name may hold anything).
    static func fieldSafe(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.prefix(256).map { (0x20..<0x7F).contains($0.value) ? $0 : "?" }))
    }
}
