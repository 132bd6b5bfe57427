import Foundation
import VSPCCore
import VSPCStore

/// The database read offline, read-only (`history --db`, `log`, `grep`); a failure is a message and exit 1.
func openOffline(_ db: String, code: Int32 = 1) throws -> any RecordReader {
    do {
        return try RecordBackends.openForReading(db)
    } catch {
        throw fail(show("\(error)"), code: code)
    }
}

/// The console or VM (`scope`) that `vm` names in an offline database, by `VMLookup.choose`; nil when it names
/// none. An ambiguous reference is a message and exit `code`.
func chooseOffline(_ vm: String, in store: any RecordReader, label: String? = nil, scope: VMLookup.Scope,
                   code: Int32 = 1) throws -> ConsoleCandidate? {
    switch VMLookup.choose(vm, among: try store.knownConsoles(), label: label, scope: scope) {
    case .found(let found): return found
    case .notFound: return nil
    case .ambiguous(let candidates): throw fail(VMLookup.ambiguity(vm, candidates), code: code)
    }
}
