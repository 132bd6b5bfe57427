import Foundation

// Usage: vspc-embed-migrations OUTPUT.swift FILE.sql...
// Writes `EmbeddedMigrations.all`: (file name, SQL text) pairs in file-name order. Every character outside
// printable ASCII, and every quote and backslash, is written as a \u{...} escape so any SQL text is safe.
let arguments = CommandLine.arguments.dropFirst()
guard let output = arguments.first else {
    FileHandle.standardError.write(Data("usage: vspc-embed-migrations OUTPUT.swift FILE.sql...\n".utf8))
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

var source = "// Generated from migrations/*.sql by vspc-embed-migrations. Do not edit.\n"
source += "enum EmbeddedMigrations {\n    static let all: [(name: String, sql: String)] = [\n"
for path in arguments.dropFirst().sorted(by: { ($0 as NSString).lastPathComponent < ($1 as NSString).lastPathComponent }) {
    let name = (path as NSString).lastPathComponent
    guard let sql = try? String(contentsOfFile: path, encoding: .utf8) else {
        FileHandle.standardError.write(Data("vspc-embed-migrations: cannot read \(path)\n".utf8))
        exit(1)
    }
    source += "        (\(literal(name)), \(literal(sql))),\n"
}
source += "    ]\n}\n"
do {
    try source.write(toFile: output, atomically: true, encoding: .utf8)
} catch {
    FileHandle.standardError.write(Data("vspc-embed-migrations: cannot write \(output): \(error)\n".utf8))
    exit(1)
}
