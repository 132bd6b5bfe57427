import Foundation

/// One console's output waiting for the disk: its bytes in order and when each run of them arrived.
struct ConsoleLogPending {
    /// Where a run of bytes that arrived at one time starts.
    struct Mark: Equatable {
        var offset: Int
        var milliseconds: Int64
    }

    /// A run of bytes that arrived at one time.
    struct Segment: Equatable {
        var range: Range<Int>
        var milliseconds: Int64
    }

    private(set) var bytes: [UInt8] = []
    /// Offsets rise strictly; the first is 0 whenever there are bytes.
    private(set) var marks: [Mark] = []

    var count: Int { bytes.count }
    var isEmpty: Bool { bytes.isEmpty }

    mutating func append(_ chunk: [UInt8], milliseconds: Int64) {
        guard !chunk.isEmpty else { return }
        if marks.last?.milliseconds != milliseconds {
            marks.append(Mark(offset: bytes.count, milliseconds: milliseconds))
        }
        bytes.append(contentsOf: chunk)
    }

    mutating func append(_ other: ConsoleLogPending) {
        for segment in other.segments {
            append(Array(other.bytes[segment.range]), milliseconds: segment.milliseconds)
        }
    }

    var segments: [Segment] {
        var out: [Segment] = []
        out.reserveCapacity(marks.count)
        for (i, mark) in marks.enumerated() {
            let end = i + 1 < marks.count ? marks[i + 1].offset : bytes.count
            if end > mark.offset { out.append(Segment(range: mark.offset..<end, milliseconds: mark.milliseconds)) }
        }
        return out
    }

    /// `length` bytes from `offset` on, with their times.
    func slice(from offset: Int, length: Int) -> ConsoleLogPending {
        let end = min(bytes.count, offset + max(0, length))
        var out = ConsoleLogPending()
        for segment in segments where segment.range.upperBound > offset && segment.range.lowerBound < end {
            let start = max(segment.range.lowerBound, offset)
            out.append(Array(bytes[start..<min(segment.range.upperBound, end)]), milliseconds: segment.milliseconds)
        }
        return out
    }
}
