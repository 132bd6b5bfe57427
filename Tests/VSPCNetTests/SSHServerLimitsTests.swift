import Foundation
import NIOCore
import NIOPosix
import VSPCCore
import XCTest
@testable import VSPCNet

/// Bounds of the SSH front door: authentication timeout, connections waiting to authenticate, a client that stops
/// reading, and reloads of the authorized keys.
final class SSHServerLimitsTests: SSHTestCase {
    private func hasBanner(_ client: RawClient) -> Bool {
        client.received.starts(with: Array("SSH-2.0-".utf8))
    }

    func testUnauthenticatedConnectionTimesOut() throws {
        let (server, _) = try startServer("") { $0.authenticationTimeout = .milliseconds(300) }
        let client = try RawClient.connect(port: server.localAddress!.port!, group: group)
        eventually("the server closes the silent connection") { client.isClosed }
        XCTAssertTrue(hasBanner(client), String(decoding: client.received, as: UTF8.self))
        eventually("the connection is forgotten") { server.connectionCount == 0 && server.unauthenticatedCount == 0 }
        XCTAssertTrue(log.all.contains { $0.contains("did not authenticate within 300 ms; closed") }, "\(log.all)")
    }

    func testAtMostNConnectionsWaitToAuthenticate() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer(alice.publicLine) { $0.maxUnauthenticated = 2 }
        let port = server.localAddress!.port!
        let first = try RawClient.connect(port: port, group: group)
        let second = try RawClient.connect(port: port, group: group)
        eventually("both get the server's version line") { hasBanner(first) && hasBanner(second) }
        XCTAssertEqual(server.unauthenticatedCount, 2)

        let third = try RawClient.connect(port: port, group: group)
        eventually("the third is closed") { third.isClosed }
        XCTAssertEqual(third.received, [], "closed before the SSH handshake")
        XCTAssertTrue(log.all.contains { $0.contains("2 connections are waiting to authenticate; refusing new ones") })

        first.close()
        eventually("the first is forgotten") { server.unauthenticatedCount == 1 }
        let fourth = try RawClient.connect(port: port, group: group)
        eventually("a new one is served again") { hasBanner(fourth) }
        second.close()
        fourth.close()
        eventually("all are forgotten") { server.connectionCount == 0 && server.unauthenticatedCount == 0 }

        // An authenticated connection does not count against the limit.
        let session = try RunningProcess("/usr/bin/ssh", sshArguments("echo", alice, server, options: ["-T"]))
        session.write(Array("x".utf8))
        eventually("the echo") { session.stdout == Array("x".utf8) }
        XCTAssertEqual(server.unauthenticatedCount, 0)
        let others = try (0..<2).map { _ in try RawClient.connect(port: port, group: group) }
        eventually("two more wait to authenticate") { others.allSatisfy(hasBanner) }
        session.closeStdin()
        XCTAssertEqual(session.wait().status, 3)
        others.forEach { $0.close() }
    }

    func testClientThatStopsReadingIsDropped() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer(alice.publicLine) { $0.sessionOutputLimit = 256 * 1024 }
        // ssh's stdout is a pipe nobody reads: it fills, ssh stops reading the socket, and output queues up.
        let stuck = try RunningProcess("/usr/bin/ssh", sshArguments("flood", alice, server, options: ["-T"]), readStdout: false)
        defer { stuck.terminate() }
        eventually("the session is dropped", timeout: 120) { gateway.sessions.first?.end == .outputOverflow }
        // Others are still served.
        let result = try ssh("web-0", alice, server)
        XCTAssertEqual(result.status, 0, result.stderr)
    }

    func testReloadKeepsSessionsAndAppliesToNewConnections() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let bob = try makeKey("bob", ["-t", "ecdsa"], comment: "bob@test")
        let (server, holder) = try startServer(alice.publicLine)
        let session = try RunningProcess("/usr/bin/ssh", sshArguments("echo", alice, server, options: ["-T"]))
        session.write(Array("one\n".utf8))
        eventually("the echo") { session.stdout == Array("one\n".utf8) }

        let path = "\(dir)/authorized_keys"
        try Data("# alice left\n\(bob.publicLine)\nbogus line\n".utf8).write(to: URL(fileURLWithPath: path))
        let reloaded = try AuthorizedKeysHolder.load(path: path)
        XCTAssertEqual(reloaded.diagnostics.map(\.description), [#"line 3: unknown key type or option "bogus""#])
        holder.replace(with: reloaded)

        session.write(Array("two\n".utf8))
        eventually("the open session still echoes") { session.stdout == Array("one\ntwo\n".utf8) }
        XCTAssertEqual(try ssh("web-0", alice, server).status, 255, "alice's key is gone for new connections")
        let asBob = try ssh("web-0", bob, server)
        XCTAssertEqual(asBob.status, 0, asBob.stderr)
        XCTAssertEqual(asBob.stdoutText, whoami("web-0", bob))

        session.closeStdin()
        XCTAssertEqual(session.wait().status, 3)
        XCTAssertThrowsError(try AuthorizedKeysHolder.load(path: "\(dir)/missing")) { error in
            XCTAssertTrue("\(error)".hasPrefix("cannot read authorized keys \(dir)/missing: "), "\(error)")
        }
    }

    func testStopEndsSessions() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer(alice.publicLine)
        let session = try RunningProcess("/usr/bin/ssh", sshArguments("echo", alice, server, options: ["-T"]))
        session.write(Array("x".utf8))
        eventually("the echo") { session.stdout == Array("x".utf8) }
        try blocking { await server.stop() }
        eventually("the session ends") { gateway.sessions.first?.end == .serverStopped }
        XCTAssertEqual(session.wait().status, 255)
        // The client may exit before the server's close has run on its loop: wait for the count, then assert it.
        eventually("the server has no connection left") { server.connectionCount == 0 }
        XCTAssertEqual(server.connectionCount, 0)
    }

    /// Sessions multiplexed over one connection (OpenSSH's ControlMaster) are bounded per connection.
    func testSessionsPerConnectionAreBounded() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer(alice.publicLine) { $0.maxSessionsPerConnection = 2 }
        let control = "\(dir)/control"
        let master = try RunningProcess("/usr/bin/ssh", sshArguments("echo", alice, server, options: ["-M", "-S", control, "-N"]))
        defer { master.terminate() }
        eventually("the master connection is up") { FileManager.default.fileExists(atPath: control) }
        func session() throws -> RunningProcess {
            try RunningProcess("/usr/bin/ssh", sshArguments("echo", alice, server, options: ["-S", control, "-o", "ControlMaster=no", "-T"]))
        }
        let first = try session()
        let second = try session()
        for (process, text) in [(first, "1"), (second, "2")] {
            process.write(Array(text.utf8))
            eventually("session \(text) echoes") { process.stdout == Array(text.utf8) }
        }
        let third = try session()
        third.closeStdin()
        let refused = third.wait()
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("Session open refused by peer"), refused.stderr)
        XCTAssertEqual(server.connectionCount, 1)
        eventually("the refusal is logged") { log.all.contains { $0.contains("asked for more than 2 sessions at once; refused") } }

        first.closeStdin()
        XCTAssertEqual(first.wait().status, 3)
        let fourth = try session()
        fourth.write(Array("4".utf8))
        eventually("a new session is served again") { fourth.stdout == Array("4".utf8) }
        fourth.closeStdin()
        second.closeStdin()
        XCTAssertEqual(fourth.wait().status, 3)
        XCTAssertEqual(second.wait().status, 3)
    }
}
