import Foundation

// Usage: vspc-embed-migrations OUTPUT.swift BACKEND/FILE.sql...
// Writes `EmbeddedMigrations.<backend>` for each backend folder (the folder holding the file, `sqlite` for
// migrations/sqlite/0001_initial.sql): (file name, SQL text) pairs in file-name order. Every character outside
// printable ASCII, and every quote and backslash, is written as a \u{...} escape so any SQL text is safe.
let arguments = CommandLine.arguments.dropFirst()
guard let output = arguments.first else {
    FileHandle.standardError.write(Data("usage: vspc-embed-migrations OUTPUT.swift BACKEND/FILE.sql...\n".utf8))
    exit(2)
}

func literal(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        if scalar.value >= 0x20 && scalar.value < 0x7F && scalar != "\"" && scalar != "\\" {
            out.unicodeScalars.append(scalar)
        } else {
            out += "\\u{\(String(scalar.value, radix: 16))}"
        }
    }
    return out + "\""
}

/// A backend's folder name becomes a Swift identifier: lowercase letters and digits, a letter first.
func isIdentifier(_ name: String) -> Bool {
    guard let first = name.unicodeScalars.first, ("a"..."z").contains(first) else { return false }
    return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) }
}

var backends: [String: [String]] = [:]
for path in arguments.dropFirst() {
    let backend = ((path as NSString).deletingLastPathComponent as NSString).lastPathComponent
    guard isIdentifier(backend) else {
        FileHandle.standardError.write(Data("vspc-embed-migrations: \(path): backend folder \"\(backend)\" must be lowercase letters and digits\n".utf8))
        exit(1)
    }
    backends[backend, default: []].append(path)
}

var source = "// Generated from migrations/BACKEND/*.sql by vspc-embed-migrations. Do not edit.\n"
source += "enum EmbeddedMigrations {\n"
for backend in backends.keys.sorted() {
    source += "    static let \(backend): [(name: String, sql: String)] = [\n"
    let paths = backends[backend, default: []]
    for path in paths.sorted(by: { ($0 as NSString).lastPathComponent < ($1 as NSString).lastPathComponent }) {
        let name = (path as NSString).lastPathComponent
        guard let sql = try? String(contentsOfFile: path, encoding: .utf8) else {
            FileHandle.standardError.write(Data("vspc-embed-migrations: cannot read \(path)\n".utf8))
            exit(1)
        }
        source += "        (\(literal(name)), \(literal(sql))),\n"
    }
    source += "    ]\n"
}
source += "}\n"
do {
    try source.write(toFile: output, atomically: true, encoding: .utf8)
} catch {
    FileHandle.standardError.write(Data("vspc-embed-migrations: cannot write \(output): \(error)\n".utf8))
    exit(1)
}
