// swift-tools-version: 6.1
// tinyinfer: a small neural-network inference runtime.
//
// The same sources build two ways:
// - normal mode (`swift build`, `swift test`): for XCTest and Swift programs
//   that import TinyInferCore;
// - Embedded mode (TINF_EMBEDDED=1, see scripts/build-lib.sh): the shipped
//   libtinyinfer.so, self-contained (libc only) and exporting only tinf_*.
// No CPU flags anywhere: the code is built for the architecture's baseline
// (x86-64: SSE2), and the hot kernels (Sources/TinyInferShims/kernels) are
// compiled once per CPU level (baseline, AVX2+FMA+F16C, AVX-512) in the C
// target and chosen at run time (ti_cpu_level, TINYINFER_ISA).
import PackageDescription
import class Foundation.ProcessInfo

let env = ProcessInfo.processInfo.environment
let embedded = env["TINF_EMBEDDED"] == "1"

// No unsafeFlags unless Embedded: SwiftPM refuses a dependency by version whose
// targets carry any (scripts/test-swift-consumer.sh checks it).
var coreSettings: [SwiftSetting] = []
if embedded {
  // Each function in its own section, so the linker's --gc-sections drops
  // the code no exported function reaches (about 1 MB of the library).
  coreSettings += [.enableExperimentalFeature("Embedded"), .unsafeFlags(["-wmo", "-Xfrontend", "-function-sections"])]
}
var shimSettings: [CSetting] = []
if embedded {
  shimSettings = [.unsafeFlags(["-ffunction-sections", "-fdata-sections"])]
}

var capiLinker: [LinkerSetting] = []
if embedded {
  // The SONAME's number is TINF_VERSION_MAJOR (include/tinyinfer.h); scripts/install.sh
  // installs libtinyinfer.so.0 -> libtinyinfer.so.<major>.<minor>.<patch> and checks it.
  capiLinker = [
    .unsafeFlags([
      "-Xlinker", "--version-script=\(Context.packageDirectory)/scripts/exports.map",
      "-Xlinker", "-soname=libtinyinfer.so.0",
      "-Xlinker", "--gc-sections",
    ])
  ]
}

let package = Package(
  name: "tinyinfer",
  products: [
    // MARK: - Public API
    /// libtinyinfer.so: the C API of include/tinyinfer.h.
    .library(name: "tinyinfer", type: .dynamic, targets: ["TinyInferCAPI"]),
    /// The Swift API for Swift programs.
    .library(name: "TinyInferCore", targets: ["TinyInferCore"]),
  ],
  targets: [
    // MARK: - Implementation
    /// The header, as a C module: the compiler checks the Swift C API against it.
    .target(name: "CTinyInfer", path: "include", publicHeadersPath: "."),
    /// The operating-system calls the core uses (mmap, threads, clock, libm).
    .target(name: "TinyInferShims", path: "Sources/TinyInferShims", cSettings: shimSettings, linkerSettings: [.linkedLibrary("m"), .linkedLibrary("pthread")]),
    /// Format, graph, planner, kernels and runtime. Embedded Swift subset.
    .target(name: "TinyInferCore", dependencies: ["TinyInferShims"], swiftSettings: coreSettings),
    /// The C API: a thin shell of @c @implementation functions.
    .target(
      name: "TinyInferCAPI", dependencies: ["TinyInferCore", "CTinyInfer", "TinyInferShims"],
      swiftSettings: coreSettings, linkerSettings: capiLinker),

    // MARK: - Tests
    .testTarget(name: "TinyInferCoreTests", dependencies: ["TinyInferCore"]),
  ]
)
