@testable import TinyInferCore
import XCTest

final class PlannerTests: XCTestCase {
  /// A chain with a branch: x -> relu -> (tanh, exp) -> add -> fc -> softmax.
  func branchy() throws -> Model {
    var g = TestGraph()
    let x = g.input("x", [4, 64])
    let a = g.op(.relu, [x])
    let b = g.op(.tanh, [a])
    let c = g.op(.exp, [a])
    let d = g.op(.add, [b, c])
    let w = g.const("w", [32, 64], [Float](repeating: 0.01, count: 32 * 64))
    let e = g.op(.fullyConnected, [d, w])
    let f = g.op(.logistic, [e])
    let s = g.op(.softmax, [f])
    return try loadModel(g.bytes(outputs: [s, b]))
  }

  func testNoTwoLiveTensorsOverlap() throws {
    let m = try branchy()
    let plan = try MemoryPlanner.plan(m.graph)
    let ts = m.graph.tensors
    for i in ts.indices {
      for j in ts.indices where j > i {
        guard let oi = plan.offsets[i], let oj = plan.offsets[j], let li = plan.lifetimes[i],
          let lj = plan.lifetimes[j]
        else { continue }
        if oi == oj && li == lj { continue }  // the same (in-place) buffer
        let timeOverlap = li.overlaps(lj)
        let spaceOverlap = oi < oj + ts[j].nbytes && oj < oi + ts[i].nbytes
        XCTAssertFalse(timeOverlap && spaceOverlap, "\(ts[i].name) and \(ts[j].name) overlap")
      }
      if let o = plan.offsets[i] {
        XCTAssertEqual(o % 64, 0)
        XCTAssertLessThanOrEqual(o + ts[i].nbytes, plan.size)
      }
    }
    XCTAssertLessThan(plan.size, plan.unplannedSize)
  }

  func testInPlaceChainUsesOneBuffer() throws {
    var g = TestGraph()
    let x = g.input("x", [1000])
    var t = g.op(.relu, [x])
    for _ in 0..<10 { t = g.op(.tanh, [t]) }
    let m = try loadModel(g.bytes(outputs: [t]))
    let plan = try MemoryPlanner.plan(m.graph)
    // The input (kept intact) plus one buffer shared by the whole chain.
    XCTAssertEqual(plan.size, 2 * 4032)
    let out = try runModel(m, [[Float](repeating: -1, count: 1000)])
    XCTAssertEqual(out[0][0], 0)
  }

  func testInputsSurviveARun() throws {
    var g = TestGraph()
    let x = g.input("x", [8])
    let y = g.op(.exp, [x])
    let m = try loadModel(g.bytes(outputs: [y]))
    let s = try Session.create(model: m)
    let inp = s.inputBuffer(0).bindMemory(to: Float.self)
    for i in 0..<8 { inp[i] = Float(i) }
    try s.run()
    try s.run()
    XCTAssertEqual(inp[7], 7)
    XCTAssertEqual(s.outputBuffer(0).bindMemory(to: Float.self)[0], 1)
  }

  func testThreadsGiveTheSameResult() throws {
    let m = try branchy()
    var x: [Float] = []
    for i in 0..<256 { x.append(Float(i % 17) * 0.1 - 0.5) }
    XCTAssertEqual(try runModel(m, [x], threads: 1), try runModel(m, [x], threads: 2))
  }
}
