import Foundation
import VSPCCore
import VSPCNet
#if canImport(Glibc)
import Glibc
#endif

extension VSPCD {
    /// A `--db` naming a PostgreSQL database: several daemons share it, each a node of a cluster.
    static func isClusterDatabase(_ db: String) -> Bool {
        let lower = db.lowercased()
        return lower.hasPrefix("postgresql://") || lower.hasPrefix("postgres://")
    }

    /// `--db` for the log: a password in the URL is not written out.
    static func loggable(_ db: String) -> String {
        guard isClusterDatabase(db), let scheme = db.range(of: "://"),
              let at = db[scheme.upperBound...].firstIndex(of: "@") else { return db }
        let credentials = db[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return db }
        return String(db[..<colon]) + ":***" + String(db[at...])
    }

    /// This machine's host name: the default `--node`.
    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(cString: buffer)
        return name.isEmpty ? "localhost" : name
    }

    /// The cluster settings (`--node`, `--lease-timeout`, `--cluster-listen` and its TLS) into `config`. Throws a
    /// plain sentence: a link in the clear off loopback, unusable certificates.
    static func configureCluster(_ settings: DaemonSettings, _ config: inout DaemonConfig) throws {
        let node = settings.node ?? hostName()
        guard let listen = Endpoint.parse(settings.clusterListen ?? ":\(DaemonSettings.defaultClusterPort)",
                                          defaultHost: settings.listenHost) else {
            throw ServerError("--cluster-listen must be [host]:port")
        }
        var tls: ClusterLinkTLS?
        if let cert = settings.clusterCert, let key = settings.clusterKey, let ca = settings.clusterCa {
            do {
                tls = try ClusterLinkTLS.load(certificatePath: cert, keyPath: key, caPath: ca)
            } catch {
                throw ServerError("--cluster-cert: \(error)")
            }
        }
        if ["0.0.0.0", "::", ""].contains(listen.host) {
            throw ServerError("--cluster-listen \(listen): the other nodes connect to this address, so it must be one of this host's own (not a wildcard)")
        }
        let link = ClusterLinkConfig(listen: listen, tls: tls)
        if let refusal = link.refusal { throw ServerError("refusing to start: \(refusal)") }
        config.clusterLink = link
        config.concentrator.cluster = ClusterConfig(node: node, leaseTimeout: settings.leaseTimeout,
                                                    linkAddress: listen.description)
    }
}
