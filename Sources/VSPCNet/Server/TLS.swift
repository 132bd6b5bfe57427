import Foundation
import NIOCore
import NIOEmbedded
import NIOSSL

/// Loads the proxy's TLS certificate and key, and proves they belong together before the daemon starts.
public enum TLSSetup {
    public struct SetupError: Error, CustomStringConvertible {
        public var description: String
    }

    /// With `clientCAPath` (`--http-client-ca`), every client must show a certificate that CA signed, or the
    /// handshake fails. `minimumVersion`: the proxy port takes TLS 1.0 (old ESXi); the HTTP listener 1.2.
    public static func makeServerContext(certificatePath: String, keyPath: String, clientCAPath: String? = nil,
                                         minimumVersion: TLSVersion = .tlsv1) throws -> NIOSSLContext {
        for (what, path) in [("certificate", certificatePath), ("key", keyPath)] {
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw SetupError(description: "TLS \(what) file \(path) does not exist or is not readable")
            }
        }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
        } catch {
            throw SetupError(description: "cannot read a PEM certificate from \(certificatePath): \(error)")
        }
        guard !chain.isEmpty else {
            throw SetupError(description: "no certificate found in \(certificatePath)")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw SetupError(description: "cannot read a PEM private key from \(keyPath): \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = minimumVersion
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw SetupError(description: "the private key in \(keyPath) does not match the certificate in \(certificatePath), or cannot be used with it (\(error))")
        }
        guard selfHandshake(server: context) else {
            throw SetupError(description: "the private key in \(keyPath) does not match the certificate in \(certificatePath)")
        }
        guard let clientCAPath else { return context }
        guard FileManager.default.isReadableFile(atPath: clientCAPath) else {
            throw SetupError(description: "TLS client CA file \(clientCAPath) does not exist or is not readable")
        }
        let authorities: [NIOSSLCertificate]
        do {
            authorities = try NIOSSLCertificate.fromPEMFile(clientCAPath)
        } catch {
            throw SetupError(description: "cannot read a PEM certificate from \(clientCAPath): \(error)")
        }
        guard !authorities.isEmpty else { throw SetupError(description: "no certificate found in \(clientCAPath)") }
        configuration.trustRoots = .certificates(authorities)
        // The server asks for a client certificate and fails the handshake without one that the CA signed.
        configuration.certificateVerification = .noHostnameVerification
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw SetupError(description: "cannot use the client CA in \(clientCAPath): \(error)")
        }
    }

    /// Runs a TLS handshake between this server context and a non-verifying client, in memory.
    /// A key that does not match its certificate fails here rather than on every ESXi connection.
    static func selfHandshake(server: NIOSSLContext) -> Bool {
        var clientConfig = TLSConfiguration.makeClientConfiguration()
        clientConfig.certificateVerification = .none
        guard let clientContext = try? NIOSSLContext(configuration: clientConfig),
              let clientHandler = try? NIOSSLClientHandler(context: clientContext, serverHostname: nil)
        else { return false }
        let serverChannel = EmbeddedChannel()
        let clientChannel = EmbeddedChannel()
        defer {
            // Not finish(): a TLS channel waits for close_notify, which nobody will shuttle any more.
            serverChannel.close(promise: nil)
            clientChannel.close(promise: nil)
        }
        do {
            try serverChannel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: server))
            try clientChannel.pipeline.syncOperations.addHandler(clientHandler)
            let address = try SocketAddress(ipAddress: "127.0.0.1", port: 1)
            serverChannel.connect(to: address, promise: nil)
            clientChannel.connect(to: address, promise: nil)
            func shuttle() throws {
                for _ in 0..<32 {
                    var moved = false
                    while let out = try clientChannel.readOutbound(as: ByteBuffer.self) {
                        try serverChannel.writeInbound(out)
                        moved = true
                    }
                    while let out = try serverChannel.readOutbound(as: ByteBuffer.self) {
                        try clientChannel.writeInbound(out)
                        moved = true
                    }
                    if !moved { return }
                }
            }
            try shuttle()
            // Prove the handshake finished: application data written by the client reaches the server.
            clientChannel.writeAndFlush(ByteBuffer(string: "ok"), promise: nil)
            try shuttle()
            guard let received = try serverChannel.readInbound(as: ByteBuffer.self) else { return false }
            return String(buffer: received) == "ok"
        } catch {
            return false
        }
    }
}
