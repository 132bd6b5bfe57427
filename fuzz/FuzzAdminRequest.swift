// libFuzzer target: the admin request parser (`AdminRequest.parse`), fed arbitrary request lines.
// Built by fuzz/run.sh together with the pure core sources.
//
// A line is accepted or refused, never a trap. An accepted request satisfies every bound the parser promises
// and survives a JSON round trip unchanged; a refusal carries a message safe to show on a terminal.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAdminRequest(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let line = start.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? []
    switch AdminRequest.parse(line) {
    case .success(let request):
        fuzzRequire(line.count <= AdminProtocol.maxRequestBytes, "accepted an over-long line")
        fuzzRequire(request.version == AdminProtocol.version, "accepted version \(request.version)")
        fuzzRequire(AdminRequest.commands.contains(request.command), "accepted command \(request.command)")
        fuzzRequire((request.vm?.utf8.count ?? 0) <= AdminRequest.maxVMBytes, "accepted an over-long vm")
        if request.command == "tail" || request.command == "forget" {
            fuzzRequire(!(request.vm ?? "").isEmpty, "accepted \(request.command) without a vm")
        }
        fuzzRequire(request.label.map(SerialPortLabel.isValid) ?? true, "accepted label \(request.label!)")
        fuzzRequire((request.bytes ?? 0) >= 0, "accepted negative bytes")
        guard let encoded = try? JSONEncoder().encode(request) else { fatalError("cannot re-encode \(request)") }
        guard case .success(let again) = AdminRequest.parse(Array(encoded)), again == request else {
            fatalError("round trip changed \(request)")
        }
    case .failure(let error):
        let message = error.message
        fuzzRequire(!message.isEmpty, "empty error message")
        fuzzRequire(!message.unicodeScalars.contains(where: DisplayText.isUnsafe), "terminal control in \(message.debugDescription)")
        fuzzRequire(message.utf8.count < 1024, "error message of \(message.utf8.count) bytes")
    }
    return 0
}

/// A failed check: traps with its message (`precondition` drops messages in optimized builds).
func fuzzRequire(_ condition: Bool, _ message: @autoclosure () -> String = "", file: StaticString = #file, line: UInt = #line) {
    if !condition { fatalError(message(), file: file, line: line) }
}
