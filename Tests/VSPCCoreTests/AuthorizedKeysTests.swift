import Foundation
import XCTest
@testable import VSPCCore

final class AuthorizedKeysTests: XCTestCase {
    private func one(_ line: String, file: StaticString = #filePath, lineNo: UInt = #line) -> AuthorizedKey? {
        let parsed = AuthorizedKeys.parse(line)
        XCTAssertEqual(parsed.problems, [], file: file, line: lineNo)
        XCTAssertEqual(parsed.keys.count, 1, file: file, line: lineNo)
        return parsed.keys.first
    }

    private func problem(_ line: String, file: StaticString = #filePath, lineNo: UInt = #line) -> String? {
        let parsed = AuthorizedKeys.parse(line)
        XCTAssertEqual(parsed.keys, [], "expected the line to be skipped", file: file, line: lineNo)
        XCTAssertEqual(parsed.problems.count, 1, file: file, line: lineNo)
        XCTAssertEqual(parsed.problems.first?.line, 1, file: file, line: lineNo)
        return parsed.problems.first?.message
    }

    func testAcceptedKeyTypes() throws {
        let file = """
            ssh-ed25519 \(TestKeys.ed25519) alice@laptop
            ecdsa-sha2-nistp256 \(TestKeys.p256) bob
            ecdsa-sha2-nistp384 \(TestKeys.p384)
            ecdsa-sha2-nistp521 \(TestKeys.p521)   carol  at   work  \t
            """
        let parsed = AuthorizedKeys.parse(file)
        XCTAssertEqual(parsed.problems, [])
        XCTAssertEqual(parsed.keys.map(\.keyType), ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"])
        XCTAssertEqual(parsed.keys.map(\.comment), ["alice@laptop", "bob", "", "carol  at   work"])
        XCTAssertEqual(parsed.keys.map(\.line), [1, 2, 3, 4])
        XCTAssertEqual(parsed.keys.map(\.blob), [TestKeys.ed25519, TestKeys.p256, TestKeys.p384, TestKeys.p521].map(TestKeys.blob))
        XCTAssertTrue(parsed.keys.allSatisfy { $0.isUsable && $0.vms == nil && !$0.readOnly })
        XCTAssertEqual(parsed.keys[0].publicKeyText, "ssh-ed25519 \(TestKeys.ed25519)")
        XCTAssertEqual(parsed.usableKeys.count, 4)
        XCTAssertEqual(parsed.key(forBlob: TestKeys.blob(TestKeys.p384))?.line, 3)
        XCTAssertNil(parsed.key(forBlob: TestKeys.blob(TestKeys.rsa)))
        XCTAssertEqual(parsed.diagnostics, [])
    }

    func testVMsAndReadOnly() throws {
        let key = try XCTUnwrap(one(#"vms="web-*,db-0?",read-only ssh-ed25519 \#(TestKeys.ed25519) alice"#))
        XCTAssertEqual(key.vms, ["web-*", "db-0?"])
        XCTAssertTrue(key.readOnly)
        XCTAssertEqual(key.comment, "alice")
        XCTAssertTrue(key.permits(vmName: "web-1", uuid: "514d000000000000-0000000000000000"))
        XCTAssertTrue(key.permits(vmName: "db-01", uuid: "x"))
        XCTAssertFalse(key.permits(vmName: "db-011", uuid: "x"))
        XCTAssertFalse(key.permits(vmName: "mail", uuid: "514d000000000000-0000000000000000"))
        XCTAssertFalse(key.permits(vmName: "WEB-1", uuid: "x"), "names are case-sensitive")

        let upper = try XCTUnwrap(one(#"READ-ONLY,VMS="a" ssh-ed25519 \#(TestKeys.ed25519)"#))
        XCTAssertEqual(upper.vms, ["a"])
        XCTAssertTrue(upper.readOnly)
    }

    func testQuotedValues() throws {
        let key = try XCTUnwrap(one(#"no-pty,vms="a b, c,\"q\"x" ssh-ed25519 \#(TestKeys.ed25519) c"#))
        XCTAssertEqual(key.vms, ["a b", "c", "\"q\"x"])
        XCTAssertFalse(key.readOnly)
        // A quoted value with commas, spaces and \" is read whole, so the option it belongs to is the one named.
        XCTAssertEqual(problem(#"command="echo \"hi, there\" \\ ok",vms="a" ssh-ed25519 \#(TestKeys.ed25519) c"#),
                       #"option "command" is not supported by this server; the line is skipped rather than give the key more access than it says"#)
        // Leading blanks, empty glob items and spaces around them.
        let spaced = try XCTUnwrap(one("  \tvms=\" web-* ,, db \" ssh-ed25519 \(TestKeys.ed25519)"))
        XCTAssertEqual(spaced.vms, ["web-*", "db"])
    }

    /// Issue 14 item 4: OpenSSH options this server does not implement used to be ignored, so a `command=` or
    /// `restrict` key got a read-write console. Now each makes its line skipped, naming the line and the option.
    func testUnimplementedOpenSSHOptionsSkipTheLine() throws {
        let k = TestKeys.ed25519
        let unsupported = ["command=\"uptime\"", "environment=\"A=B\"", "permitopen=\"host:22\"", "permitlisten=\"1234\"",
                           "principals=\"x\"", "tunnel=\"1\"", "cert-authority", "verify-required", "no-touch-required",
                           "agent-forwarding", "port-forwarding", "X11-forwarding", "user-rc", "Command=\"x\""]
        for option in unsupported {
            let name = String(option.prefix { $0 != "=" })
            let parsed = AuthorizedKeys.parse("ssh-ed25519 \(k) ok\nvms=\"a\",\(option) ssh-ed25519 \(k) skipped\n")
            XCTAssertEqual(parsed.keys.map(\.comment), ["ok"], option)
            XCTAssertEqual(parsed.diagnostics.map(\.description), [
                "line 2: option \"\(name)\" is not supported by this server; the line is skipped rather than give the key more access than it says",
            ], option)
        }
        // Options that only forbid what this server never offers are accepted.
        let line = "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc ssh-ed25519 \(k) d"
        let key = try XCTUnwrap(one(line))
        XCTAssertNil(key.vms)
        XCTAssertFalse(key.readOnly)
        XCTAssertFalse(key.noPTY)
    }

    func testRestrictNoPTYAndReadWrite() throws {
        let k = TestKeys.ed25519
        func flags(_ options: String) throws -> (readOnly: Bool, noPTY: Bool) {
            let key = try XCTUnwrap(one("\(options) ssh-ed25519 \(k) x"))
            return (key.readOnly, key.noPTY)
        }
        XCTAssertTrue(try flags("restrict") == (true, true), "restrict: read-only, no terminal")
        XCTAssertTrue(try flags("restrict,read-write") == (false, true))
        XCTAssertTrue(try flags("restrict,pty") == (true, false))
        XCTAssertTrue(try flags("pty,restrict,read-write") == (false, false), "order does not matter")
        XCTAssertTrue(try flags("restrict,pty,no-pty") == (true, true), "no-pty wins over pty")
        XCTAssertTrue(try flags("no-pty") == (false, true))
        XCTAssertTrue(try flags("read-write") == (false, false))
        XCTAssertTrue(try flags("RESTRICT,Read-Only") == (true, true))
        XCTAssertEqual(problem("read-only,read-write ssh-ed25519 \(k)"), "options read-only and read-write contradict each other")
        XCTAssertEqual(problem("restrict=\"x\" ssh-ed25519 \(k)"), #"option "restrict" takes no value"#)
    }

    func testRefusedKeyTypes() throws {
        let file = """
            ssh-rsa \(TestKeys.rsa) rita@old
            ssh-dss \(TestKeys.dsa)
            sk-ssh-ed25519@openssh.com \(TestKeys.ed25519) fido
            ssh-ed25519-cert-v01@openssh.com \(TestKeys.ed25519) cert
            vms="web-*" ssh-rsa \(TestKeys.rsa) rita@new
            """
        let parsed = AuthorizedKeys.parse(file)
        XCTAssertEqual(parsed.problems, [])
        XCTAssertEqual(parsed.keys.count, 5)
        XCTAssertEqual(parsed.keys[0].refusal, "RSA keys are not supported by this server; use ed25519 or ECDSA")
        XCTAssertEqual(parsed.keys[0].blob, TestKeys.blob(TestKeys.rsa))
        XCTAssertEqual(parsed.keys[1].refusal, "DSA keys are not supported by this server; use ed25519 or ECDSA")
        XCTAssertEqual(parsed.keys[2].refusal?.contains("FIDO"), true)
        XCTAssertEqual(parsed.keys[3].refusal?.contains("certificates"), true)
        XCTAssertEqual(parsed.keys[4].vms, ["web-*"])
        XCTAssertTrue(parsed.keys.allSatisfy { !$0.isUsable })
        XCTAssertEqual(parsed.usableKeys, [])
        XCTAssertNil(parsed.key(forBlob: TestKeys.blob(TestKeys.rsa)))
        XCTAssertNil(parsed.key(forBlob: TestKeys.blob(TestKeys.ed25519)), "an sk- or cert line does not authorize the plain key")
        XCTAssertFalse(parsed.keys[4].permits(vmName: "web-1", uuid: "x"))
        XCTAssertEqual(parsed.diagnostics.first?.description,
                       "line 1: RSA keys are not supported by this server; use ed25519 or ECDSA (rita@old)")
        XCTAssertEqual(parsed.diagnostics.map(\.line), [1, 2, 3, 4, 5])
    }

    func testMalformedLines() {
        let k = TestKeys.ed25519
        let cases: [(String, String)] = [
            ("bogus=\"x\" ssh-ed25519 \(k)", #"unknown option "bogus""#),
            ("ssh-foo \(k) x", #"unknown key type or option "ssh-foo""#),
            ("vms=\"a\" ssh-foo \(k) x", #"unknown key type "ssh-foo""#),
            ("vms=\"web-* ssh-ed25519 \(k)", #"unterminated quote in option "vms""#),
            ("vms=\"a\\\" ssh-ed25519 \(k)", #"unterminated quote in option "vms""#),
            ("vms=web ssh-ed25519 \(k)", #"option "vms" needs a quoted value"#),
            ("vms ssh-ed25519 \(k)", #"option "vms" needs a value (vms="...")"#),
            ("read-only=\"yes\" ssh-ed25519 \(k)", #"option "read-only" takes no value"#),
            ("vms=\"\" ssh-ed25519 \(k)", "option vms lists no VM (leave it out to allow every VM)"),
            ("vms=\" , \" ssh-ed25519 \(k)", "option vms lists no VM (leave it out to allow every VM)"),
            ("vms=\"*,!db-*\" ssh-ed25519 \(k)", #"negated VM patterns ("!db-*") are not supported in vms"#),
            ("vms=\"a\",vms=\"b\" ssh-ed25519 \(k)", "option vms is given twice"),
            ("vms=\"a\"x ssh-ed25519 \(k)", #"unexpected character after option "vms""#),
            (",vms=\"a\" ssh-ed25519 \(k)", "empty option in the options"),
            ("vms=\"a\",, ssh-ed25519 \(k)", "empty option in the options"),
            ("vms=\"a\"", "no key after the options"),
            ("vms=\"a\",read-only", "no key after the options"),
            ("read-only ", "no key after the options"),
            ("ssh-ed25519", "no key data after ssh-ed25519"),
            ("ssh-ed25519   ", "no key data after ssh-ed25519"),
            ("ssh-ed25519 AAAA$$$$ x", "the ssh-ed25519 key data is not valid base64"),
            ("ssh-ed25519 \(k.dropLast(1)) x", "the ssh-ed25519 key data is not valid base64"),
            ("ssh-ed25519 \(k.dropLast(4)) x", "the key data is not a valid ssh-ed25519 key"),
            ("ssh-ed25519 \(TestKeys.p256) x", "the key data is a ecdsa-sha2-nistp256 key, not ssh-ed25519"),
            ("ecdsa-sha2-nistp384 \(TestKeys.p256) x", "the key data is a ecdsa-sha2-nistp256 key, not ecdsa-sha2-nistp384"),
            ("ssh-ed25519 AAAA x", "the key data is not a valid ssh-ed25519 key"),
            ("ssh-ed25519 \(Data(TestKeys.blob(k).dropLast()).base64EncodedString())", "the key data is not a valid ssh-ed25519 key"),
            ("ssh-ed25519 \(Data(TestKeys.blob(k) + [0]).base64EncodedString())", "the key data is not a valid ssh-ed25519 key"),
            ("from=\"10.0.0.0/33\" ssh-ed25519 \(k)", #"option from: "10.0.0.0/33" is not a valid address or network"#),
            ("from=\"*.example.com\" ssh-ed25519 \(k)",
             #"option from names "*.example.com", which is not an address or network; this server does not look up host names, so the line is skipped"#),
            ("from=\"\" ssh-ed25519 \(k)", "option from lists no address"),
            ("from=\"!\" ssh-ed25519 \(k)", "option from has an empty negated entry"),
            ("from=\"1.2.3.4\",from=\"1.2.3.5\" ssh-ed25519 \(k)", "option from is given twice"),
            ("from ssh-ed25519 \(k)", #"option "from" needs a value (from="...")"#),
            ("expiry-time=\"2030-01-01\" ssh-ed25519 \(k)",
             #"option expiry-time: "2030-01-01" is not a time (YYYYMMDD[HHMM[SS]][Z])"#),
            ("expiry-time=\"20230229\" ssh-ed25519 \(k)",
             #"option expiry-time: "20230229" is not a time (YYYYMMDD[HHMM[SS]][Z])"#),
            ("expiry-time=\"20300101\",expiry-time=\"20300102\" ssh-ed25519 \(k)", "option expiry-time is given twice"),
            ("cert-authority ssh-ed25519 \(k)",
             #"option "cert-authority" is not supported by this server; the line is skipped rather than give the key more access than it says"#),
            ("verify-required ssh-ed25519 \(k)",
             #"option "verify-required" is not supported by this server; the line is skipped rather than give the key more access than it says"#),
            ("vms=\"uuid:\" ssh-ed25519 \(k)", #"uuid glob "uuid:" in vms must be hex digits, -, * and ?"#),
            ("vms=\"uuid:web-*\" ssh-ed25519 \(k)", #"uuid glob "uuid:web-*" in vms must be hex digits, -, * and ?"#),
        ]
        for (line, expected) in cases {
            XCTAssertEqual(problem(line), expected, "for: \(line)")
        }
    }

    func testBadECDSACurveAndPoint() {
        var w = SSHWireWriter()
        w.writeString(Array("ecdsa-sha2-nistp256".utf8))
        w.writeString(Array("nistp384".utf8))
        w.writeString([4] + [UInt8](repeating: 1, count: 64))
        XCTAssertEqual(problem("ecdsa-sha2-nistp256 \(Data(w.bytes).base64EncodedString())"),
                       "the key data is not a valid ecdsa-sha2-nistp256 key")
        var v = SSHWireWriter()
        v.writeString(Array("ecdsa-sha2-nistp256".utf8))
        v.writeString(Array("nistp256".utf8))
        v.writeString([2] + [UInt8](repeating: 1, count: 64))
        XCTAssertEqual(problem("ecdsa-sha2-nistp256 \(Data(v.bytes).base64EncodedString())"),
                       "the key data is not a valid ecdsa-sha2-nistp256 key")
        var huge = SSHWireWriter()
        huge.writeUInt32(0xFFFF_FFFF)
        XCTAssertEqual(problem("ssh-ed25519 \(Data(huge.bytes).base64EncodedString())"),
                       "the key data is not a valid ssh-ed25519 key")
    }

    func testCommentsBlankLinesCRLFAndLineNumbers() {
        let file = "# people\r\n\r\n   \n\t# indented comment\nssh-ed25519 \(TestKeys.ed25519) alice\r\n"
            + "bogus\r\nssh-ed25519 \(TestKeys.ed25519) second\r\n#last"
        let parsed = AuthorizedKeys.parse(file)
        XCTAssertEqual(parsed.keys.map(\.line), [5, 7])
        XCTAssertEqual(parsed.keys.map(\.comment), ["alice", "second"])
        XCTAssertEqual(parsed.problems.map(\.line), [6])
        XCTAssertEqual(parsed.key(forBlob: TestKeys.blob(TestKeys.ed25519))?.comment, "alice", "the first line wins")
        XCTAssertEqual(AuthorizedKeys.parse("").keys, [])
        XCTAssertEqual(AuthorizedKeys.parse("").problems, [])
        XCTAssertEqual(AuthorizedKeys.parse("\n\n\r\n").problems, [])
        XCTAssertEqual(AuthorizedKeys.parse("ssh-ed25519 \(TestKeys.ed25519)").keys.count, 1, "no final newline")
    }

    func testFirstUsableLineDecides() {
        let file = """
            sk-ssh-ed25519@openssh.com \(TestKeys.ed25519) refused
            read-only ssh-ed25519 \(TestKeys.ed25519) watcher
            ssh-ed25519 \(TestKeys.ed25519) writer
            """
        XCTAssertEqual(AuthorizedKeys.parse(file).key(forBlob: TestKeys.blob(TestKeys.ed25519))?.comment, "watcher")
    }

    func testHostileBytes() throws {
        let good = "ssh-ed25519 \(TestKeys.ed25519) ok"
        // A huge line is a problem; the lines after it keep their numbers.
        let huge = String(repeating: "A", count: 100_000)
        var parsed = AuthorizedKeys.parse("\(huge)\n\(good)\n")
        XCTAssertEqual(parsed.problems, [AuthorizedKeysProblem(line: 1, message: "line is longer than 16384 bytes")])
        XCTAssertEqual(parsed.keys.map(\.line), [2])
        // Exactly at the bound is fine to read (and is then just malformed).
        parsed = AuthorizedKeys.parse(String(repeating: "x", count: AuthorizedKeys.maxLineLength))
        XCTAssertEqual(parsed.problems.first?.message.hasPrefix("unknown key type or option"), true)

        // NUL bytes, control characters and invalid UTF-8 in the comment are kept visible but harmless.
        var bytes = Array("ssh-ed25519 \(TestKeys.ed25519) al".utf8) + [0, 0x1B, 0x5B, 0x32, 0x4A, 0xFF, 0xC3] + Array("ice".utf8)
        parsed = AuthorizedKeys.parse(bytes)
        XCTAssertEqual(parsed.keys.first?.comment, "al??[2J\u{FFFD}\u{FFFD}ice")
        // NUL inside the options or the key.
        bytes = Array("vms=\"a\0b\",read\0-only ssh-ed25519 \(TestKeys.ed25519)".utf8)
        parsed = AuthorizedKeys.parse(bytes)
        XCTAssertEqual(parsed.problems.first?.message, #"unknown option "read?-only""#)
        bytes = Array("ssh-ed25519\0 \(TestKeys.ed25519)".utf8)
        XCTAssertEqual(AuthorizedKeys.parse(bytes).problems.count, 1)
        bytes = Array("ssh-ed25519 \(TestKeys.ed25519.prefix(10))\0\(TestKeys.ed25519.dropFirst(10))".utf8)
        XCTAssertEqual(AuthorizedKeys.parse(bytes).problems.first?.message, "the ssh-ed25519 key data is not valid base64")
        // A long option name is shortened in the message.
        let longName = String(repeating: "n", count: 500)
        XCTAssertEqual(problem("\(longName)=\"1\" ssh-ed25519 \(TestKeys.ed25519)"),
                       "unknown option \"\(String(repeating: "n", count: 40))...\"")
    }

    func testEveryPrefixOfAValidLine() {
        let line = Array(#"vms="web-*,db\"x",read-only,command="a b" ssh-ed25519 \#(TestKeys.ed25519) alice"#.utf8)
        for n in 0...line.count {
            let parsed = AuthorizedKeys.parse(line.prefix(n))
            XCTAssertLessThanOrEqual(parsed.keys.count + parsed.problems.count, 1)
            if let key = parsed.keys.first { XCTAssertTrue(key.isUsable) }
        }
    }

    func testRandomMutationsNeverCrash() {
        var rng = SplitMix64(seed: 9)
        let seeds = [
            #"vms="web-*,db-0?",read-only ssh-ed25519 \#(TestKeys.ed25519) alice"#,
            "ecdsa-sha2-nistp521 \(TestKeys.p521) bob",
            #"command="x \"y\"",no-pty ssh-rsa \#(TestKeys.rsa) rita"#,
        ].map { Array($0.utf8) }
        let alphabet: [UInt8] = Array(#"",=\ #!*?"#.utf8) + [0, 9, 10, 13, 0x1D, 0xFF, 0x80]
        for round in 0..<3000 {
            var line = seeds[round % seeds.count]
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let at = Int.random(in: 0..<line.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: line[at] = alphabet.randomElement(using: &rng)!
                case 1: line.insert(UInt8.random(in: 0...255, using: &rng), at: at)
                default: line.remove(at: at)
                }
            }
            let parsed = AuthorizedKeys.parse(line)
            let lines = line.split(separator: 10, omittingEmptySubsequences: false).count
            XCTAssertLessThanOrEqual(parsed.keys.count + parsed.problems.count, lines)
            for key in parsed.keys where key.isUsable {
                XCTAssertNotNil(parsed.key(forBlob: key.blob))
            }
        }
        for _ in 0..<500 {
            let junk = (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = AuthorizedKeys.parse(junk)
        }
    }
}

final class VMAccessTests: XCTestCase {
    func testGlobBasics() {
        XCTAssertTrue(VMGlob.matches("*", ""))
        XCTAssertTrue(VMGlob.matches("*", "anything"))
        XCTAssertTrue(VMGlob.matches("", ""))
        XCTAssertFalse(VMGlob.matches("", "a"))
        XCTAssertFalse(VMGlob.matches("?", ""))
        XCTAssertTrue(VMGlob.matches("web-*", "web-"))
        XCTAssertTrue(VMGlob.matches("web-*", "web-01"))
        XCTAssertFalse(VMGlob.matches("web-*", "aweb-01"))
        XCTAssertTrue(VMGlob.matches("db-0?", "db-07"))
        XCTAssertFalse(VMGlob.matches("db-0?", "db-0"))
        XCTAssertTrue(VMGlob.matches("a*b*c", "aXXbYYbc"))
        XCTAssertFalse(VMGlob.matches("a*b*c", "aXXbYYbcd"))
        XCTAssertTrue(VMGlob.matches("*.example", "vm.example"))
        XCTAssertTrue(VMGlob.matches("??*", "ab"))
        XCTAssertTrue(VMGlob.matches("?é*", "xé1"), "one ? is one character")
        XCTAssertFalse(VMGlob.matches("Web", "web"))
        XCTAssertTrue(VMGlob.matchesIgnoringCase("Web-*", "WEB-1"))
    }

    func testGlobHasNoBlowUp() {
        let text = String(repeating: "a", count: 4000)
        XCTAssertFalse(VMGlob.matches(String(repeating: "a*", count: 40) + "b", text))
        XCTAssertTrue(VMGlob.matches(String(repeating: "*a", count: 40) + "*", text))
    }

    /// Against a memoized recursive reference, on random patterns and texts over a tiny alphabet.
    func testGlobAgainstReference() {
        func reference(_ p: [Character], _ t: [Character]) -> Bool {
            var memo: [Int: Bool] = [:]
            func go(_ i: Int, _ j: Int) -> Bool {
                if let v = memo[i * 1000 + j] { return v }
                let r: Bool
                if i == p.count {
                    r = j == t.count
                } else if p[i] == "*" {
                    r = go(i + 1, j) || (j < t.count && go(i, j + 1))
                } else {
                    r = j < t.count && (p[i] == "?" || p[i] == t[j]) && go(i + 1, j + 1)
                }
                memo[i * 1000 + j] = r
                return r
            }
            return go(0, 0)
        }
        var rng = SplitMix64(seed: 4)
        let patternAlphabet: [Character] = ["a", "b", "*", "?"]
        for _ in 0..<20_000 {
            let p = (0..<Int.random(in: 0...7, using: &rng)).map { _ in patternAlphabet.randomElement(using: &rng)! }
            let t = (0..<Int.random(in: 0...9, using: &rng)).map { _ in ["a", "b"].randomElement(using: &rng)! as Character }
            XCTAssertEqual(VMGlob.matches(p, t), reference(p, t), "\(String(p)) vs \(String(t))")
        }
    }

    /// Issue 14 item 5: plain globs used to match the uuid too, ignoring case, so `vms="b*"` reached every VM whose
    /// uuid starts with b. Plain globs name VMs; a uuid is matched only by a `uuid:` glob.
    func testPlainGlobsNameVMsOnly() {
        let b = AuthorizedKey(keyType: "ssh-ed25519", blob: [1], vms: ["b*"])
        XCTAssertFalse(b.permits(vmName: "web-1", uuid: "b14d000000000001000000007f4a7c15"))
        XCTAssertFalse(b.permits(vmName: "web-1", uuid: "B14D0000-0000-0001-0000-00007F4A7C15"))
        XCTAssertTrue(b.permits(vmName: "build-3", uuid: "514d000000000001000000007f4a7c15"))
        XCTAssertFalse(b.permits(vmName: "Build-3", uuid: "x"), "names are case-sensitive")
        let exact = AuthorizedKey(keyType: "ssh-ed25519", blob: [1], vms: ["514d000000000001000000007f4a7c15"])
        XCTAssertFalse(exact.permits(vmName: "x", uuid: "514d000000000001000000007f4a7c15"))
        XCTAssertTrue(exact.permits(vmName: "514d000000000001000000007f4a7c15", uuid: "0"), "a VM may be named like a uuid")
    }

    /// `uuid:` globs (these cases matched by plain globs before issue 14; they now say `uuid:`).
    func testUUIDGlobs() {
        let key = AuthorizedKey(keyType: "ssh-ed25519", blob: [1], vms: ["uuid:514D000000000001*"])
        XCTAssertTrue(key.permits(vmName: "x", uuid: "514d000000000001000000007f4a7c15"))
        XCTAssertFalse(key.permits(vmName: "514d000000000001", uuid: "614d000000000001000000007f4a7c15"), "never the name")
        let classic = AuthorizedKey(keyType: "ssh-ed25519", blob: [1], vms: ["uuid:514d000000000001-000000007f4a7c15"])
        XCTAssertTrue(classic.permits(vmName: "x", uuid: "514d000000000001000000007f4a7c15"))
        XCTAssertTrue(classic.permits(vmName: "x", uuid: "51 4d 00 00 00 00 00 01-00 00 00 00 7f 4a 7c 15"))
        XCTAssertFalse(classic.permits(vmName: "x", uuid: "514d000000000002000000007f4a7c15"))
        let hex = AuthorizedKey(keyType: "ssh-ed25519", blob: [1], vms: ["UUID:514D000000000001000000007F4A7C15"])
        XCTAssertTrue(hex.permits(vmName: "x", uuid: "514d000000000001-000000007f4a7c15"))
        let rfc = AuthorizedKey(keyType: "ssh-ed25519", blob: [1], vms: ["uuid:{514d0000-0000-0001-0000-00007f4a7c15}"])
        XCTAssertTrue(rfc.permits(vmName: "x", uuid: "514d000000000001000000007f4a7c15"))
        let suffix = AuthorizedKey(keyType: "ssh-ed25519", blob: [1], vms: ["uuid:*-000000007f4a7c15"])
        XCTAssertTrue(suffix.permits(vmName: "x", uuid: "514d000000000001000000007f4a7c15"))
        XCTAssertFalse(suffix.permits(vmName: "x", uuid: "not a uuid"), "a VM without a uuid matches no uuid glob")
        let parsed = AuthorizedKeys.parse(#"vms="web-*,uuid:421A5C00*" ssh-ed25519 \#(TestKeys.ed25519) x"#)
        XCTAssertEqual(parsed.problems, [])
        XCTAssertTrue(parsed.keys[0].permits(vmName: "db", uuid: "421a5c00-1111-2222-3333-444455556666"))
        XCTAssertFalse(parsed.keys[0].permits(vmName: "db", uuid: "521a5c00-1111-2222-3333-444455556666"))
        XCTAssertEqual(VMUUIDForms.forms(of: "{514D0000-0000-0001-0000-00007F4A7C15}"), [
            "514d000000000001000000007f4a7c15", "514d000000000001-000000007f4a7c15", "514d0000-0000-0001-0000-00007f4a7c15",
        ])
        XCTAssertEqual(VMUUIDForms.forms(of: "Not-A-UUID"), ["not-a-uuid"])
        XCTAssertNil(VMUUIDForms.hex32("514d00000000000100000000 7f4a7c15 00"))
        XCTAssertNil(VMUUIDForms.hex32("514d00000000000100000000ｆ4a7c15"))
        let everything = AuthorizedKey(keyType: "ssh-ed25519", blob: [1])
        XCTAssertTrue(everything.permits(vmName: "anything", uuid: ""))
        let refused = AuthorizedKey(keyType: "ssh-rsa", blob: [1], refusal: "no")
        XCTAssertFalse(refused.permits(vmName: "anything", uuid: ""))
    }

    func testSSHTarget() {
        XCTAssertEqual(SSHTarget(user: "list"), .list)
        XCTAssertEqual(SSHTarget(user: "web-0"), .console(vm: "web-0", label: ""))
        XCTAssertEqual(SSHTarget(user: "web-1#com2"), .console(vm: "web-1", label: "com2"))
        XCTAssertEqual(SSHTarget(user: "odd#name#com2"), .console(vm: "odd#name", label: "com2"))
        XCTAssertEqual(SSHTarget(user: "List"), .console(vm: "List", label: ""))
        XCTAssertNil(SSHTarget(user: ""))
        XCTAssertNil(SSHTarget(user: "#com2"))
        XCTAssertNil(SSHTarget(user: "web-0#"))
    }
}
