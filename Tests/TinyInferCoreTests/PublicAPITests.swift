import Foundation
@testable import TinyInferCore
import XCTest

/// The Swift API as a program uses it (docs/swift.md): Model.load from a path
/// and from a buffer, sessions, the checked input/output copies, other batch
/// sizes, threads and the errors. (python/tests/test_swift_api.py checks the
/// Swift front end against C and Python on real models, bit for bit.)
final class PublicAPITests: XCTestCase {
  /// y = relu(x W^T + b), x [batch, 3], W [2, 3]: small integers, so every
  /// result is exact and computed here by hand.
  static let w: [Float] = [1, -2, 3, -1, 0, 2]
  static let b: [Float] = [0.5, -4]

  static func fcBytes() -> [UInt8] {
    var g = TestGraph()
    let x = g.input("x", [2, 3])
    let w = g.const("w", [2, 3], PublicAPITests.w)
    let b = g.const("b", [2], PublicAPITests.b)
    let y = g.op(.relu, [g.op(.fullyConnected, [x, w, b])])
    g.def.tensors[y].name = "y"
    return g.bytes(outputs: [y])
  }

  static func expected(_ x: [Float]) -> [Float] {
    var out: [Float] = []
    for r in 0..<(x.count / 3) {
      for n in 0..<2 {
        var s = b[n]
        for k in 0..<3 { s += x[r * 3 + k] * w[n * 3 + k] }
        out.append(max(s, 0))
      }
    }
    return out
  }

  func temporaryFile(_ bytes: [UInt8]) throws -> String {
    let path = NSTemporaryDirectory() + "tinyinfer-\(UUID().uuidString).tinf"
    XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
    addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
  }

  func run(_ model: Model, _ x: [Float], options: SessionOptions = SessionOptions()) throws -> [Float] {
    let s = try Session.create(model: model, options: options)
    try s.setInput(0, x)
    try s.run()
    return try s.outputFloats(0)
  }

  let x: [Float] = [1, 2, 3, -4, 5, 0.25]

  func testLoadFromPathDescribesAndRuns() throws {
    let m = try Model.load(path: try temporaryFile(Self.fcBytes()))
    XCTAssertEqual(m.inputs.map(\.name), ["x"])
    XCTAssertEqual(m.inputs[0].shape, [2, 3])
    XCTAssertEqual(m.inputs[0].dtype, .float32)
    XCTAssertEqual(m.outputs.map(\.name), ["y"])
    XCTAssertEqual(m.outputs[0].shape, [2, 2])
    XCTAssertEqual(m.fileSize, Self.fcBytes().count)
    XCTAssertEqual(try run(m, x), Self.expected(x))
    XCTAssertEqual(Self.expected(x), [6.5, 1, 0, 0.5])  // the hand reference itself, worked on paper
  }

  func testLoadFromBufferAlignedAndNot() throws {
    let bytes = Self.fcBytes()
    // 64-byte aligned: borrowed in place; one byte off: copied.
    let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count + 64, alignment: 64)
    defer { raw.deallocate() }
    for offset in [0, 1] {
      let view = UnsafeMutableRawBufferPointer(rebasing: raw[offset..<(offset + bytes.count)])
      bytes.withUnsafeBytes { view.copyMemory(from: $0) }
      let m = try Model.load(buffer: UnsafeRawBufferPointer(view))
      XCTAssertEqual(try run(m, x), Self.expected(x), "offset \(offset)")
    }
  }

  func testErrorsAreTypedTinfErrors() throws {
    let bytes = Self.fcBytes()
    // Typed throws: the catch binds a TinfError with no cast.
    do {
      _ = try Model.load(path: "/nonexistent/dir/model.tinf")
      XCTFail("loaded a missing file")
    } catch {
      XCTAssertEqual(error.status, .io)
      XCTAssertTrue(error.message.contains("/nonexistent/dir/model.tinf"), error.message)
    }
    assertThrows(.badFormat) { _ = try Model.load(path: try temporaryFile([])) }
    assertThrows(.badFormat) { _ = try Model.load(path: try temporaryFile(Array(bytes.prefix(bytes.count / 2)))) }
    var corrupt = bytes
    corrupt[0] ^= 0xFF  // the magic
    assertThrows(.badFormat) { _ = try Model.load(path: try temporaryFile(corrupt)) }
    assertThrows(.badFormat) { _ = try loadModel(Array(repeating: 0xA5, count: 256)) }
    assertThrows(.badFormat) { _ = try Model.load(buffer: UnsafeRawBufferPointer(start: nil, count: 0)) }
  }

  func testCheckedCopiesRefuseMistakes() throws {
    let m = try loadModel(Self.fcBytes())
    let s = try Session.create(model: m)
    assertThrows(.invalidArgument, "input index 1 out of range") { try s.setInput(1, self.x) }
    assertThrows(.invalidArgument, "has 24 bytes, got 20") { try s.setInput(0, Array(self.x.prefix(5))) }
    assertThrows(.invalidArgument, "output index -1") { _ = try s.outputFloats(-1) }
    assertThrows(.invalidArgument) { _ = try s.outputBytes(1) }
    // Raw bytes: the same run as [Float].
    try x.withUnsafeBytes { try s.setInput(0, bytes: $0) }
    try s.run()
    let bytes = try s.outputBytes(0)
    XCTAssertEqual(bytes.count, 16)
    let floats = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    XCTAssertEqual(floats, Self.expected(x))
  }

  func testFloatCopiesCheckTheDtype() throws {
    // int8 input (scale 0.5, zero point 1) -> Dequantize -> float32.
    var g = TestGraph()
    g.def.tensors.append(
      TensorSpec(name: "q", dtype: .int8, shape: [4], quant: Quantization(axis: nil, scales: [0.5], zeroPoints: [1])))
    g.constants.append(nil)
    g.def.inputs.append(0)
    let y = g.op(.dequantize, [0])
    let s = try Session.create(model: try loadModel(g.bytes(outputs: [y])))
    assertThrows(.invalidArgument, "is int8, not float32") { try s.setInput(0, [1, 2, 3, 4]) }
    XCTAssertEqual(try s.inputDesc(0).dtype, .int8)
    let q: [Int8] = [-127, 1, 2, 127]
    try q.withUnsafeBytes { try s.setInput(0, bytes: $0) }
    try s.run()
    XCTAssertEqual(try s.outputFloats(0), [-64, 0, 0.5, 63])
  }

  func testTwoSessionsOfOneModelAreIndependent() throws {
    let m = try loadModel(Self.fcBytes())
    let a = try Session.create(model: m)
    let b = try Session.create(model: m)
    let xb: [Float] = [0, 0, 1, 2, 2, 2]
    try a.setInput(0, x)
    try b.setInput(0, xb)
    try a.run()
    try b.run()
    XCTAssertEqual(try a.outputFloats(0), Self.expected(x))
    XCTAssertEqual(try b.outputFloats(0), Self.expected(xb))
    // Running one does not touch the other's inputs or outputs.
    try b.setInput(0, x)
    try b.run()
    XCTAssertEqual(try a.outputFloats(0), Self.expected(x))
    try a.run()
    XCTAssertEqual(try a.outputFloats(0), Self.expected(x))
  }

  func testAnotherBatchSize() throws {
    let m = try loadModel(Self.fcBytes())
    var o = SessionOptions()
    let dims: [Int64] = [5, 3]
    try dims.withUnsafeBufferPointer { try o.setInputShape(0, rank: 2, dims: $0.baseAddress) }
    let s = try Session.create(model: m, options: o)
    XCTAssertEqual(try s.inputDesc(0).shape, [5, 3])
    XCTAssertEqual(try s.outputDesc(0).shape, [5, 2])
    XCTAssertEqual(m.inputs[0].shape, [2, 3])  // the model keeps the file's shapes
    let x5: [Float] = (0..<15).map { Float($0 % 7) - 3 }
    try s.setInput(0, x5)
    try s.run()
    XCTAssertEqual(try s.outputFloats(0), Self.expected(x5))
    assertThrows(.invalidArgument) { try s.setInput(0, self.x) }  // 2x3 no longer fits
    var bad = SessionOptions()
    bad.inputShapes[0] = [5, 4]  // K must stay 3
    assertThrows(.shape) { _ = try Session.create(model: m, options: bad) }
  }

  func testThreads() throws {
    let m = try loadModel(Self.fcBytes())
    XCTAssertEqual(try Session.create(model: m, options: SessionOptions(threads: 3)).threads, 3)
    XCTAssertGreaterThanOrEqual(try Session.create(model: m, options: SessionOptions(threads: 0)).threads, 1)
    assertThrows(.invalidArgument, "threads") { _ = try Session.create(model: m, options: SessionOptions(threads: -1)) }
    XCTAssertEqual(try run(m, x, options: SessionOptions(threads: 2)), Self.expected(x))
  }
}
