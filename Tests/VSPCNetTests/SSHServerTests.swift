import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import VSPCCore
import XCTest
@testable import VSPCNet

/// The SSH front door driven by the real OpenSSH client, with keys made by ssh-keygen.
final class SSHServerTests: SSHTestCase {
    func testEd25519KeyAndUserNamePassThrough() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer("vms=\"web-*\",read-only \(alice.publicLine)\n")
        let result = try ssh("web-1#com2", alice, server, options: ["-T"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdoutText, whoami("web-1#com2", alice, readOnly: true))
        eventually("the session ends") { gateway.sessions.first?.end != nil }
        XCTAssertEqual(gateway.sessions.map(\.end), [.closed(exitStatus: 0)])
        XCTAssertEqual(gateway.sessions.first?.fingerprint, alice.fingerprint)
        XCTAssertEqual(AuthorizedKeys.parse(alice.publicLine).keys.first?.fingerprint, alice.fingerprint)
        XCTAssertTrue(log.all.contains { $0.contains("authenticated with \(alice.fingerprint) (alice@test) as user web-1#com2") })
    }

    func testECDSAKeys() throws {
        var keys: [Key] = []
        for bits in ["256", "384", "521"] {
            keys.append(try makeKey("ecdsa\(bits)", ["-t", "ecdsa", "-b", bits], comment: "p\(bits)@test"))
        }
        let (server, _) = try startServer(keys.map(\.publicLine).joined(separator: "\n"))
        for key in keys {
            let result = try ssh("web-0", key, server)
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssertEqual(result.stdoutText, whoami("web-0", key))
        }
    }

    func testUnknownKeyIsRefused() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let mallory = try makeKey("mallory", ["-t", "ed25519"], comment: "mallory@test")
        let (server, _) = try startServer(alice.publicLine)
        let result = try ssh("web-0", mallory, server)
        XCTAssertEqual(result.status, 255)
        XCTAssertTrue(result.stderr.contains("Permission denied (publickey)"), result.stderr)
        XCTAssertEqual(result.stdout, [])
        eventually("the refusal is logged") {
            log.all.contains { $0.contains("(user web-0) refused: key ssh-ed25519 \(mallory.fingerprint) is not in the authorized keys") }
        }
        XCTAssertEqual(log.all.filter { $0.hasPrefix("notice") && $0.contains("refused") }.count, 1, "one line per refused connection")

        // Several keys offered on one connection: still one line, naming them all.
        let trudy = try makeKey("trudy", ["-t", "ecdsa"], comment: "trudy@test")
        let both = try ssh("web-1", mallory, server, options: ["-i", trudy.path])
        XCTAssertEqual(both.status, 255)
        eventually("the second refusal is logged") {
            log.all.contains {
                $0.contains("(user web-1) refused: keys ssh-ed25519 \(mallory.fingerprint), ecdsa-sha2-nistp256 \(trudy.fingerprint) are not in the authorized keys")
                    || $0.contains("(user web-1) refused: keys ecdsa-sha2-nistp256 \(trudy.fingerprint), ssh-ed25519 \(mallory.fingerprint) are not in the authorized keys")
            }
        }
        XCTAssertTrue(gateway.sessions.isEmpty)
    }

    func testRSAKeyIsRefusedWithAReason() throws {
        let rita = try makeKey("rita", ["-t", "rsa", "-b", "2048"], comment: "rita@test")
        let keys = AuthorizedKeys.parse(rita.publicLine + "\n")
        XCTAssertEqual(keys.diagnostics.map(\.description),
                       ["line 1: RSA keys are not supported by this server; use ed25519 or ECDSA (rita@test)"])
        let (server, _) = try startServer(rita.publicLine)
        let result = try ssh("web-0", rita, server)
        XCTAssertEqual(result.status, 255)
        XCTAssertTrue(result.stderr.contains("Permission denied (publickey)"), result.stderr)
        eventually("the refusal is logged") {
            log.all.contains { $0.contains("(user web-0) offered no ed25519 or ECDSA key: no key at all, or only keys of a type this server does not support such as RSA; use an ed25519 or ECDSA key") }
        }
        XCTAssertTrue(gateway.sessions.isEmpty)
    }

    /// Issue 15 item 6: a client that offers no key at all is not told only about RSA.
    func testClientWithNoKeyIsToldSo() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer(alice.publicLine)
        let result = try ssh("web-0", alice, server, options: ["-o", "PubkeyAuthentication=no"])
        XCTAssertEqual(result.status, 255)
        eventually("the refusal is logged") {
            log.all.contains { $0.contains("(user web-0) offered no ed25519 or ECDSA key: no key at all, or only keys of a type") }
        }
        XCTAssertTrue(gateway.sessions.isEmpty)
    }

    func testRawBytesRoundTripAndExitStatusWithoutPty() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer(alice.publicLine)
        var input: [UInt8] = []
        for round in 0..<1024 { input += (0...255).map { UInt8(($0 + round) & 0xFF) } }
        input += [0x1D, 0x0D, 0x0A, 0x0D, 0x00, 0xFF, 0xFF, 0x03, 0x04, 0x7E, 0x2E]
        let result = try ssh("echo", alice, server, options: ["-T"], stdin: input)
        XCTAssertEqual(result.status, 3, result.stderr)
        XCTAssertEqual(result.stdout.count, input.count)
        XCTAssertTrue(result.stdout == input, "the bytes came back changed")
        eventually("the session ends") { gateway.sessions.first?.end != nil }
        XCTAssertEqual(gateway.sessions.map(\.end), [.closed(exitStatus: 3)])
        XCTAssertNil(gateway.sessions.first?.terminal)
    }

    func testPtyRequestExecAndRefusal() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer(alice.publicLine)
        var environment = ProcessInfo.processInfo.environment
        environment["TERM"] = "vt220"
        let pty = try ssh("web-0", alice, server, options: ["-tt", "-e", "none"], environment: environment)
        XCTAssertEqual(pty.status, 0, pty.stderr)
        XCTAssertEqual(pty.stdoutText, whoami("web-0", alice, term: "vt220"))
        XCTAssertEqual(gateway.sessions.first?.terminal?.term, "vt220")

        let exec = try ssh("web-0", alice, server, options: ["-T"], command: ["tail", "-n", "5"])
        XCTAssertEqual(exec.status, 0, exec.stderr)
        XCTAssertEqual(exec.stdoutText, whoami("web-0", alice, command: "tail -n 5"))

        let refused = try ssh("refuse", alice, server)
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertEqual(refused.stdoutText, "no such VM\r\n")
    }

    func testPortForwardingIsRefused() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let (server, _) = try startServer(alice.publicLine)
        let result = try ssh("web-0", alice, server, options: ["-W", "127.0.0.1:\(server.localAddress!.port!)"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertEqual(result.stdout, [])
        XCTAssertTrue(gateway.sessions.isEmpty)
        eventually("the refusal is logged") { log.all.contains { $0.contains("asked for a direct-tcpip (port forwarding) channel") } }
    }

    func testHostKeyIsCreatedOnceAndKeptAcrossRestarts() throws {
        let alice = try makeKey("alice", ["-t", "ed25519"], comment: "alice@test")
        let path = "\(dir)/state/ssh/ssh_host_ed25519_key"
        let previous = umask(0)
        let created = try SSHHostKey.loadOrCreate(at: path)
        umask(previous)
        XCTAssertTrue(created.created)
        XCTAssertEqual(created.warnings, [])
        let mode = { (p: String) in ((try? FileManager.default.attributesOfItem(atPath: p))?[.posixPermissions] as? Int) ?? -1 }
        XCTAssertEqual(mode(path), 0o600)
        XCTAssertEqual(mode("\(dir)/state/ssh"), 0o700)
        XCTAssertEqual(mode("\(dir)/state"), 0o700)
        // ssh-keygen reads the file (it refuses a private key others can read) and agrees on the fingerprint.
        XCTAssertEqual(try run("/usr/bin/ssh-keygen", ["-lf", path]).stdoutText.split(separator: " ")[1], Substring(created.fingerprint))
        XCTAssertEqual(try run("/usr/bin/ssh-keygen", ["-y", "-f", path]).stdoutText.split(separator: " ").prefix(2).joined(separator: " "),
                       created.publicKeyText)
        XCTAssertEqual(try String(contentsOfFile: path + ".pub", encoding: .utf8), created.publicKeyText + " vspcd\n")

        let again = try SSHHostKey.loadOrCreate(at: path)
        XCTAssertFalse(again.created)
        XCTAssertEqual(again.fingerprint, created.fingerprint)

        // Two servers in turn, the second with the key loaded again: the client's known_hosts entry still holds.
        let alias = ["-o", "HostKeyAlias=vspcd-test"]
        let (first, _) = try startServer(alice.publicLine, hostKey: created)
        XCTAssertEqual(try ssh("web-0", alice, first, options: alias).status, 0)
        try blocking { await first.stop() }
        let (second, _) = try startServer(alice.publicLine, hostKey: again)
        let strict = try ssh("web-0", alice, second, options: alias + ["-o", "StrictHostKeyChecking=yes"])
        XCTAssertEqual(strict.status, 0, strict.stderr)
        // A different key under the same alias is caught by the client.
        let (other, _) = try startServer(alice.publicLine, hostKey: .ephemeral())
        let changed = try ssh("web-0", alice, other, options: alias + ["-o", "StrictHostKeyChecking=yes"])
        XCTAssertEqual(changed.status, 255)
        XCTAssertTrue(changed.stderr.contains("HOST IDENTIFICATION HAS CHANGED"), changed.stderr)
    }

    func testHostKeyFileProblemsAreClearErrors() throws {
        let corrupt = "\(dir)/corrupt_key"
        try Data("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n".utf8).write(to: URL(fileURLWithPath: corrupt))
        XCTAssertThrowsError(try SSHHostKey.loadOrCreate(at: corrupt)) { error in
            XCTAssertTrue("\(error)".hasPrefix("ssh host key \(corrupt) is not an openssh-key-v1 key; fix it, or remove it"), "\(error)")
        }
        let empty = "\(dir)/empty_key"
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
        XCTAssertThrowsError(try SSHHostKey.loadOrCreate(at: empty)) { error in
            XCTAssertTrue("\(error)".contains("is not an OpenSSH private key"), "\(error)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: empty)).count, 0, "a bad key file is never overwritten")
        let ecdsa = try makeKey("ecdsa_host", ["-t", "ecdsa"], comment: "h")
        XCTAssertThrowsError(try SSHHostKey.loadOrCreate(at: ecdsa.path)) { error in
            XCTAssertTrue("\(error)".contains("is a ecdsa-sha2-nistp256 key; vspcd's host key must be ssh-ed25519"), "\(error)")
        }
        // A key made by ssh-keygen is used as it is; one that others may read stops start-up (issue 14 item 6: it
        // used to get a warning that was never logged), naming the file and its mode.
        let made = try makeKey("keygen_host", ["-t", "ed25519"], comment: "h")
        let loaded = try SSHHostKey.loadOrCreate(at: made.path)
        XCTAssertEqual(loaded.fingerprint, made.fingerprint)
        XCTAssertEqual(loaded.warnings, [])
        for mode: mode_t in [0o644, 0o640, 0o604, 0o620] {
            chmod(made.path, mode)
            XCTAssertThrowsError(try SSHHostKey.loadOrCreate(at: made.path)) { error in
                XCTAssertTrue("\(error)".hasPrefix("ssh host key \(made.path) has mode 0\(String(mode, radix: 8)): it is open to group or others, so it is not used; chmod 600 \(made.path)"), "\(error)")
            }
        }
        chmod(made.path, 0o400)
        XCTAssertEqual(try SSHHostKey.loadOrCreate(at: made.path).fingerprint, made.fingerprint, "0400 is private too")
        XCTAssertThrowsError(try SSHHostKey.loadOrCreate(at: dir)) { error in
            XCTAssertTrue("\(error)".contains("is not a regular file"), "\(error)")
        }
    }
}
