import Foundation
import NIOCore
import NIOPosix
import VSPCCore
import XCTest
@testable import VSPCNet

/// Issue 14 items 4, 7 and 8 against the in-process SSH server with the real OpenSSH client: per-address limits
/// (clients bound to 127.0.0.2), `from=`, `no-pty`, keepalives and the idle timeout.
final class SSHSourceLimitsTests: SSHTestCase {
    private func hasBanner(_ client: RawClient) -> Bool {
        client.received.starts(with: Array("SSH-2.0-".utf8))
    }

    /// 64 idle sockets from one address used to fill every pre-authentication slot for 30 s.
    func testOneAddressCannotTakeEverySlot() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer(alice.publicLine) {
            $0.sourceLimits.startups = MaxStartups(start: 64, rate: 100, full: 64)
            $0.sourceLimits.perSourceStartups = 4
        }
        let port = server.localAddress!.port!
        let held = try (0..<64).map { _ in try RawClient.connect(port: port, group: group, from: "127.0.0.2") }
        defer { held.forEach { $0.close() } }
        eventually("4 are served, 60 closed") {
            held.filter(hasBanner).count == 4 && held.filter(\.isClosed).count == 60
        }
        XCTAssertEqual(server.unauthenticatedCount(from: IPAddress("127.0.0.2")), 4)
        // Somebody else gets in at once.
        let result = try ssh("web-0", alice, server)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdoutText, whoami("web-0", alice))
        let lines = log.all.filter { $0.contains("connection from 127.0.0.2 refused") }
        XCTAssertEqual(lines, ["warning ssh: connection from 127.0.0.2 refused: 4 connections from this address are waiting to authenticate (further refusals of this address are counted, not logged, for 60 s)"],
                       "one line for 60 refusals")
    }

    func testFailedAttemptsFromOneAddressAreLimited() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let mallory = try makeKey("mallory", ["-t", "ed25519"], comment: "mallory@test")
        let (server, _) = try startServer(alice.publicLine) { $0.sourceLimits.perSourceFailures = 2 }
        for _ in 0..<2 {
            XCTAssertEqual(try ssh("web-0", mallory, server, options: ["-b", "127.0.0.2"]).status, 255)
        }
        eventually("both failures are counted") { server.connectionCount == 0 }
        let refused = try ssh("web-0", alice, server, options: ["-b", "127.0.0.2"])
        XCTAssertEqual(refused.status, 255, "even a good key, from that address, for a while")
        XCTAssertEqual(refused.stdoutText, "")
        XCTAssertTrue(log.all.contains { $0.contains("connection from 127.0.0.2 refused: 2 failed attempts from this address in the last 60 s") },
                      "\(log.all)")
        let other = try ssh("web-0", alice, server)
        XCTAssertEqual(other.status, 0, other.stderr)
    }

    func testFromRestrictsTheClientAddress() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer(#"from="127.0.0.2" "# + alice.publicLine)
        let refused = try ssh("web-0", alice, server)
        XCTAssertEqual(refused.status, 255)
        eventually("the refusal is logged") {
            log.all.contains { $0.contains(#"line 1: the client's address 127.0.0.1 is not in from="127.0.0.2""#) }
        }
        let allowed = try ssh("web-0", alice, server, options: ["-b", "127.0.0.2"])
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        XCTAssertEqual(allowed.stdoutText, whoami("web-0", alice))
    }

    /// `no-pty`: the terminal request is refused. OpenSSH's client gives up when the terminal was demanded (`-t`,
    /// `-tt`), as it does against sshd, and goes on without one when it only asked because stdin is a terminal.
    func testNoPTYRefusesTheTerminal() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer("no-pty " + alice.publicLine)
        let demanded = try ssh("web-0", alice, server, options: ["-tt"], environment: ["TERM": "xterm"])
        XCTAssertEqual(demanded.status, 255)
        XCTAssertTrue(demanded.stderr.contains("PTY allocation request failed"), demanded.stderr)
        XCTAssertTrue(gateway.sessions.allSatisfy { $0.terminal == nil }, "no session ever had a terminal")
        let plain = try ssh("web-0", alice, server, options: ["-T"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertEqual(plain.stdoutText, whoami("web-0", alice))
    }

    func testIdleSessionIsEnded() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer(alice.publicLine) { $0.idleTimeout = .milliseconds(300) }
        let session = try RunningProcess("/usr/bin/ssh", sshArguments("echo", alice, server, options: ["-T"]))
        session.write(Array("x".utf8))
        eventually("the echo") { session.stdout == Array("x".utf8) }
        let result = session.wait()
        XCTAssertEqual(result.status, 124)
        XCTAssertEqual(String(decoding: session.stdout, as: UTF8.self), "x\n[vspcd: no input or output for 300 ms; session ended]\n")
        eventually("the session ended as idle") { gateway.sessions.first?.end == .idle }
        XCTAssertTrue(log.all.contains { $0.contains("ended: no input or output for 300 ms") }, "\(log.all)")
    }

    /// A client that stops answering (its process stopped; the kernel still acknowledges the bytes) is dropped
    /// after three unanswered keepalives; one that answers stays.
    func testDeadClientIsDroppedByKeepalives() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer(alice.publicLine) {
            $0.keepaliveInterval = .milliseconds(200)
            $0.keepaliveCountMax = 3
        }
        let live = try RunningProcess("/usr/bin/ssh", sshArguments("echo", alice, server, options: ["-T"]))
        let dead = try RunningProcess("/usr/bin/ssh", sshArguments("echo", alice, server, options: ["-T"]))
        for process in [live, dead] {
            process.write(Array("x".utf8))
            eventually("the echo") { process.stdout == Array("x".utf8) }
        }
        kill(dead.pid, SIGSTOP)
        eventually("the stopped client is dropped") {
            log.all.contains { $0.contains("did not answer 3 keepalives 200 ms apart; dropped") }
        }
        eventually("its session ends as unresponsive") { gateway.sessions.contains { $0.end == .unresponsive } }
        kill(dead.pid, SIGCONT)
        XCTAssertEqual(dead.wait().status, 255)
        XCTAssertEqual(log.all.filter { $0.contains("keepalives") }.count, 1, "the live client answered every one")
        live.write(Array("y".utf8))
        eventually("the live client still echoes") { live.stdout == Array("xy".utf8) }
        live.closeStdin()
        XCTAssertEqual(live.wait().status, 3)
    }
}
