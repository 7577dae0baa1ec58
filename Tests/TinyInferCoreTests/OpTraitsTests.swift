@testable import TinyInferCore
import XCTest

/// The op-traits table against what the kernels and passes do.
final class OpTraitsTests: XCTestCase {
  /// Every kernel takes exactly the inputs its traits declare: one more or
  /// one fewer is refused with the declared range (kernels check it first).
  func testArityMatchesTheKernels() {
    for op in OpKind.allCases {
      let r = op.traits.inputs
      let node = Node(op: op, inputs: [], outputs: [0])
      var counts: [Int] = []
      if r.lowerBound > 0 { counts.append(r.lowerBound - 1) }
      if r.upperBound < 1 << 16 { counts.append(r.upperBound + 1) }
      for n in counts {
        assertThrows(.badFormat, "takes \(r.lowerBound)...\(r.upperBound) inputs") {
          _ = try Registry.infer(node, [TensorDesc?](repeating: nil, count: n))
        }
      }
    }
  }

  func testOpCodesAreNamed() {
    // Codes are handed out in ranges to parallel branches: a gap below a range is allowed.
    XCTAssertLessThanOrEqual(OpKind.allCases.count, Int(OpKind.maxCode))
    XCTAssertEqual(Set(OpKind.allCases.map(\.name)).count, OpKind.allCases.count)
    for op in OpKind.allCases {
      XCTAssertEqual(OpKind(rawValue: op.rawValue), op)
      XCTAssertFalse(op.name.isEmpty)
    }
    XCTAssertEqual(OpKind.reduceMax.rawValue, 47)
    XCTAssertEqual(OpKind.reduceMax.name, "ReduceMax")
  }

  /// The facts the passes read, for the ops whose behaviour the tests of
  /// the passes pin down.
  func testFactsThePassesRead() {
    let fused = OpKind.allCases.filter { $0.traits.fusedActivation }.map(\.name)
    XCTAssertEqual(
      fused, ["FullyConnected", "Conv2D", "DepthwiseConv2D", "TransposeConv2D", "MaxPool2D", "AveragePool2D", "Add",
        "Sub", "Mul", "Div"])
    XCTAssertEqual(OpKind.relu.traits.asFusedActivation, .relu)
    XCTAssertEqual(OpKind.relu6.traits.asFusedActivation, .relu6)
    XCTAssertNil(OpKind.leakyRelu.traits.asFusedActivation)
    XCTAssertEqual(OpKind.depthwiseConv2D.traits.family, .linear(channelLast: true, pads: true))
    XCTAssertEqual(OpKind.fullyConnected.traits.family, .linear(channelLast: false, pads: false))
    XCTAssertEqual(OpKind.squeeze.traits.family, .reshape)
    XCTAssertEqual(OpKind.matMul.traits.fp16Slots, .slots(0, 1))
    XCTAssertEqual(OpKind.conv2D.traits.weightSlots.mask, 0b110)
    XCTAssertEqual(OpKind.batchNorm.traits.weightSlots.mask, 0b11110)
    XCTAssertTrue(OpKind.gather.traits.indexSlots.contains(1))
    XCTAssertEqual(OpKind.reduceMax.traits.staticInt8, .sameParams)
    XCTAssertEqual(OpKind.resizeNearest.traits.staticInt8, .sameParams)
    XCTAssertEqual(OpKind.resizeBilinear.traits.staticInt8, .sameParams)
    XCTAssertEqual(OpKind.resizeBilinear.traits.int8, .always)
    XCTAssertEqual(OpKind.maximum.traits.staticInt8, .commonParams)
    XCTAssertEqual(OpKind.minimum.traits.int8, .always)
    XCTAssertEqual(OpKind.mean.traits.staticInt8, .calibrated)
    XCTAssertNil(OpKind.gelu.traits.staticInt8)
  }
}
