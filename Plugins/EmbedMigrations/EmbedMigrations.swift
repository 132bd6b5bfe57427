import Foundation
import PackagePlugin

/// Compiles the numbered SQL files of the package's `migrations/` folder into the target as Swift source,
/// so the schema stays written in SQL in one place and every binary carries it (no resource bundle to ship).
/// `migrations/` holds one folder per database backend (`sqlite/`, ...); each becomes one list of
/// `EmbeddedMigrations`, named as its folder.
@main
struct EmbedMigrations: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let root = context.package.directoryURL.appendingPathComponent("migrations", isDirectory: true)
        let fm = FileManager.default
        var files: [URL] = []
        for backend in try fm.contentsOfDirectory(atPath: root.path).sorted() {
            let folder = root.appendingPathComponent(backend, isDirectory: true)
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
            files += try fm.contentsOfDirectory(atPath: folder.path)
                .filter { $0.hasSuffix(".sql") }
                .sorted()
                .map { folder.appendingPathComponent($0) }
        }
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("EmbeddedMigrations.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(files.count) migrations",
                executable: try context.tool(named: "vspc-embed-migrations").url,
                arguments: [output.path] + files.map(\.path),
                inputFiles: files,
                outputFiles: [output]),
        ]
    }
}
