// swift-tools-version: 6.1
// tinyinfer: a small neural-network inference runtime.
//
// The same sources build two ways:
// - normal mode (`swift build`, `swift test`): for XCTest and Swift programs
//   that import TinyInferCore;
// - Embedded mode (TINF_EMBEDDED=1, see scripts/build-lib.sh): the shipped
//   libtinyinfer.so, self-contained (libc only) and exporting only tinf_*.
// On x86-64 the code is built with -march=native (every instruction set of the
// build machine: AVX-512, AVX2, FMA, F16C where present); TINF_PORTABLE=1
// leaves it out, for a library that runs on any x86-64.
import PackageDescription
import class Foundation.ProcessInfo

let env = ProcessInfo.processInfo.environment
let embedded = env["TINF_EMBEDDED"] == "1"
let portable = env["TINF_PORTABLE"] == "1"

var cpuFlags: [String] = []
#if arch(x86_64)
  if !portable { cpuFlags = ["-Xcc", "-march=native"] }
#endif

// No unsafeFlags at all unless there are flags: SwiftPM refuses a dependency by
// version whose targets carry any (scripts/test-swift-consumer.sh checks it).
var coreSettings: [SwiftSetting] = cpuFlags.isEmpty ? [] : [.unsafeFlags(cpuFlags)]
if embedded {
  coreSettings += [.enableExperimentalFeature("Embedded"), .unsafeFlags(["-wmo"])]
}

var capiLinker: [LinkerSetting] = []
if embedded {
  // The SONAME's number is TINF_VERSION_MAJOR (include/tinyinfer.h); scripts/install.sh
  // installs libtinyinfer.so.0 -> libtinyinfer.so.<major>.<minor>.<patch> and checks it.
  capiLinker = [
    .unsafeFlags([
      "-Xlinker", "--version-script=\(Context.packageDirectory)/scripts/exports.map",
      "-Xlinker", "-soname=libtinyinfer.so.0",
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
    .target(name: "TinyInferShims", path: "Sources/TinyInferShims", linkerSettings: [.linkedLibrary("m"), .linkedLibrary("pthread")]),
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
