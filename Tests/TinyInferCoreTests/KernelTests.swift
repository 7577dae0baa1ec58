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

  /// int8 ResizeBilinear (TFLite's integer kernel) and Maximum, computed by
  /// hand. 2x2 -> 3x3 with align_corners: scale (1024 + 1) / 2 = 512, so
  /// rows and columns 0, 1, 2 read (0, 0, w 0), (0, 1, w 512), (1, 1, w 0).
  /// The centre: the row passes 0 * 512 + 100 * 512 = 51200 and
  /// -100 * 512 + 50 * 512 = -25600, then (51200 + -25600) * 512 / 2^20 =
  /// 12.5, rounded half away from zero to 13. Maximum with 20 (raw values,
  /// the parameters shared).
  func testResizeBilinearAndMaximumInt8() throws {
    var g = TestGraph()
    let q = Quantization(axis: nil, scales: [0.1], zeroPoints: [0])
    g.def.tensors.append(TensorSpec(name: "x", dtype: .int8, shape: [1, 2, 2, 1], quant: q))
    g.constants.append(nil)
    g.def.inputs = [0]
    let y = g.op(.resizeBilinear, [0], attrs: [(.size, .ints([3, 3])), (.alignCorners, .int(1))])
    g.def.tensors[y].quant = q
    g.def.tensors.append(TensorSpec(name: "c", dtype: .int8, shape: [1], quant: q))
    g.constants.append([20])
    let m = g.op(.maximum, [y, g.def.tensors.count - 1])
    g.def.tensors[m].quant = q
    let model = try loadModel(g.bytes(outputs: [y, m]))
    let s = try Session.create(model: model, options: SessionOptions(threads: 1))
    let x: [Int8] = [0, 100, -100, 50]
    x.withUnsafeBytes { s.inputBuffer(0).copyMemory(from: $0) }
    try s.run()
    XCTAssertEqual(Array(s.outputBuffer(0).bindMemory(to: Int8.self)), [0, 50, 100, -50, 13, 75, -100, -25, 50])
    XCTAssertEqual(Array(s.outputBuffer(1).bindMemory(to: Int8.self)), [20, 50, 100, 20, 20, 75, 20, 20, 50])
  }
}
