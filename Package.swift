// swift-tools-version:6.1
import PackageDescription

// The layout is the architecture:
//   VSPCCore   pure: telnet codec, VMware extension, link / vMotion / concentrator state machines, scrollback,
//              port pool, admin protocol types, record models. No SwiftNIO, no GRDB, no clock, no randomness.
//   VSPCStore  SQLite through GRDB; depends only on the core.
//   VSPCNet    the driver: listeners, thin channel handlers, timers, TLS; carries out the core's actions.
//   VSPCClient what `vspc` needs to talk to the admin endpoint (no TLS, no server code).
//   vspcd, vspc thin executables.
let package = Package(
    name: "vspcd",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "vspcd", targets: ["vspcd"]),
        .executable(name: "vspc", targets: ["vspc"]),
        .executable(name: "vspc-vmsim", targets: ["vspc-vmsim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-nio-ssh.git", from: "0.15.1"),
        // swift-nio-ssh 0.15.1 accepts swift-crypto 1.0.0..<6.0.0; NIOSSH's key types are swift-crypto's.
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        // The HTTP listener (`--http`): console logs for Nova, metrics, health. Without its default traits, which
        // pull in swift-configuration for features vspcd does not use.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        // The browser console's WebSocket (`GET /console/<token>/ws`) on the same HTTP listener.
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        // `--db postgresql://...`: several daemons sharing one PostgreSQL database (LISTEN/NOTIFY included).
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .target(name: "VSPCCore"),
        .target(
            name: "VSPCStore",
            dependencies: [
                "VSPCCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            plugins: ["EmbedMigrations"]
        ),
        .target(
            name: "VSPCNet",
            dependencies: [
                "VSPCCore", "VSPCClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOSSH", package: "swift-nio-ssh"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "VSPCClient",
            dependencies: [
                "VSPCCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(name: "vspc-embed-migrations"),
        .plugin(
            name: "EmbedMigrations",
            capability: .buildTool(),
            dependencies: ["vspc-embed-migrations"]
        ),
        .target(
            name: "VSPCSim",
            dependencies: [
                "VSPCCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "vspcd",
            dependencies: [
                "VSPCCore", "VSPCNet", "VSPCStore", "VSPCClient",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "vspc",
            dependencies: [
                "VSPCCore", "VSPCClient", "VSPCStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                // `vspc token create` hashes the token it makes (SHA-256): only the hash reaches the daemon.
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "vspc-vmsim",
            dependencies: [
                "VSPCSim", "VSPCCore", "VSPCClient",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "VSPCCoreTests", dependencies: ["VSPCCore"], resources: [.copy("Fixtures")]),
        .testTarget(
            name: "VSPCNetTests",
            dependencies: [
                "VSPCNet", "VSPCCore", "VSPCClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "VSPCDTests", dependencies: ["vspcd", "VSPCCore"]),
        .testTarget(name: "VSPCStoreTests", dependencies: ["VSPCStore", "VSPCCore"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "VSPCSim", "VSPCCore", "VSPCClient", "VSPCStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v5]
)
