import Foundation
import NIOSSL
import VSPCCore

/// Mutual TLS on the internal link (`--cluster-cert`, `--cluster-key`, `--cluster-ca`): each daemon listens
/// with its certificate and requires one the CA signed from every node that connects; it connects with the same
/// certificate and verifies the other node's against the CA. No host name check: the node names are in HELLO.
public struct ClusterLinkTLS: Sendable {
    public let server: NIOSSLContext
    public let client: NIOSSLContext

    public static func load(certificatePath: String, keyPath: String, caPath: String) throws -> ClusterLinkTLS {
        let server = try TLSSetup.makeServerContext(certificatePath: certificatePath, keyPath: keyPath,
                                                    clientCAPath: caPath, minimumVersion: .tlsv12)
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
            let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
            let authorities = try NIOSSLCertificate.fromPEMFile(caPath)
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.minimumTLSVersion = .tlsv12
            configuration.certificateChain = chain.map { .certificate($0) }
            configuration.privateKey = .privateKey(key)
            configuration.trustRoots = .certificates(authorities)
            configuration.certificateVerification = .noHostnameVerification
            return ClusterLinkTLS(server: server, client: try NIOSSLContext(configuration: configuration))
        } catch {
            throw TLSSetup.SetupError(description: "cannot use \(certificatePath), \(keyPath) and \(caPath) for the cluster link: \(error)")
        }
    }
}

/// The internal link's address and TLS (`DaemonConfig.clusterLink`, with `concentrator.cluster`).
public struct ClusterLinkConfig: Sendable {
    public var listen: Endpoint
    public var tls: ClusterLinkTLS?

    public init(listen: Endpoint, tls: ClusterLinkTLS?) {
        self.listen = listen
        self.tls = tls
    }

    /// Where a link in the clear may listen: loopback only.
    public var refusal: String? {
        guard tls == nil, !VSPCServer.isLoopback(listen.host) else { return nil }
        return "the cluster link \(listen) is not on loopback: give --cluster-cert, --cluster-key and --cluster-ca (mutual TLS), or listen on 127.0.0.1"
    }
}
