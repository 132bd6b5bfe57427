import Foundation

/// The `expiry-time="timespec"` option of an authorized key, in OpenSSH's formats: `YYYYMMDD`, `YYYYMMDDHHMM` or
/// `YYYYMMDDHHMMSS`, in the server's local time zone, or in UTC when it ends with `Z`. From that moment on the key
/// no longer authenticates anyone (sessions already open are not ended).
public struct ExpiryTime: Sendable, Hashable, CustomStringConvertible {
    public var year: Int
    public var month: Int
    public var day: Int
    public var hour: Int
    public var minute: Int
    public var second: Int
    /// Written with a trailing `Z`: UTC, not local time.
    public var utc: Bool

    /// The value as written.
    public let text: String

    public static func parse(_ text: String) -> Result<ExpiryTime, AuthorizedKeysOptionError> {
        var digits = Substring(text)
        var utc = false
        if let last = digits.last, last == "Z" || last == "z" {
            utc = true
            digits = digits.dropLast()
        }
        let bad = AuthorizedKeysOptionError(
            "option expiry-time: \(AddressPatternList.show(text)) is not a time (YYYYMMDD[HHMM[SS]][Z])")
        guard [8, 12, 14].contains(digits.count), digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            return .failure(bad)
        }
        let d = Array(digits).map { Int(String($0))! }
        func number(_ from: Int, _ count: Int) -> Int {
            (from..<(from + count)).reduce(0) { $0 * 10 + (d.indices.contains($1) ? d[$1] : 0) }
        }
        let value = ExpiryTime(year: number(0, 4), month: number(4, 2), day: number(6, 2), hour: number(8, 2),
                               minute: number(10, 2), second: number(12, 2), utc: utc, text: text)
        guard value.year >= 1970, (1...12).contains(value.month), value.day >= 1,
              value.day <= Self.days(inMonth: value.month, year: value.year),
              value.hour < 24, value.minute < 60, value.second < 60 else { return .failure(bad) }
        return .success(value)
    }

    static func days(inMonth month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// The moment the key stops working, with local times read in `timeZone` (the server's own, `TimeZone.current`,
    /// in the daemon).
    public func date(localTimeZone timeZone: TimeZone) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = utc ? TimeZone(identifier: "UTC")! : timeZone
        let components = DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        return calendar.date(from: components) ?? .distantPast
    }

    /// Whether the key has expired at `now`.
    public func hasPassed(at now: Date, localTimeZone timeZone: TimeZone) -> Bool {
        now >= date(localTimeZone: timeZone)
    }

    public var description: String { text }
}
