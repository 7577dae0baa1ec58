@testable import TinyInferCore
import XCTest

final class FormatTests: XCTestCase {
  /// x [1, 4] -> FullyConnected(w [3, 4], b [3]) -> Relu
  func mlp() -> [UInt8] {
    var g = TestGraph()
    let x = g.input("x", [1, 4])
    let w = g.const("w", [3, 4], [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, -1])
    let b = g.const("b", [3], [0.5, -10, 0])
    let h = g.op(.fullyConnected, [x, w, b])
    let y = g.op(.relu, [h])
    g.def.metadata = [("name", "mlp"), ("producer", "tests")]
    return g.bytes(outputs: [y])
  }

  func testRoundTrip() throws {
    let m = try loadModel(mlp())
    // The Relu is fused into the FullyConnected at load (Passes/ActivationFusion.swift).
    XCTAssertEqual(m.graph.nodes.map { $0.op }, [.fullyConnected])
    XCTAssertEqual(m.graph.nodes[0].attrs[.activation], .int(1))
    XCTAssertEqual(m.outputs[0].shape, [1, 3])
    XCTAssertEqual(m.metadata.first?.value, "mlp")
    XCTAssertEqual(m.weightBytes, 15 * 4)
    let out = try runModel(m, [[1, 2, 3, 4]])
    XCTAssertEqual(out[0], [1.5, 0, 0])
  }

  func testConstantsAre64ByteAligned() throws {
    let bytes = mlp()
    let layout = try bytes.withUnsafeBytes { (raw) in try ModelFile.readHeader(raw) }
    XCTAssertEqual(layout.data.lowerBound % 64, 0)
    let def = try bytes.withUnsafeBytes { (raw) in
      try ModelFile.readBody(UnsafeRawBufferPointer(rebasing: raw[layout.body]), minor: 0)
    }
    for t in def.tensors { if let r = t.constant { XCTAssertEqual(r.lowerBound % 64, 0) } }
  }

  func testEveryTruncationFails() {
    let bytes = mlp()
    for n in 0..<bytes.count {
      assertThrows(.badFormat) { _ = try loadModel(Array(bytes[0..<n])) }
    }
  }

  func testBadMagicAndVersion() {
    var b = mlp()
    b[0] = 0x58
    assertThrows(.badFormat, "magic") { _ = try loadModel(b) }
    b = mlp()
    b[4] = 2
    assertThrows(.version, "major") { _ = try loadModel(b) }
    b = mlp()
    b[6] = 5  // newer minor: readable
    XCTAssertNoThrow(try loadModel(b))
  }

  func testHostileHeaderOffsets() {
    for field in [16, 24, 32, 40, 48] {
      for value: UInt64 in [0xFFFF_FFFF_FFFF_FFFF, 1 << 62, 12345, 1] {
        var b = mlp()
        for i in 0..<8 { b[field + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i)) }
        assertThrows(.badFormat) { _ = try loadModel(b) }
      }
    }
  }

  func testRandomMutationsNeverCrash() {
    let base = mlp()
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next() -> UInt64 {
      state ^= state << 13
      state ^= state >> 7
      state ^= state << 17
      return state
    }
    var loaded = 0
    for _ in 0..<3000 {
      var b = base
      for _ in 0..<(1 + Int(next() % 4)) {
        let i = 64 + Int(next() % UInt64(b.count - 64))
        b[i] = UInt8(truncatingIfNeeded: next())
      }
      do throws(TinfError) {
        let m = try loadModel(b)
        if m.inputs.contains(where: { $0.count > 1 << 20 }) { continue }
        let inputs = m.inputs.map { [Float](repeating: 0, count: $0.count) }
        _ = try runModel(m, inputs)
        loaded += 1
      } catch {
        XCTAssertNotEqual(error.status, .internal)
      }
    }
    XCTAssertGreaterThan(loaded, 0)
  }

  func testValidationErrors() {
    // Use before produce.
    var g = TestGraph()
    let x = g.input("x", [2])
    g.def.tensors.append(TensorSpec(name: "later", dtype: nil, shape: nil))
    g.constants.append(nil)
    let y = g.op(.add, [x, 1])
    assertThrows(.badFormat, "used before") { _ = try loadModel(g.bytes(outputs: [y])) }

    // Declared shape that disagrees with inference.
    g = TestGraph()
    let a = g.input("a", [2, 3])
    let r = g.op(.relu, [a])
    g.def.tensors[r].shape = [3, 2]
    assertThrows(.shape, "declared") { _ = try loadModel(g.bytes(outputs: [r])) }

    // No outputs; output never produced.
    g = TestGraph()
    _ = g.input("a", [2])
    assertThrows(.badFormat, "no outputs") { _ = try loadModel(g.bytes(outputs: [])) }

    // Dimension 0 refused.
    g = TestGraph()
    let z = g.input("z", [2, 0])
    assertThrows(.shape) { _ = try loadModel(g.bytes(outputs: [z])) }

    // Unknown attribute value range is named.
    g = TestGraph()
    let q = g.input("q", [2])
    let s = g.op(.softmax, [q], attrs: [(.axis, .int(5))])
    assertThrows(.unsupportedOp, "Softmax") { _ = try loadModel(g.bytes(outputs: [s])) }
  }
}
