@testable import TinyInferCore
import XCTest

/// Model.subgraph (Runtime/Subgraph.swift) and session hoisting
/// (Runtime/Hoisting.swift) on hand-computed graphs (issue 18).
final class SubgraphTests: XCTestCase {
  /// x [1,2] -> Relu (t1) -> Add [1, 1] (t3) -> Mul [2, 2] (t5).
  func chain() -> (bytes: [UInt8], relu: String, add: String, mul: String) {
    var g = TestGraph()
    let x = g.input("x", [1, 2])
    let r = g.op(.relu, [x])
    let a = g.op(.add, [r, g.const("one", [2], [1, 1])])
    let m = g.op(.mul, [a, g.const("two", [2], [2, 2])])
    let name = { (t: Int) in g.def.tensors[t].name }
    return (g.bytes(outputs: [m]), name(r), name(a), name(m))
  }

  func testRunFromAndToIntermediates() throws {
    let c = chain()
    let model = try loadModel(c.bytes, optimize: false)
    // relu([-1, 2]) = [0, 2]; + 1 = [1, 3]; * 2 = [2, 6]
    XCTAssertEqual(try runModel(model, [[-1, 2]])[0], [2, 6])
    let toAdd = try model.subgraph(inputs: ["x"], outputs: [c.relu, c.add], addGraphInputs: false)
    XCTAssertEqual(toAdd.graph.nodes.map { $0.op }, [.relu, .add])
    let outs = try runModel(toAdd, [[-1, 2]])
    XCTAssertEqual(outs[0], [0, 2])
    XCTAssertEqual(outs[1], [1, 3])
    let fromAdd = try model.subgraph(inputs: [c.add], outputs: [c.mul], addGraphInputs: false)
    XCTAssertEqual(fromAdd.graph.nodes.map { $0.op }, [.mul])
    XCTAssertEqual(try runModel(fromAdd, [[5, -1]])[0], [10, -2])
    XCTAssertTrue(fromAdd.passReport.last?.hasPrefix("subgraph: 1 of 3 ops") ?? false)
    XCTAssertTrue(fromAdd.parent === model)
  }

  func testSubgraphErrors() throws {
    let c = chain()
    let model = try loadModel(c.bytes, optimize: false)
    assertThrows(.invalidArgument, "no tensor of that name") {
      _ = try model.subgraph(inputs: [], outputs: ["nope"], addGraphInputs: true)
    }
    assertThrows(.invalidArgument, "is a constant") {
      _ = try model.subgraph(inputs: ["one"], outputs: [c.mul], addGraphInputs: true)
    }
    assertThrows(.invalidArgument, "not among the given inputs") {
      _ = try model.subgraph(inputs: [], outputs: [c.mul], addGraphInputs: false)
    }
    assertThrows(.invalidArgument, "given twice") {
      _ = try model.subgraph(inputs: [c.add, c.add], outputs: [c.mul], addGraphInputs: false)
    }
    let auto = try model.subgraph(inputs: [], outputs: [c.mul], addGraphInputs: true)
    XCTAssertEqual(auto.graph.inputs, model.graph.inputs)
  }

  /// y = x / n with n = ReduceProd(Cast(Shape(x))): the three shape ops are
  /// hoisted; x = all 6 over 6 elements gives 1 everywhere.
  func testShapeArithmeticIsHoisted() throws {
    var g = TestGraph()
    let x = g.input("x", [2, 3])
    let s = g.op(.shape, [x])
    let f = g.op(.cast, [s], attrs: [(.dtype, .int(Int64(DType.float32.rawValue)))])
    let n = g.op(.reduceProd, [f], attrs: [(.axes, .ints([0])), (.keepDims, .int(1))])
    let y = g.op(.div, [x, n])
    let model = try loadModel(g.bytes(outputs: [y]), optimize: false)
    XCTAssertEqual(Hoisting.ops(model.graph), [true, true, true, false])
    XCTAssertTrue(model.passReport.contains { $0.hasPrefix("hoist: 3 ops") })
    let session = try Session.create(model: model)
    for v: Float in [6, 12, -3] {
      try session.setInput(0, [Float](repeating: v, count: 6))
      try session.run()
      XCTAssertEqual(try session.outputFloats(0), [Float](repeating: v / 6, count: 6))
    }
  }
}
