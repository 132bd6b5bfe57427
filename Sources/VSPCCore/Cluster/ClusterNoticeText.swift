/// The text of a cluster notification (PostgreSQL NOTIFY on channel `vspc`), written and read here only:
/// - `owner <uuid> <label-hex> <node> <epoch>`: a claim committed;
/// - `assignment <uuid> <label-hex> <0|1>`: an assignment committed (0) or deleted (1);
/// - `vmotion <sequence-hex>`: a vMotion published.
/// The label is hexadecimal UTF-8 (empty for no label) so any label fits; the node is the rest between the
/// label and the epoch. Anything else is not a notice (nil): payloads are hints from other nodes, read as hostile.
public enum ClusterNoticeText {
    /// The channel the nodes notify and listen on.
    public static let channel = "vspc"
    /// PostgreSQL refuses payloads of 8000 bytes or more; none longer is read.
    public static let maxLength = 7999

    public static func format(_ notice: ClusterNotice) -> String? {
        switch notice {
        case let .owner(key, owner):
            return "owner \(key.uuid) \(hex(Array(key.label.utf8))) \(owner.node) \(owner.epoch)"
        case let .assignment(key, deleted):
            return "assignment \(key.uuid) \(hex(Array(key.label.utf8))) \(deleted ? 1 : 0)"
        case let .vmotion(sequence):
            return "vmotion \(hex(sequence))"
        case .reconnected:
            return nil
        }
    }

    public static func parse(_ text: String) -> ClusterNotice? {
        guard text.utf8.count <= maxLength else { return nil }
        let fields = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        guard let kind = fields.first else { return nil }
        switch kind {
        case "owner":
            guard fields.count >= 5, let key = key(fields[1], fields[2]),
                  let epoch = Int64(fields[fields.count - 1]), epoch >= 0 else { return nil }
            let node = fields[3..<(fields.count - 1)].joined(separator: " ")
            guard !node.isEmpty else { return nil }
            return .owner(key, Owner(node: node, epoch: epoch))
        case "assignment":
            guard fields.count == 4, let key = key(fields[1], fields[2]) else { return nil }
            switch fields[3] {
            case "0": return .assignment(key, deleted: false)
            case "1": return .assignment(key, deleted: true)
            default: return nil
            }
        case "vmotion":
            guard fields.count == 2, let sequence = unhex(fields[1]), !sequence.isEmpty else { return nil }
            return .vmotion(sequence: sequence)
        default:
            return nil
        }
    }

    /// Lowercase hexadecimal (also the core's `hex`).
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of an even-length hexadecimal text (either case); nil for anything else.
    public static func unhex(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// A console key from a notice: the uuid as 32 lowercase hex digits, the label valid UTF-8.
    private static func key(_ uuid: String, _ labelHex: String) -> ConsoleKey? {
        guard uuid.utf8.count == 32, uuid.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }),
              let labelBytes = unhex(labelHex) else { return nil }
        let label = String(decoding: labelBytes, as: UTF8.self)
        guard Array(label.utf8) == labelBytes else { return nil }
        return ConsoleKey(uuid: uuid, label: label)
    }
}
