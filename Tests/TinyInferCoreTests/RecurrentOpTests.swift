import Foundation
@testable import TinyInferCore
import XCTest

/// LSTM and GRU, hand-computed with one unit and one input (pytest checks them
/// against numpy and the peers over every attribute).
final class RecurrentOpTests: XCTestCase {
  func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

  /// LSTM with W = [1, 0, 0, 2] (gates i, o, f, c), R = 0, x = [1, 0]: step 0 has
  /// i = s(1), o = f = 1/2, c = s(1) tanh(2), h = tanh(c) / 2; step 1 (x = 0) keeps c / 2.
  func testLSTMByHand() throws {
    var g = TestGraph()
    let x = g.input("x", [2, 1, 1])
    let w = g.const("w", [1, 4, 1], [1, 0, 0, 2])
    let r = g.const("r", [1, 4, 1], [0, 0, 0, 0])
    let y = g.op(.lstm, [x, w, r])
    let out = try runModel(try loadModel(g.bytes(outputs: [y])), [[1, 0]])[0]
    let c1 = sigmoid(1) * tanh(2.0)
    XCTAssertEqual(out.count, 2)
    XCTAssertEqual(Double(out[0]), tanh(c1) / 2, accuracy: 1e-6)
    XCTAssertEqual(Double(out[1]), tanh(c1 / 2) / 2, accuracy: 1e-6)
  }

  /// GRU with W = [0, 0, 1] (gates z, r, h), R = 0, h0 = 1, x = 2: z = r = 1/2,
  /// n = tanh(2), h = n / 2 + 1 / 2; reversed with two steps the result is the same at step 0.
  func testGRUByHand() throws {
    var g = TestGraph()
    let x = g.input("x", [1, 1, 1])
    let w = g.const("w", [1, 3, 1], [0, 0, 1])
    let r = g.const("r", [1, 3, 1], [0, 0, 0])
    let h0 = g.const("h0", [1, 1, 1], [1])
    let y = g.op(.gru, [x, w, r, -1, h0], attrs: [(.mode, .int(1))])
    let out = try runModel(try loadModel(g.bytes(outputs: [y])), [[2]])[0]
    XCTAssertEqual(Double(out[0]), tanh(2.0) / 2 + 0.5, accuracy: 1e-6)
  }

  func testBadShapesAreRefused() throws {
    var g = TestGraph()
    let x = g.input("x", [2, 1, 3])
    let w = g.const("w", [1, 4, 2], [Float](repeating: 0, count: 8))  // input size 2, X has 3
    let r = g.const("r", [1, 4, 1], [0, 0, 0, 0])
    let y = g.op(.lstm, [x, w, r])
    XCTAssertThrowsError(try loadModel(g.bytes(outputs: [y])))
  }
}
