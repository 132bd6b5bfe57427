import ArgumentParser
import Foundation
import VSPCStore

/// `vspc migrate-db FROM TO`: moves a one-daemon SQLite database into PostgreSQL, for several daemons.
struct MigrateDB: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-db",
        abstract: "Copy a SQLite database (assignments, events, scrollback, API tokens) into an empty PostgreSQL database.",
        discussion: """
            Run it with the daemon stopped. The copy is one transaction: all of it lands, or nothing. A target that \
            already holds assignments or events is refused.
            """)

    @Argument(help: ArgumentHelp("The SQLite database file (vspcd's --db).", valueName: "FROM"))
    var from: String
    @Argument(help: ArgumentHelp("The PostgreSQL database: postgresql://user[:password]@host[:port]/database[?sslmode=require].",
                                 valueName: "TO"))
    var to: String

    func run() throws {
        do {
            let counts = try RecordCopy.sqliteToPostgres(from: from, to: to)
            print("copied \(counts) from \(show(from)) to \(show(RecordBackends.redacted(to)))")
        } catch {
            throw fail(show(PostgresURL.redact("\(error)")))
        }
    }
}
