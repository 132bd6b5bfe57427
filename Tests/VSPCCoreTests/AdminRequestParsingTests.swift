import Foundation
import VSPCCore
import XCTest

final class AdminRequestParsingTests: XCTestCase {
    private func parse(_ text: String) -> Result<AdminRequest, AdminRequestError> {
        AdminRequest.parse(Array(text.utf8))
    }

    private func request(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> AdminRequest? {
        switch parse(text) {
        case .success(let r): return r
        case .failure(let e):
            XCTFail("refused \(text): \(e.message)", file: file, line: line)
            return nil
        }
    }

    private func error(_ text: String) -> AdminRequestError? {
        if case .failure(let e) = parse(text) { return e }
        return nil
    }

    func testValidRequests() {
        XCTAssertEqual(request(#"{"version":1,"command":"list"}"#), AdminRequest(command: "list"))
        XCTAssertEqual(request(#" {"command":"status", "version":1} "#), AdminRequest(command: "status"))
        XCTAssertEqual(request(#"{"version":1,"command":"tail","vm":"web-0","label":"com2","bytes":0,"follow":true}"#),
                       AdminRequest(command: "tail", vm: "web-0", label: "com2", bytes: 0, follow: true))
        XCTAssertEqual(request(#"{"version":1,"command":"tail","vm":"web-0","label":""}"#),
                       AdminRequest(command: "tail", vm: "web-0", label: ""))
        XCTAssertEqual(request(#"{"version":1,"command":"forget","vm":"514d0000"}"#), AdminRequest(command: "forget", vm: "514d0000"))
        // Unknown keys are ignored (a newer client's optional fields).
        XCTAssertEqual(request(#"{"version":1,"command":"list","colour":"blue"}"#), AdminRequest(command: "list"))
    }

    func testLengthLimit() {
        let head = #"{"version":1,"command":"list"}"#
        let padded = head + String(repeating: " ", count: AdminProtocol.maxRequestBytes - head.utf8.count)
        XCTAssertEqual(padded.utf8.count, AdminProtocol.maxRequestBytes)
        XCTAssertEqual(request(padded), AdminRequest(command: "list"))
        XCTAssertEqual(error(padded + " "), .tooLong(AdminProtocol.maxRequestBytes + 1))
        XCTAssertEqual(AdminRequestError.tooLong(70_000).message, "request longer than 65536 bytes")
    }

    func testMalformed() {
        for text in ["", "   ", "list", "[]", "null", "1", #""list""#, "{", #"{"version":1}"#, #"{"command":"list"}"#,
                     #"{"version":"1","command":"list"}"#, #"{"version":1.5,"command":"list"}"#,
                     #"{"version":1,"command":7}"#, #"{"version":1,"command":"list","bytes":"10"}"#,
                     #"{"version":1,"command":"list","bytes":1e40}"#, #"{"version":1,"command":"list"} {"#,
                     String(repeating: "[", count: 20_000)] {
            XCTAssertEqual(error(text), .malformed, text.prefix(80).description)
        }
        XCTAssertEqual(AdminRequest.parse([0xFF, 0xFE, 0x00]), .failure(.malformed))
        XCTAssertEqual(AdminRequestError.malformed.message, "malformed request: expected one JSON object per line")
    }

    func testVersion() {
        XCTAssertEqual(error(#"{"version":2,"command":"list"}"#), .unsupportedVersion(2))
        XCTAssertEqual(error(#"{"version":0,"command":"bogus"}"#), .unsupportedVersion(0))
        XCTAssertEqual(AdminRequestError.unsupportedVersion(2).message, "unsupported protocol version 2; this daemon speaks 1")
    }

    func testCommand() {
        XCTAssertEqual(error(#"{"version":1,"command":"reboot"}"#), .unknownCommand("reboot"))
        XCTAssertEqual(error(#"{"version":1,"command":"LIST"}"#), .unknownCommand("LIST"))
        XCTAssertEqual(AdminRequestError.unknownCommand("reboot").message, #"unknown command "reboot""#)
        // A long command is echoed clipped.
        let long = String(repeating: "x", count: 5000)
        XCTAssertEqual(error(#"{"version":1,"command":"\#(long)"}"#), .unknownCommand(String(repeating: "x", count: 64)))
        // Clipped by scalars (a single character can hold any number of combining marks), and shown escaped.
        let marks = "e" + String(repeating: "\u{301}", count: 3000)
        XCTAssertEqual(error(#"{"version":1,"command":"\#(marks)"}"#), .unknownCommand("e" + String(repeating: "\u{301}", count: 63)))
        XCTAssertEqual(AdminRequestError.unknownCommand("a\u{1b}[2J\u{9b}").message, #"unknown command "a\x1b[2J\u{9b}""#)
        // Found by fuzz/run.sh (admin-request): a bidi control in an unknown command reached the error text raw.
        let found = Array(#"{"version":1,"command":"l\u202eist"}"#.utf8)
        guard case .failure(let bidi) = AdminRequest.parse(found) else { return XCTFail("accepted") }
        XCTAssertEqual(bidi.message, #"unknown command "l\u{202e}ist""#)
    }

    func testVM() {
        XCTAssertEqual(error(#"{"version":1,"command":"tail"}"#), .missingVM(command: "tail"))
        XCTAssertEqual(error(#"{"version":1,"command":"tail","vm":""}"#), .missingVM(command: "tail"))
        XCTAssertEqual(error(#"{"version":1,"command":"forget"}"#), .missingVM(command: "forget"))
        XCTAssertEqual(AdminRequestError.missingVM(command: "tail").message, "tail needs a vm")
        let limit = String(repeating: "v", count: AdminRequest.maxVMBytes)
        XCTAssertEqual(request(#"{"version":1,"command":"tail","vm":"\#(limit)"}"#)?.vm, limit)
        XCTAssertEqual(error(#"{"version":1,"command":"tail","vm":"\#(limit)v"}"#), .vmTooLong(1025))
        // Bytes, not characters: 513 two-byte characters are 1026 bytes.
        let wide = String(repeating: "é", count: 513)
        XCTAssertEqual(error(#"{"version":1,"command":"tail","vm":"\#(wide)"}"#), .vmTooLong(1026))
    }

    func testLabel() {
        for ok in ["", "com2", "a", String(repeating: "l", count: 64), "~!$%&()*+,-./;<=>?@[]^_`{|}"] {
            XCTAssertEqual(request(#"{"version":1,"command":"tail","vm":"w","label":"\#(ok)"}"#)?.label, ok)
        }
        for bad in ["a:b", "a#b", "a b", "é", #"a\u001b"#, #"\u007f"#, String(repeating: "l", count: 65)] {
            XCTAssertEqual(error(#"{"version":1,"command":"tail","vm":"w","label":"\#(bad)"}"#), .invalidLabel, bad)
        }
    }

    func testBytes() {
        XCTAssertEqual(error(#"{"version":1,"command":"tail","vm":"w","bytes":-1}"#), .negativeBytes(-1))
        XCTAssertEqual(request(#"{"version":1,"command":"tail","vm":"w","bytes":9223372036854775807}"#)?.bytes, Int.max)
        XCTAssertEqual(error(#"{"version":1,"command":"tail","vm":"w","bytes":9223372036854775808}"#), .malformed)
    }

    func testTheLabelRuleIsTheServiceURIRule() {
        XCTAssertTrue(SerialPortLabel.isValid("com2"))
        XCTAssertTrue(SerialPortLabel.isValid(""))
        XCTAssertFalse(SerialPortLabel.isValid("com 2"))
        XCTAssertFalse(SerialPortLabel.isValid("x:y"))
        XCTAssertFalse(SerialPortLabel.isValid("x#y"))
        XCTAssertFalse(SerialPortLabel.isValid("\u{7f}"))
        XCTAssertEqual(SerialPortLabel.maxLength, 64)
    }
}

final class AdminCommandParsingTests: XCTestCase {
    private func command(_ text: String) -> Result<AdminCommand, AdminRequestError> {
        AdminRequest.parseCommand(Array(text.utf8))
    }

    func testCommandsAreTyped() {
        XCTAssertEqual(command(#"{"version":1,"command":"list"}"#), .success(.list))
        XCTAssertEqual(command(#"{"version":1,"command":"status"}"#), .success(.status))
        XCTAssertEqual(command(#"{"version":1,"command":"tail","vm":"web-0","bytes":7,"follow":true}"#),
                       .success(.tail(vm: "web-0", label: nil, bytes: 7, follow: true)))
        XCTAssertEqual(command(#"{"version":1,"command":"forget","vm":"web-0"}"#),
                       .success(.forget(vm: "web-0", label: "", force: false)))
        XCTAssertEqual(command(#"{"version":1,"command":"forget","vm":"web-0","label":"com2","force":true}"#),
                       .success(.forget(vm: "web-0", label: "com2", force: true)))
        XCTAssertEqual(command(#"{"version":1,"command":"reboot"}"#), .failure(.unknownCommand("reboot")))
        XCTAssertEqual(AdminRequest.commands, Set(AdminCommand.Name.allCases.map(\.rawValue)))
    }
}

final class AdminHistoryParsingTests: XCTestCase {
    func testHistoryIsBounded() {
        func command(_ text: String) -> Result<AdminCommand, AdminRequestError> { AdminRequest.parseCommand(Array(text.utf8)) }
        XCTAssertEqual(command(#"{"version":1,"command":"history","vm":"web-0"}"#),
                       .success(.history(vm: "web-0", label: nil, since: nil, limit: AdminProtocol.maxHistoryEvents)))
        XCTAssertEqual(command(#"{"version":1,"command":"history","vm":"web-0","limit":99999999,"since":"2026-11-25T14:00:00Z"}"#),
                       .success(.history(vm: "web-0", label: nil, since: Date(timeIntervalSince1970: 1_795_615_200),
                                         limit: AdminProtocol.maxHistoryEvents)))
        XCTAssertEqual(command(#"{"version":1,"command":"history","vm":"web-0","label":"com2","limit":3,"since":"2026-11-25T14:00:00.500Z"}"#),
                       .success(.history(vm: "web-0", label: "com2", since: Date(timeIntervalSince1970: 1_795_615_200.5), limit: 3)))
        XCTAssertEqual(command(#"{"version":1,"command":"history","vm":"web-0","limit":-1}"#), .failure(.invalidLimit(-1)))
        XCTAssertEqual(command(#"{"version":1,"command":"history","vm":"web-0","since":"2h"}"#), .failure(.invalidSince))
        XCTAssertEqual(command(#"{"version":1,"command":"history"}"#), .failure(.missingVM(command: "history")))
    }
}
