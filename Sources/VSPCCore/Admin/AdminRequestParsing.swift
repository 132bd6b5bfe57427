import Foundation

/// Why an admin request line was refused. Callers branch on the case; `description` is the message sent back.
public enum AdminRequestError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooLong(limit: Int)
    case malformed
    case unsupportedVersion(Int)
    case unknownCommand(String)
    case missingVM(command: String)
    case invalidField(String)

    public var description: String {
        switch self {
        case .tooLong(let limit): return "request longer than \(limit) bytes"
        case .malformed: return "malformed request: expected one JSON object per line"
        case .unsupportedVersion(let v): return "unsupported protocol version \(v); this daemon speaks \(AdminProtocol.version)"
        case .unknownCommand(let c): return "unknown command \(c.debugDescription)"
        case .missingVM(let command): return "\(command) needs a vm"
        case .invalidField(let why): return why
        }
    }
}

extension AdminRequest {
    /// The commands this daemon answers.
    public static let commands: Set<String> = ["list", "status", "tail", "forget"]

    /// Parses one request line (without its newline). Hostile input gives an error, never a crash.
    public static func parse<C: Collection>(_ line: C) -> Result<AdminRequest, AdminRequestError> where C.Element == UInt8 {
        guard line.count <= AdminProtocol.maxRequestBytes else { return .failure(.tooLong(limit: AdminProtocol.maxRequestBytes)) }
        guard let request = try? JSONDecoder().decode(AdminRequest.self, from: Data(line)) else { return .failure(.malformed) }
        guard request.version == AdminProtocol.version else { return .failure(.unsupportedVersion(request.version)) }
        guard commands.contains(request.command) else {
            return .failure(.unknownCommand(String(request.command.prefix(64))))
        }
        if request.command == "tail" || request.command == "forget" {
            guard let vm = request.vm, !vm.isEmpty else { return .failure(.missingVM(command: request.command)) }
            guard vm.utf8.count <= 1024 else { return .failure(.invalidField("vm longer than 1024 bytes")) }
        }
        if let label = request.label, label.utf8.count > ServiceURI.maxLabelLength * 4 {
            return .failure(.invalidField("label longer than \(ServiceURI.maxLabelLength) characters"))
        }
        return .success(request)
    }
}
