@testable import TinyInferCore
import XCTest

/// Ops on run-time data, hand-computed (pytest checks them against numpy
/// over dtypes and shapes): comparisons and logic through a Cast back to
/// float32, rounding, the new reductions, Expand, Tile and Range.
final class RuntimeDataOpTests: XCTestCase {
  /// Runs the float32 graph built by `build` (inputs x0, x1, ...) and returns its one output.
  func run(_ inputs: [([Int], [Float])], _ build: (inout TestGraph, [Int]) -> Int) throws -> [Float] {
    var g = TestGraph()
    var ids: [Int] = []
    for (i, (shape, _)) in inputs.enumerated() { ids.append(g.input("x\(i)", shape)) }
    let y = build(&g, ids)
    return try runModel(try loadModel(g.bytes(outputs: [y])), inputs.map { $0.1 })[0]
  }

  func toFloat(_ g: inout TestGraph, _ t: Int) -> Int {
    g.op(.cast, [t], attrs: [(.dtype, .int(Int64(DType.float32.rawValue)))])
  }

  func testCompareLogicAndWhere() throws {
    let a: [Float] = [1, 2, .nan, 4]
    let b: [Float] = [2, 2, 2, 2]
    let ge = try run([([4], a), ([4], b)]) { g, x in self.toFloat(&g, g.op(.greaterEqual, x)) }
    XCTAssertEqual(ge, [0, 1, 0, 1])
    let ne = try run([([4], a), ([1], [2])]) { g, x in self.toFloat(&g, g.op(.notEqual, x)) }
    XCTAssertEqual(ne, [1, 0, 1, 1])  // NaN != 2
    // Where(a < b or a == 4, a, -b) with the condition broadcast.
    let w = try run([([4], a), ([4], b)]) { g, x in
      let lt = g.op(.less, x)
      let four = g.op(.equal, [x[0], g.const("four", [1], [4])])
      let c = g.op(.logicalOr, [lt, four])
      let minus = g.op(.sub, [g.const("zero", [1], [0]), x[1]])
      return g.op(.select, [c, x[0], minus])
    }
    XCTAssertEqual(w, [1, -2, -2, 4])
  }

  func testRounding() throws {
    let x: [Float] = [0.5, 1.5, 2.5, -0.5, -1.5, -2.7, 3.2]
    XCTAssertEqual(try run([([7], x)]) { g, i in g.op(.round, i) }, [0, 2, 2, -0, -2, -3, 3])
    XCTAssertEqual(try run([([7], x)]) { g, i in g.op(.floor, i) }, [0, 1, 2, -1, -2, -3, 3])
    XCTAssertEqual(try run([([7], x)]) { g, i in g.op(.ceil, i) }, [1, 2, 3, -0, -1, -2, 4])
  }

  func testCastSaturatesAndTruncates() throws {
    let x: [Float] = [2.9, -2.9, 300, -300, .nan]
    let y = try run([([5], x)]) { g, i in
      self.toFloat(&g, g.op(.cast, i, attrs: [(.dtype, .int(Int64(DType.int8.rawValue)))]))
    }
    XCTAssertEqual(y, [2, -2, 127, -128, 0])
  }

  func testReductions() throws {
    let x: [Float] = [1, 2, 3, 4, 5, 6]  // [2, 3]
    XCTAssertEqual(try run([([2, 3], x)]) { g, i in g.op(.reduceSum, i, attrs: [(.axes, .ints([1]))]) }, [6, 15])
    XCTAssertEqual(try run([([2, 3], x)]) { g, i in g.op(.reduceProd, i, attrs: [(.axes, .ints([0]))]) }, [4, 10, 18])
    XCTAssertEqual(
      try run([([2, 3], x)]) { g, i in g.op(.reduceMin, i, attrs: [(.axes, .ints([-1])), (.keepDims, .int(1))]) },
      [1, 4])
  }

  func testExpandTileRange() throws {
    XCTAssertEqual(
      try run([([2, 1], [1, 2])]) { g, i in g.op(.expand, i, attrs: [(.shape, .ints([2, 3]))]) }, [1, 1, 1, 2, 2, 2])
    XCTAssertEqual(
      try run([([1, 2], [1, 2])]) { g, i in g.op(.tile, i, attrs: [(.sizes, .ints([2, 2]))]) }, [1, 2, 1, 2, 1, 2, 1, 2])
    let r = try run([([3], [10, 20, 30])]) { g, i in
      g.op(.add, [i[0], g.op(.range, [], attrs: [(.value, .floats([0, 1.5, 0.5]))])])
    }
    XCTAssertEqual(r, [10, 20.5, 31])
  }
}
