import XCTest
@testable import VSPCCore

final class ClusterNoticeTextTests: XCTestCase {
    let key = ConsoleKey(uuid: "0123456789abcdeffedcba9800000000", label: "com 2")
    let plain = ConsoleKey(uuid: "0123456789abcdeffedcba9800000000", label: "")

    func testFormatsAsTheDesignSays() {
        XCTAssertEqual(ClusterNoticeText.format(.owner(key, Owner(node: "node-a", epoch: 7))),
                       "owner 0123456789abcdeffedcba9800000000 636f6d2032 node-a 7")
        XCTAssertEqual(ClusterNoticeText.format(.owner(plain, Owner(node: "b", epoch: 1))),
                       "owner 0123456789abcdeffedcba9800000000  b 1")
        XCTAssertEqual(ClusterNoticeText.format(.assignment(key, deleted: false)),
                       "assignment 0123456789abcdeffedcba9800000000 636f6d2032 0")
        XCTAssertEqual(ClusterNoticeText.format(.assignment(plain, deleted: true)),
                       "assignment 0123456789abcdeffedcba9800000000  1")
        XCTAssertEqual(ClusterNoticeText.format(.vmotion(sequence: [0, 0xab, 0xff])), "vmotion 00abff")
        XCTAssertNil(ClusterNoticeText.format(.reconnected))
    }

    func testRoundTrips() {
        let notices: [ClusterNotice] = [
            .owner(key, Owner(node: "a", epoch: 1)), .owner(plain, Owner(node: "node with spaces", epoch: Int64.max)),
            .owner(ConsoleKey(uuid: key.uuid, label: "é\u{0}\n"), Owner(node: "ü", epoch: 0)),
            .assignment(key, deleted: true), .assignment(plain, deleted: false), .vmotion(sequence: Array(0...255)),
        ]
        for notice in notices {
            let text = ClusterNoticeText.format(notice) ?? ""
            XCTAssertEqual(ClusterNoticeText.parse(text), notice, text)
        }
    }

    func testHostileTextIsNoNotice() {
        for text in [
            "", "owner", "owner 0123456789abcdeffedcba9800000000 00 a", "owner 0123456789abcdeffedcba9800000000 00  5",
            "owner 0123456789ABCDEFFEDCBA9800000000 00 a 1", "owner 0123 00 a 1",
            "owner 0123456789abcdeffedcba9800000000 0 a 1", "owner 0123456789abcdeffedcba9800000000 zz a 1",
            "owner 0123456789abcdeffedcba9800000000 ff a 1", "owner 0123456789abcdeffedcba9800000000 00 a -1",
            "owner 0123456789abcdeffedcba9800000000 00 a x", "assignment 0123456789abcdeffedcba9800000000 00 2",
            "assignment 0123456789abcdeffedcba9800000000 00", "vmotion", "vmotion ", "vmotion abc", "vmotion 0g",
            "vmotion 00 11", "hello world", String(repeating: "vmotion 00", count: 1000),
        ] {
            XCTAssertNil(ClusterNoticeText.parse(text), text)
        }
        XCTAssertEqual(ClusterNoticeText.parse("vmotion ABcd"), .vmotion(sequence: [0xab, 0xcd]))
    }

    func testHex() {
        XCTAssertEqual(ClusterNoticeText.hex([]), "")
        XCTAssertEqual(ClusterNoticeText.unhex(""), [])
        XCTAssertEqual(ClusterNoticeText.unhex(ClusterNoticeText.hex(Array(0...255))), Array(0...255))
        XCTAssertNil(ClusterNoticeText.unhex("0"))
    }
}
