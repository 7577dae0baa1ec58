// swift-tools-version: 6.1
// A Swift program that uses tinyinfer: loads a .tinf model, runs it on inputs
// read from files and prints (and optionally saves) its outputs.
//
//     cd examples/swift && swift run tinyinfer-run ../../path/to/model.tinf
//
// It depends on the repository by path; another project would write
//     .package(url: "https://.../tinyinfer.git", from: "0.1.0")
// (see docs/swift.md).
import PackageDescription

let package = Package(
  name: "tinyinfer-example",
  dependencies: [.package(name: "tinyinfer", path: "../..")],
  targets: [
    .executableTarget(
      name: "tinyinfer-run",
      dependencies: [.product(name: "TinyInferCore", package: "tinyinfer")])
  ]
)
