@testable import TinyInferCore
import XCTest

/// Kernels on small shapes with hand-computed results (pytest checks every op
/// against numpy references over many shapes).
final class KernelTests: XCTestCase {
  func one(_ op: OpKind, _ inputs: [([Int], [Float])], attrs: [(AttrKey, AttrValue)] = []) throws -> [Float] {
    var g = TestGraph()
    var ids: [Int] = []
    for (i, (shape, _)) in inputs.enumerated() { ids.append(g.input("x\(i)", shape)) }
    let y = g.op(op, ids, attrs: attrs)
    let m = try loadModel(g.bytes(outputs: [y]))
    return try runModel(m, inputs.map { $0.1 })[0]
  }

  func testFullyConnectedSizesAroundTheTile() throws {
    for k in [1, 7, 8, 9, 17] {
      for n in [1, 3, 4, 5, 9] {
        var x: [Float] = []
        for i in 0..<(2 * k) { x.append(Float(i % 5) - 2) }
        var w: [Float] = []
        for i in 0..<(n * k) { w.append(Float(i % 3) - 1) }
        let y = try one(.fullyConnected, [([2, k], x), ([n, k], w)])
        for r in 0..<2 {
          for c in 0..<n {
            var s: Float = 0
            for j in 0..<k { s += x[r * k + j] * w[c * k + j] }
            XCTAssertEqual(y[r * n + c], s, "k=\(k) n=\(n)")
          }
        }
      }
    }
  }

  func testBroadcastAdd() throws {
    let y = try one(.add, [([2, 3], [1, 2, 3, 4, 5, 6]), ([2, 1], [10, 20])])
    XCTAssertEqual(y, [11, 12, 13, 24, 25, 26])
  }

  func testSoftmaxRows() throws {
    let y = try one(.softmax, [([2, 2], [0, 0, 1, 1])])
    XCTAssertEqual(y, [0.5, 0.5, 0.5, 0.5])
  }

  func testFusedActivation() throws {
    let y = try one(.sub, [([4], [1, 5, 9, -3]), ([1], [2])], attrs: [(.activation, .int(2))])
    XCTAssertEqual(y, [0, 3, 6, 0])
  }

  func testGeluExact() throws {
    let y = try one(.gelu, [([2], [0, 1])])
    XCTAssertEqual(y[0], 0)
    XCTAssertEqual(y[1], 0.8413447, accuracy: 1e-6)
  }

  func testReduceMax() throws {
    // [2, 3, 2]: x[0] = [[1, -4], [7, 2], [-9, 0]], x[1] = [[-1, -2], [-3, 8], [5, -6]].
    let x: [Float] = [1, -4, 7, 2, -9, 0, -1, -2, -3, 8, 5, -6]
    XCTAssertEqual(try one(.reduceMax, [([2, 3, 2], x)], attrs: [(.axes, .ints([1]))]), [7, 2, 5, 8])
    XCTAssertEqual(try one(.reduceMax, [([2, 3, 2], x)], attrs: [(.axes, .ints([0, -1]))]), [1, 8, 5])
    XCTAssertEqual(
      try one(.reduceMax, [([2, 3, 2], x)], attrs: [(.axes, .ints([-3, 1, 2])), (.keepDims, .int(1))]), [8])
    XCTAssertEqual(try one(.reduceMax, [([2, 3, 2], x)]), x)  // no axes: nothing reduced
    let nan = try one(.reduceMax, [([2, 2], [1, .nan, -1, 3])], attrs: [(.axes, .ints([1]))])
    XCTAssertTrue(nan[0].isNaN)
    XCTAssertEqual(nan[1], 3)
    assertThrows(.unsupportedOp, "repeated") {
      _ = try self.one(.reduceMax, [([2, 3], [0, 0, 0, 0, 0, 0])], attrs: [(.axes, .ints([1, -1]))])
    }
  }

  /// int8 ReduceMax: the largest raw value; requantized when the output's
  /// parameters differ (scale 0.5 -> 0.25, zero point 3 -> -1:
  /// (q - 3) * 2 - 1).
  func testReduceMaxInt8() throws {
    func run(_ yScale: Float, _ yZero: Int32) throws -> [Int8] {
      var g = TestGraph()
      g.def.tensors.append(
        TensorSpec(name: "x", dtype: .int8, shape: [2, 3], quant: Quantization(axis: nil, scales: [0.5], zeroPoints: [3])))
      g.constants.append(nil)
      g.def.inputs = [0]
      let y = g.op(.reduceMax, [0], attrs: [(.axes, .ints([1]))])
      g.def.tensors[y].quant = Quantization(axis: nil, scales: [yScale], zeroPoints: [yZero])
      let m = try loadModel(g.bytes(outputs: [y]))
      let s = try Session.create(model: m, options: SessionOptions(threads: 1))
      let x: [Int8] = [-128, 5, 4, 127, -7, 0]
      x.withUnsafeBytes { s.inputBuffer(0).copyMemory(from: $0) }
      try s.run()
      return Array(s.outputBuffer(0).bindMemory(to: Int8.self))
    }
    XCTAssertEqual(try run(0.5, 3), [5, 127])
    XCTAssertEqual(try run(0.25, -1), [3, 127])  // (5-3)*2-1 = 3; (127-3)*2-1 saturates
  }
}
