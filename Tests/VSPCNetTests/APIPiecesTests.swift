import Foundation
import XCTest
@testable import VSPCNet

/// The JSON API's small pieces: the document it serves, the client certificate's subject, the bearer token.
final class APIPiecesTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func testTheServedDocumentIsDocsOpenAPIJSON() throws {
        let file = try String(contentsOf: Self.repository.appendingPathComponent("docs/openapi.json"), encoding: .utf8)
        XCTAssertEqual(APIDocument.json, file.trimmingCharacters(in: .newlines),
                       "docs/openapi.json changed: run contrib/update-openapi.sh")
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(APIDocument.json.utf8)))
    }

    func testTheSubjectOfACertificate() throws {
        let pem = try String(contentsOf: Self.repository.appendingPathComponent("Tests/EndToEndTests/Fixtures/http-client-cert.pem"),
                             encoding: .utf8)
        let base64 = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        let der = try XCTUnwrap(Data(base64Encoded: base64))
        XCTAssertEqual(APICertificateSubject.subject(der: Array(der)), "CN=alice@example.org")
        // Anything cut short or changed is nil or some subject, never a crash.
        for length in stride(from: 0, to: der.count, by: 7) {
            _ = APICertificateSubject.subject(der: Array(der.prefix(length)))
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var bytes = Array(der)
            for _ in 0..<4 { bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            _ = APICertificateSubject.subject(der: bytes)
        }
        XCTAssertNil(APICertificateSubject.subject(der: []))
        XCTAssertEqual(APICertificateSubject.dotted([0x55, 0x04, 0x03]), "2.5.4.3")
    }
}
