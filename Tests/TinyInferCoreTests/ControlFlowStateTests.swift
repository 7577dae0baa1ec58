@testable import TinyInferCore
import XCTest

/// Hand-computed cases of the control-flow ops (While over subgraphs, format
/// 1.2) and of the session's variables.
final class ControlFlowStateTests: XCTestCase {
  /// x [2] -> While(i < 3: i + 1, x * 2) -> x * 8; the file is 1.2 and reads back.
  func testWhileDoublesThreeTimes() throws {
    var g = TestGraph()
    let x = g.input("x", [2])
    let i0 = g.const("i0", [1], [0])
    let three = g.const("three", [1], [3])
    let one = g.const("one", [1], [1])
    let two = g.const("two", [2], [2, 2])
    // subgraph 0: condition (ci, cx) -> ci < 3
    let ci = g.input("ci", [1])
    let cx = g.input("cx", [2])
    let less = g.op(.less, [ci, three])
    // subgraph 1: body (bi, bx) -> (bi + 1, bx * 2)
    let bi = g.input("bi", [1])
    let bx = g.input("bx", [2])
    let next = g.op(.add, [bi, one])
    let doubled = g.op(.mul, [bx, two])
    let nodes = g.def.nodes
    var cond = SubgraphDef(name: "cond")
    cond.inputs = [ci, cx]
    cond.outputs = [less]
    cond.nodes = [nodes[0]]
    var body = SubgraphDef(name: "body")
    body.inputs = [bi, bx]
    body.outputs = [next, doubled]
    body.nodes = [nodes[1], nodes[2]]
    g.def.nodes = []
    g.def.inputs = [x]
    g.def.subgraphs = [cond, body]
    let loop = g.op(.whileLoop, [i0, x], attrs: [(.subgraphs, .ints([0, 1]))])
    let outI = g.def.nodes[0].outputs[0]
    g.def.tensors.append(TensorSpec(name: "x_out", dtype: nil, shape: nil))
    g.constants.append(nil)
    g.def.nodes[0].outputs.append(g.def.tensors.count - 1)
    let bytes = g.bytes(outputs: [outI, g.def.tensors.count - 1])
    XCTAssertEqual(bytes[6], 2)  // minor version 2: subgraphs
    let m = try loadModel(bytes)
    XCTAssertEqual(m.graph.subgraphs.count, 2)
    XCTAssertEqual(loop, outI)
    let out = try runModel(m, [[1.5, -4]])
    XCTAssertEqual(out[0], [3])
    XCTAssertEqual(out[1], [12, -32])
  }

  /// y = v + x; v <- y: a running sum that reset_state restarts.
  func testVariableAccumulatesAndResets() throws {
    var g = TestGraph()
    let x = g.input("x", [2])
    let v = g.const("v", [2], [1, 2])
    let cur = g.op(.readVariable, [v])
    let y = g.op(.add, [cur, x])
    _ = g.op(.assignVariable, [v, y])
    let m = try loadModel(g.bytes(outputs: [y]))
    let s = try Session.create(model: m)
    XCTAssertEqual(s.variables?.count, 1)
    func step() throws -> [Float] {
      let buf = s.inputBuffer(0)
      [Float(10), 20].withUnsafeBytes { buf.copyMemory(from: $0) }
      try s.run()
      return Array(s.outputBuffer(0).bindMemory(to: Float.self))
    }
    XCTAssertEqual(try step(), [11, 22])
    XCTAssertEqual(try step(), [21, 42])
    try s.resetState()
    XCTAssertEqual(try step(), [11, 22])
  }
}
