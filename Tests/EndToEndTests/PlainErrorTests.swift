import Foundation
import VSPCSim
import XCTest

/// Network failures are told as one plain sentence that says what to do, without SwiftNIO's wording.
final class PlainErrorTests: DaemonTestCase {
    private func assertPlain(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        for leak in ["errno", "NIOConnectionError", "SingleConnectionFailure", "bind(descriptor", "IOError"] {
            XCTAssertFalse(text.contains(leak), "\(leak) in: \(text)", file: file, line: line)
        }
        XCTAssertEqual(text.filter { $0 == "(" }.count, text.filter { $0 == ")" }.count, text, file: file, line: line)
    }

    func testClosedAdminPortIsOnePlainSentence() throws {
        let port = try freePort()
        let result = try vspc(["list", "--admin", "127.0.0.1:\(port)"])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.err, "vspc: cannot reach vspcd's admin endpoint at 127.0.0.1:\(port): nothing is listening there; start vspcd, or give --admin the address it listens on\n")
        assertPlain(result.err)
        // --debug adds the raw error, on a line of its own.
        let debug = try vspc(["list", "--admin", "127.0.0.1:\(port)", "--debug"])
        XCTAssertTrue(debug.err.hasPrefix("vspc: debug: "), debug.err)
        XCTAssertTrue(debug.err.hasSuffix(result.err), debug.err)
    }

    func testMissingAdminSocketSaysSo() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vspcd-absent-\(UUID().uuidString).sock").path
        let result = try vspc(["status", "--admin", "unix:\(path)"])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.err, "vspc: cannot reach vspcd's admin endpoint at unix:\(path): no such socket; start vspcd, or give --admin the path it listens on\n")
    }

    func testPortInUseIsSaidPlainly() async throws {
        let held = try HeldPort()
        defer { held.close() }
        for (flag, what) in [("--metrics", "the HTTP port"), ("--http", "the HTTP port")] {
            let daemon = try makeDaemon()
            daemon.extraArguments = [flag, "127.0.0.1:\(held.port)"]
            // The admin port may answer before the HTTP port fails: what counts is that vspcd then stops.
            do { try await daemon.start() } catch {}
            let deadline = Date().addingTimeInterval(30)
            while daemon.process?.isRunning == true, Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
            XCTAssertEqual(daemon.process?.isRunning, false, "vspcd kept running with \(flag) on a port in use")
            let line = daemon.log.split(separator: "\n").first { $0.contains("cannot listen on") }.map(String.init) ?? ""
            XCTAssertTrue(line.contains("cannot listen on \(what) 127.0.0.1:\(held.port): another process already listens there; stop it, or choose another port or path"), daemon.log)
            assertPlain(line)
        }
    }
}

/// A TCP port on 127.0.0.1 with a listener on it, held until `close`.
final class HeldPort {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        guard bound == 0, listen(fd, 1) == 0 else { throw SimError("cannot hold a port") }
        withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
    }

    func close() { _ = Glibc.close(fd) }
}
