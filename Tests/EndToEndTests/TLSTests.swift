import Foundation
import VSPCCore
import VSPCClient
import VSPCSim
import VSPCStore
import XCTest

/// TLS on the proxy port.
final class TLSTests: DaemonTestCase {
    func testVMOverTLS() async throws {
        let daemon = try await startDaemon(["--ssl", "--ssl-cert", fixture("test-cert.pem"), "--ssl-key", fixture("test-key.pem")])
        let uuid = testUUID(30)
        let vm = try await SimulatedVM.connect(port: daemon.proxyPort, uuid: uuid, name: "secure", tls: true)
        defer { vm.close() }
        let port = try await daemon.port(of: uuid)
        let client = try await SimulatedClient.connect(port: port)
        defer { client.close() }
        try await daemon.waitForList("client") { $0.first?.clients == 1 }
        vm.output([0x00, 0xFF, 0x11, 0x41])
        try await client.waitForData(count: 4)
        XCTAssertEqual(client.data, [0x00, 0xFF, 0x11, 0x41])
        // A plain (non-TLS) connection costs only itself.
        let plain = try await RawPeer.connect(port: daemon.proxyPort)
        plain.write(raw: [0xFF, 0xFB, 0x25] + Array("not a TLS record at all\r\n".utf8))
        try await plain.waitForClose()
        vm.output([0x42])
        try await client.waitForData(count: 5)
    }

    func testMissingOrMismatchedCertificateIsAClearStartupError() async throws {
        let missing = try makeDaemon(["--ssl", "--ssl-cert", "/nonexistent/cert.pem", "--ssl-key", fixture("test-key.pem")])
        do {
            try await missing.start(timeout: 10)
            XCTFail("vspcd started without its certificate")
        } catch {
            XCTAssertTrue(missing.log.contains("/nonexistent/cert.pem does not exist"), missing.log)
        }
        let mismatched = try makeDaemon(["--ssl", "--ssl-cert", fixture("test-cert.pem"), "--ssl-key", fixture("other-key.pem")])
        do {
            try await mismatched.start(timeout: 10)
            XCTFail("vspcd started with a key that does not match its certificate")
        } catch {
            XCTAssertTrue(mismatched.log.contains("does not match the certificate"), mismatched.log)
        }
    }
}

/// A blocking socket that connects and never reads, or listens and never accepts.
final class StuckSocket {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var size: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var addr = Self.address(port)
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else { throw SimError("connect failed") }
    }

    init(listenOn port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        // A port of an earlier test's range may still be in TIME_WAIT; like the daemon, take it anyway.
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = Self.address(port)
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0, listen(fd, 1) == 0 else { throw SimError("cannot occupy port \(port)") }
    }

    static func address(_ port: Int) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return addr
    }

    func close() { _ = Glibc.close(fd) }
}
