import XCTest
@testable import VSPCCore

final class ScrollbackRingTests: XCTestCase {
    /// Against the obvious model (keep the last `capacity` bytes), over random chunk sizes and capacities.
    func testMatchesTheObviousModel() {
        var rng = SplitMix64(seed: 99)
        for capacity in [0, 1, 2, 7, 64, 1000] {
            var ring = ScrollbackRing(capacity: capacity)
            var model: [UInt8] = []
            for step in 0..<300 {
                let chunk = (0..<Int(rng.next() % 150)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                ring.append(chunk)
                model = Array((model + chunk).suffix(capacity))
                XCTAssertEqual(ring.contents(), model, "capacity \(capacity), step \(step)")
                let last = Int(rng.next() % 200)
                XCTAssertEqual(ring.contents(last: last), Array(model.suffix(last)), "capacity \(capacity), step \(step), last \(last)")
                XCTAssertEqual(ring.count, model.count)
            }
        }
    }

    func testFillsThenWrapsAround() {
        var ring = ScrollbackRing(capacity: 5)
        XCTAssertEqual(ring.contents(), [])
        ring.append([1, 2, 3])
        XCTAssertEqual(ring.contents(), [1, 2, 3])
        XCTAssertEqual(ring.count, 3)
        ring.append([4, 5, 6, 7])
        XCTAssertEqual(ring.contents(), [3, 4, 5, 6, 7])
        XCTAssertEqual(ring.count, 5)
        ring.append([8])
        XCTAssertEqual(ring.contents(), [4, 5, 6, 7, 8])
        ring.append([UInt8]())
        XCTAssertEqual(ring.contents(), [4, 5, 6, 7, 8])
        for b: UInt8 in 9...13 { ring.append([b]) }
        XCTAssertEqual(ring.contents(), [9, 10, 11, 12, 13])
    }

    func testContentsLast() {
        var ring = ScrollbackRing(capacity: 4)
        ring.append([1, 2, 3, 4, 5, 6])
        XCTAssertEqual(ring.contents(last: 2), [5, 6])
        XCTAssertEqual(ring.contents(last: 0), [])
        XCTAssertEqual(ring.contents(last: 4), [3, 4, 5, 6])
        XCTAssertEqual(ring.contents(last: 100), [3, 4, 5, 6])
        ring.append([7])
        XCTAssertEqual(ring.contents(last: 3), [5, 6, 7])
        XCTAssertEqual(ring.contents(last: nil), [4, 5, 6, 7])
    }

    func testAppendLargerThanCapacityKeepsTheTail() {
        var ring = ScrollbackRing(capacity: 3)
        ring.append([1])
        ring.append([2, 3, 4, 5, 6])
        XCTAssertEqual(ring.contents(), [4, 5, 6])
        ring.append([7, 8, 9])
        XCTAssertEqual(ring.contents(), [7, 8, 9])
        ring.append(ArraySlice<UInt8>([0, 10, 11])[1...])
        XCTAssertEqual(ring.contents(), [9, 10, 11])
    }

    func testInitialContents() {
        XCTAssertEqual(ScrollbackRing(capacity: 3, initial: [1, 2, 3, 4]).contents(), [2, 3, 4])
        XCTAssertEqual(ScrollbackRing(capacity: 3, initial: [1]).contents(), [1])
    }

    func testCapacityZero() {
        var ring = ScrollbackRing(capacity: 0, initial: [1, 2])
        ring.append([3, 4, 5])
        XCTAssertEqual(ring.contents(), [])
        XCTAssertEqual(ring.contents(last: 1), [])
        XCTAssertEqual(ring.count, 0)
        XCTAssertEqual(ring.capacity, 0)
        var negative = ScrollbackRing(capacity: -5)
        negative.append([1])
        XCTAssertEqual(negative.capacity, 0)
        XCTAssertEqual(negative.contents(), [])
    }

    func testAgainstAReferenceModel() {
        var rng = SplitMix64(seed: 31337)
        for capacity in [1, 2, 7, 64] {
            var ring = ScrollbackRing(capacity: capacity)
            var model: [UInt8] = []
            for _ in 0..<500 {
                let chunk = rng.bytes(Int.random(in: 0...(capacity * 2), using: &rng))
                ring.append(chunk)
                model = Array((model + chunk).suffix(capacity))
                XCTAssertEqual(ring.contents(), model)
                let last = Int.random(in: 0...(capacity + 1), using: &rng)
                XCTAssertEqual(ring.contents(last: last), Array(model.suffix(last)))
            }
        }
    }
}

final class PortPoolTests: XCTestCase {
    func testRoundRobinAllocation() {
        var pool = PortPool(range: 7000...7002)
        XCTAssertEqual(pool.available, 3)
        XCTAssertEqual(pool.allocate(), 7000)
        pool.release(7000)
        XCTAssertEqual(pool.allocate(), 7001, "round robin: a released port is not reused at once")
        XCTAssertEqual(pool.allocate(), 7002)
        XCTAssertEqual(pool.allocate(), 7000)
        XCTAssertEqual(pool.available, 0)
        XCTAssertNil(pool.allocate())
    }

    func testSkipsReservedAndExcludedPorts() {
        var pool = PortPool(range: 7000...7004)
        pool.reserve(7000)
        pool.reserve(7002)
        XCTAssertTrue(pool.isInUse(7000))
        XCTAssertEqual(pool.available, 3)
        XCTAssertEqual(pool.allocate(), 7001)
        XCTAssertEqual(pool.allocate(excluding: [7003]), 7004)
        XCTAssertFalse(pool.isInUse(7003), "an excluded port is not marked in use")
        XCTAssertEqual(pool.allocate(), 7003)
        XCTAssertNil(pool.allocate())
        XCTAssertEqual(pool.available, 0)
    }

    func testExhaustionAndRelease() {
        var pool = PortPool(range: 5...6)
        XCTAssertEqual(pool.allocate(), 5)
        XCTAssertEqual(pool.allocate(), 6)
        XCTAssertNil(pool.allocate())
        XCTAssertNil(pool.allocate())
        pool.release(5)
        XCTAssertFalse(pool.isInUse(5))
        XCTAssertEqual(pool.available, 1)
        XCTAssertEqual(pool.allocate(), 5)
        XCTAssertNil(pool.allocate())
        var pool2 = PortPool(range: 5...6)
        XCTAssertNil(pool2.allocate(excluding: [5, 6]), "all excluded")
    }

    func testSinglePortAndOutOfRangeReservations() {
        var pool = PortPool(range: 9000...9000)
        pool.reserve(80)
        XCTAssertEqual(pool.available, 1)
        XCTAssertEqual(pool.allocate(), 9000)
        XCTAssertNil(pool.allocate())
        pool.release(9000)
        XCTAssertEqual(pool.allocate(), 9000)
    }
}

final class ServiceURITests: XCTestCase {
    func testParsing() {
        XCTAssertEqual(ServiceURI(parsing: "vSPC.py"), ServiceURI(base: "vSPC.py", label: ""))
        XCTAssertEqual(ServiceURI(parsing: "vSPC.py?port=com2"), ServiceURI(base: "vSPC.py", label: "com2"))
        XCTAssertEqual(ServiceURI(parsing: "vSPC.py?foo=bar&port=ttyS0&x"), ServiceURI(base: "vSPC.py", label: "ttyS0"))
        XCTAssertEqual(ServiceURI(parsing: "vSPC.py?"), ServiceURI(base: "vSPC.py", label: ""))
        XCTAssertEqual(ServiceURI(parsing: "vSPC.py?port="), ServiceURI(base: "vSPC.py", label: ""))
        XCTAssertEqual(ServiceURI(parsing: "vSPC.py?other=1"), ServiceURI(base: "vSPC.py", label: ""))
        XCTAssertEqual(ServiceURI(parsing: "vSPC.py?port=a?b"), ServiceURI(base: "vSPC.py", label: "a?b"))
        XCTAssertEqual(ServiceURI(parsing: ""), ServiceURI(base: "", label: ""))
        XCTAssertEqual(ServiceURI(base: "x").label, "")
    }

    func testUnusableLabelsAreRejected() {
        XCTAssertNil(ServiceURI(parsing: "vSPC.py?port=com:2"), "':' would break name:uuid:port listings")
        XCTAssertNil(ServiceURI(parsing: "vSPC.py?port=:"))
        XCTAssertNil(ServiceURI(parsing: "vSPC.py?port=a#b"))
        XCTAssertNil(ServiceURI(parsing: "vSPC.py?port=a b"))
        XCTAssertNil(ServiceURI(parsing: "vSPC.py?port=a\u{7F}"))
        XCTAssertNil(ServiceURI(parsing: "vSPC.py?port=a\tb"))
        XCTAssertNil(ServiceURI(parsing: "vSPC.py?port=é"))
        XCTAssertNil(ServiceURI(parsing: "vSPC.py?port=" + String(repeating: "x", count: 65)))
        XCTAssertEqual(ServiceURI(parsing: "vSPC.py?port=" + String(repeating: "x", count: 64))?.label.count, 64)
        XCTAssertEqual(ServiceURI.maxLabelLength, 64)
    }
}

final class TerminalSanitizerTests: XCTestCase {
    private func filter(_ s: String) -> String {
        var sanitizer = TerminalSanitizer()
        return String(decoding: sanitizer.filter(Array(s.utf8)), as: UTF8.self)
    }

    func testCSIAndOSCAreRemoved() {
        XCTAssertEqual(filter("a\u{1B}[31mb\u{1B}[0m\r\n"), "ab\r\n")
        XCTAssertEqual(filter("\u{1B}[2J\u{1B}[1;1H\u{1B}[?25lok"), "ok")
        XCTAssertEqual(filter("\u{1B}]0;title\u{07}x"), "x", "OSC ended by BEL")
        XCTAssertEqual(filter("\u{1B}]8;;http://e\u{1B}\\link\u{1B}]8;;\u{1B}\\"), "link", "OSC ended by ST")
        XCTAssertEqual(filter("\u{1B}P1$r\u{1B}\\y"), "y", "DCS")
        XCTAssertEqual(filter("\u{1B}(Bz\u{1B}c!"), "z!", "two-byte escapes with and without intermediates")
    }

    func testC0ControlsAndDELAreRemovedButTabLFCRKept() {
        let input: [UInt8] = [0x00, 0x41, 0x07, 0x08, 0x09, 0x0A, 0x0D, 0x11, 0x7F, 0x42, 0x9B, 0x31]
        var s = TerminalSanitizer()
        XCTAssertEqual(s.filter(input), [0x41, 0x09, 0x0A, 0x0D, 0x42, 0x9B, 0x31])
    }

    /// U+009B (CSI) and the other C1 controls in UTF-8 (C2 80-C2 9F) are removed, even split across chunks;
    /// other two-byte characters, including ones whose second byte is 0x9B, are kept.
    func testC1ControlsInUTF8AreRemoved() {
        XCTAssertEqual(filter("a\u{9B}31mb\u{85}c"), "a31mbc")
        XCTAssertEqual(filter("ě¢©"), "ě¢©", "C4 9B, C2 A2 and C2 A9 are text")
        var s = TerminalSanitizer()
        XCTAssertEqual(s.filter([0x41, 0xC2]) + s.filter([0x9B, 0x42]), [0x41, 0x42])
        XCTAssertEqual(s.filter([0xC2]) + s.filter([0xC2, 0xA9]), [0xC2, 0xC2, 0xA9], "a stray C2 passes through")
    }

    func testUTF8AndCRLFPassThrough() {
        let text = "héllo — ✓ 日本語 🙂\r\nline two\r\n"
        XCTAssertEqual(filter(text), text)
        XCTAssertEqual(filter("\u{1B}[1mgrüß\u{1B}[0m\r\n"), "grüß\r\n")
    }

    func testSequencesSplitAcrossChunksAreRemovedAtEverySplit() {
        let input = Array("x\u{1B}[1;31mé\u{1B}]2;ti\u{07}\u{1B}(By\u{1B}]0;t\u{1B}\\\r\n\t日".utf8)
        let expected = Array("xéy\r\n\t日".utf8)
        for i in 0...input.count {
            for j in i...input.count {
                var s = TerminalSanitizer()
                let out = s.filter(input[..<i]) + s.filter(input[i..<j]) + s.filter(input[j...])
                XCTAssertEqual(out, expected, "split at \(i), \(j)")
            }
        }
        var s = TerminalSanitizer()
        XCTAssertEqual(input.flatMap { s.filter([$0]) }, expected, "byte by byte")
    }
}
