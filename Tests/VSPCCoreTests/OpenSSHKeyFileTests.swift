import Foundation
import XCTest
@testable import VSPCCore

final class OpenSSHKeyFileTests: XCTestCase {
    func testDecodesSSHKeygensFileAndReencodesItByteForByte() throws {
        let (key, checkInt) = try OpenSSHKeyFile.decodeWithCheckInt(TestKeys.ed25519PrivateFile)
        XCTAssertEqual(key.comment, "ed25519@test")
        XCTAssertEqual(key.seed.count, 32)
        XCTAssertEqual(OpenSSHKeyFile.ed25519PublicBlob(key.publicKey), TestKeys.blob(TestKeys.ed25519))
        XCTAssertEqual(OpenSSHKeyFile.encode(key, checkInt: checkInt), TestKeys.ed25519PrivateFile)
    }

    func testRoundTrip() throws {
        for comment in ["", "a", "vspcd", String(repeating: "c", count: 13)] {
            let key = OpenSSHKeyFile.Ed25519Key(publicKey: Array(repeating: 7, count: 32), seed: Array(0..<32), comment: comment)
            let text = OpenSSHKeyFile.encode(key, checkInt: 0xDEAD_BEEF)
            XCTAssertEqual(try OpenSSHKeyFile.decodeEd25519(text), key)
            XCTAssertEqual(try OpenSSHKeyFile.decodeEd25519(text.replacingOccurrences(of: "\n", with: "\r\n")), key)
        }
    }

    private func failure(_ text: String) -> String? {
        do {
            _ = try OpenSSHKeyFile.decodeEd25519(text)
            return nil
        } catch {
            return "\(error)"
        }
    }

    private func file(_ bytes: [UInt8]) -> String {
        "-----BEGIN OPENSSH PRIVATE KEY-----\n\(Data(bytes).base64EncodedString())\n-----END OPENSSH PRIVATE KEY-----\n"
    }

    /// The body of a file made by `encode`, with one piece swapped.
    private func structure(cipher: String = "none", count: UInt32 = 1, type: String = "ssh-ed25519",
                           check2: UInt32 = 5, padding: [UInt8] = [1, 2, 3]) -> [UInt8] {
        var secret = SSHWireWriter()
        secret.writeUInt32(5)
        secret.writeUInt32(check2)
        secret.writeString(Array("ssh-ed25519".utf8))
        secret.writeString([UInt8](repeating: 9, count: 32))
        secret.writeString([UInt8](repeating: 1, count: 32) + [UInt8](repeating: 9, count: 32))
        secret.writeString(Array("c".utf8))
        secret.bytes += padding
        var pub = SSHWireWriter()
        pub.writeString(Array(type.utf8))
        pub.writeString([UInt8](repeating: 9, count: 32))
        var w = SSHWireWriter()
        w.bytes = OpenSSHKeyFile.magic
        w.writeString(Array(cipher.utf8))
        w.writeString(Array((cipher == "none" ? "none" : "bcrypt").utf8))
        w.writeString([])
        w.writeUInt32(count)
        w.writeString(pub.bytes)
        w.writeString(secret.bytes)
        return w.bytes
    }

    func testClearFailures() {
        XCTAssertNil(failure(file(structure())))
        XCTAssertEqual(failure(""), "is not an OpenSSH private key (no -----BEGIN OPENSSH PRIVATE KEY----- line)")
        XCTAssertEqual(failure("garbage\0\u{1}"), "is not an OpenSSH private key (no -----BEGIN OPENSSH PRIVATE KEY----- line)")
        XCTAssertEqual(failure("-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n"),
                       #"holds a PEM "EC PRIVATE KEY", not an OpenSSH private key"#)
        XCTAssertEqual(failure("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn$$\n-----END OPENSSH PRIVATE KEY-----"), "is corrupt: bad base64")
        XCTAssertEqual(failure("-----BEGIN OPENSSH PRIVATE KEY-----\n"), "is truncated (no -----END OPENSSH PRIVATE KEY----- line)")
        XCTAssertEqual(failure(file(Array("openssh-key-v2\0".utf8))), "is not an openssh-key-v1 key")
        XCTAssertEqual(failure(file(structure(cipher: "aes256-ctr"))), "is encrypted with a passphrase; vspcd needs an unencrypted key")
        XCTAssertEqual(failure(file(structure(count: 2))), "holds 2 keys; vspcd needs exactly one")
        XCTAssertEqual(failure(file(structure(type: "ecdsa-sha2-nistp256"))), "is a ecdsa-sha2-nistp256 key; vspcd's host key must be ssh-ed25519")
        let corrupt = "is corrupt: not a well-formed openssh-key-v1 structure"
        XCTAssertEqual(failure(file(structure(check2: 6))), corrupt)
        XCTAssertEqual(failure(file(structure(padding: [1, 3]))), corrupt)
        let whole = structure()
        for n in stride(from: OpenSSHKeyFile.magic.count, to: whole.count - 3, by: 1) {
            XCTAssertNotNil(failure(file(Array(whole.prefix(n)))), "truncated to \(n) bytes")
        }
    }
}
