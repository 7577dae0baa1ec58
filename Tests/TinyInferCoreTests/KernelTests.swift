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
}
