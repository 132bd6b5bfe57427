// swift-tools-version:6.0
import PackageDescription

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
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
    ],
    targets: [
        .target(name: "VSPCCore"),
        .target(
            name: "VSPCNet",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                "VSPCStore", "VSPCCore",
            ]
        ),
        .target(
            name: "VSPCStore",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            plugins: ["EmbedMigrations"]
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
                "VSPCNet",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "vspcd",
            dependencies: [
                "VSPCNet", "VSPCStore", "VSPCCore",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "vspc",
            dependencies: [
                "VSPCNet", "VSPCStore", "VSPCCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "vspc-vmsim",
            dependencies: [
                "VSPCSim", "VSPCNet",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "VSPCCoreTests", dependencies: ["VSPCCore"]),
        .testTarget(name: "VSPCNetTests", dependencies: ["VSPCNet"], resources: [.copy("Fixtures")]),
        .testTarget(name: "VSPCStoreTests", dependencies: ["VSPCStore"]),
        .testTarget(name: "VSPCDTests", dependencies: ["vspcd", "VSPCCore"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "VSPCSim", "VSPCNet", "VSPCStore", "VSPCCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v5]
)
