@testable import TinyInferCore
import XCTest

/// Builds small graphs in tests.
struct TestGraph {
  var def = GraphDef()
  var constants: [[UInt8]?] = []

  mutating func input(_ name: String, _ shape: [Int]) -> Int {
    def.tensors.append(TensorSpec(name: name, dtype: .float32, shape: shape))
    constants.append(nil)
    def.inputs.append(def.tensors.count - 1)
    return def.tensors.count - 1
  }

  mutating func const(_ name: String, _ shape: [Int], _ values: [Float]) -> Int {
    def.tensors.append(TensorSpec(name: name, dtype: .float32, shape: shape))
    var bytes: [UInt8] = []
    for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
    constants.append(bytes)
    return def.tensors.count - 1
  }

  mutating func op(_ op: OpKind, _ inputs: [Int], attrs: [(AttrKey, AttrValue)] = []) -> Int {
    def.tensors.append(TensorSpec(name: "t\(def.tensors.count)", dtype: nil, shape: nil))
    constants.append(nil)
    let out = def.tensors.count - 1
    var a = Attributes()
    for (k, v) in attrs { a[k] = v }
    def.nodes.append(Node(op: op, inputs: inputs, outputs: [out], attrs: a))
    return out
  }

  func bytes(outputs: [Int]) -> [UInt8] {
    var d = def
    d.outputs = outputs
    return ModelFile.write(d, constants: constants)
  }
}

func loadModel(_ bytes: [UInt8], optimize: Bool = true) throws(TinfError) -> Model {
  // Copied by the loader unless aligned; either way it does not outlive this call's buffer.
  var result: Result<Model, TinfError> = .failure(TinfError(.internal, "unset"))
  bytes.withUnsafeBytes { raw in
    do throws(TinfError) {
      // Force a copy: Array storage is not guaranteed 64-byte aligned nor kept alive.
      let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: raw.count + 1, alignment: 64)
      let shifted = UnsafeMutableRawBufferPointer(rebasing: copy[1...])
      shifted.copyMemory(from: raw)
      defer { copy.deallocate() }
      result = .success(try Model.load(buffer: UnsafeRawBufferPointer(shifted), optimize: optimize))
    } catch {
      result = .failure(error)
    }
  }
  return try result.get()
}

func runModel(_ model: Model, _ inputs: [[Float]], threads: Int = 1) throws(TinfError) -> [[Float]] {
  let s = try Session.create(model: model, options: SessionOptions(threads: threads))
  for (i, x) in inputs.enumerated() {
    let buf = s.inputBuffer(i)
    x.withUnsafeBytes { buf.copyMemory(from: $0) }
  }
  try s.run()
  var outs: [[Float]] = []
  for i in 0..<model.graph.outputs.count {
    let b = s.outputBuffer(i)
    outs.append(Array(b.bindMemory(to: Float.self)))
  }
  return outs
}

func assertThrows(
  _ status: Status, _ substring: String = "", file: StaticString = #filePath, line: UInt = #line,
  _ body: () throws -> Void
) {
  do {
    try body()
    XCTFail("expected \(status) error", file: file, line: line)
  } catch let error as TinfError {
    XCTAssertEqual(error.status, status, error.message, file: file, line: line)
    if !substring.isEmpty {
      XCTAssertTrue(error.message.contains(substring), "'\(error.message)' lacks '\(substring)'", file: file, line: line)
    }
  } catch {
    XCTFail("unexpected error \(error)", file: file, line: line)
  }
}
