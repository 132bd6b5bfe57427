#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The process series: `process_open_fds`, `process_max_fds` and `process_resident_memory_bytes`.
/// Reading them does blocking (if tiny) file I/O on /proc: call `read()` off the event loop.
/// A value that cannot be read on this system is nil and exported as 0.
public struct ProcessStats: Sendable, Equatable {
    public var openFDs: Int?
    public var maxFDs: Int?
    public var residentBytes: Int?

    public init(openFDs: Int?, maxFDs: Int?, residentBytes: Int?) {
        self.openFDs = openFDs
        self.maxFDs = maxFDs
        self.residentBytes = residentBytes
    }

    /// Reads the current values for this process.
    public static func read() -> ProcessStats {
        ProcessStats(openFDs: countOpenFDs(), maxFDs: softFDLimit(), residentBytes: residentMemory())
    }

    /// Entries of /proc/self/fd (/dev/fd elsewhere), not counting the descriptor used to list them.
    static func countOpenFDs() -> Int? {
        #if os(Linux)
        let path = "/proc/self/fd"
        #else
        let path = "/dev/fd"
        #endif
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        let own = dirfd(dir)
        var count = 0
        while let entry = readdir(dir) {
            let number: Int? = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                var value = 0
                var digits = 0
                for byte in raw {
                    if byte == 0 { break }
                    guard byte >= 0x30, byte <= 0x39, digits < 10 else { return nil }
                    value = value * 10 + Int(byte - 0x30)
                    digits += 1
                }
                return digits == 0 ? nil : value
            }
            guard let number, number != Int(own) else { continue }  // ".", "..", the listing itself
            count += 1
        }
        return count
    }

    /// RLIMIT_NOFILE, soft limit (the one that refuses `open`).
    static func softFDLimit() -> Int? {
        var limit = rlimit()
        #if os(Linux)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limit) == 0 else { return nil }
        if limit.rlim_cur >= rlim_t(Int.max) { return Int.max }  // RLIM_INFINITY
        return Int(limit.rlim_cur)
    }

    /// Resident set size: the second field of /proc/self/statm (pages) times the page size. nil off Linux.
    static func residentMemory() -> Int? {
        #if os(Linux)
        guard let text = readSmallFile("/proc/self/statm") else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count >= 2, let pages = Int(fields[1]) else { return nil }
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pageSize > 0 else { return nil }
        let (bytes, overflow) = pages.multipliedReportingOverflow(by: pageSize)
        return overflow ? nil : bytes
        #else
        return nil
        #endif
    }

    /// The first 4 KiB of a file (procfs files report size 0, so read until EOF or the bound).
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var filled = 0
        while filled < buffer.count {
            let n = buffer.withUnsafeMutableBytes { raw in
                posixRead(fd, raw.baseAddress! + filled, raw.count - filled)
            }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            filled += n
        }
        return String(decoding: buffer[..<filled], as: UTF8.self)
    }
}

/// `read(2)`, named apart from `ProcessStats.read()`.
@inline(__always)
private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.read(fd, buffer, count)
    #elseif canImport(Musl)
    return Musl.read(fd, buffer, count)
    #else
    return Darwin.read(fd, buffer, count)
    #endif
}
