import Foundation
import VSPCClient
import VSPCCore

extension Tail {
    /// Says why a `tail -f` stream ended, found by asking the daemon again: it went away (stopped, restarted or
    /// killed: exit status 1), the console was forgotten (exit status 0), or it ended the stream for another
    /// reason (exit status 1; `vspc history` says which).
    func explainEnd(of followed: ConsoleInfo?) async throws {
        let name = followed.map(displayName) ?? show(vm)
        let listed: AdminResponse
        do {
            listed = try await AdminClient.request(try admin.endpoint(), AdminRequest(command: "list"))
        } catch {
            throw fail("vspcd went away (stopped, restarted or killed); the stream of \(name) ended")
        }
        let present = listed.vms?.contains { $0.uuid == followed?.uuid && $0.label == followed?.label } ?? false
        if followed != nil, listed.ok, !present {
            FileHandle.standardError.write(Data("vspc: \(name) was forgotten; nothing more to follow\n".utf8))
            return
        }
        throw fail("vspcd ended the stream of \(name); vspc history shows why")
    }
}
