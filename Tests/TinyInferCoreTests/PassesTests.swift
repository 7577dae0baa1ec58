@testable import TinyInferCore
import XCTest

final class PassesTests: XCTestCase {
  /// x [1,2] -> FullyConnected -> BatchNorm -> Relu, hand-computed:
  /// FC gives [3.5, 6.5]; s = scale / sqrt(var + eps) = [2, 3], t = bias - mean * s = [1, -3].
  func fcBatchNormRelu() -> [UInt8] {
    var g = TestGraph()
    let x = g.input("x", [1, 2])
    let w = g.const("w", [2, 2], [1, 2, 3, 4])
    let b = g.const("b", [2], [0.5, -0.5])
    let fc = g.op(.fullyConnected, [x, w, b])
    let bn = g.op(
      .batchNorm,
      [fc, g.const("scale", [2], [4, 3]), g.const("bias", [2], [1, 0]), g.const("mean", [2], [0, 1]),
       g.const("var", [2], [3, 0])], attrs: [(.epsilon, .float(1))])
    let r = g.op(.relu, [bn])
    return g.bytes(outputs: [r])
  }

  func load(_ bytes: [UInt8], optimize: Bool) throws -> Model { try loadModel(bytes, optimize: optimize) }

  func testBatchNormFoldedAndReluFused() throws {
    let on = try load(fcBatchNormRelu(), optimize: true)
    let off = try load(fcBatchNormRelu(), optimize: false)
    XCTAssertEqual(on.graph.nodes.map { $0.op }, [.fullyConnected])
    XCTAssertEqual(off.graph.nodes.map { $0.op }, [.fullyConnected, .batchNorm, .relu])
    XCTAssertEqual(on.passReport.count, 2)
    XCTAssertTrue(on.passReport[0].hasPrefix("fold BatchNorm"))
    XCTAssertTrue(on.passReport[1].hasPrefix("fuse Relu"))
    XCTAssertEqual(off.passReport, [])
    for x: [Float] in [[1, 1], [-1, -1]] {
      let a = try runModel(on, [x])[0]
      let b = try runModel(off, [x])[0]
      XCTAssertEqual(a, b)
    }
    XCTAssertEqual(try runModel(on, [[1, 1]])[0], [8, 16.5])
    XCTAssertEqual(try runModel(on, [[-1, -1]])[0], [0, 0])  // BatchNorm gives [-4, -25.5]; the fused Relu clamps
  }
}
