// Transitional: on branch `harden` the admin protocol types moved to VSPCCore ahead of main's restructure.
// Re-exporting the core keeps every `import VSPCNet` seeing them. Delete this file when VSPCNet's files and
// its clients import VSPCCore themselves.
@_exported import VSPCCore
