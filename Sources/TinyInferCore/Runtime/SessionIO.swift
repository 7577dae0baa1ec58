/// Checked copies in and out of a session, for Swift programs: the index and
/// the size (and for `[Float]` the dtype) are checked and a mistake throws
/// `.invalidArgument` instead of trapping. `inputBuffer`/`outputBuffer` stay
/// the zero-copy way.
extension Session {
  /// Copies `bytes` (exactly the input's size, little-endian elements of its
  /// dtype) into graph input `i`.
  public func setInput(_ i: Int, bytes: UnsafeRawBufferPointer) throws(TinfError) {
    _ = try checkedDesc(input: true, i, float32: false)
    let dst = inputBuffer(i)
    guard bytes.count == dst.count else {
      throw .arg("input \(i) has \(dst.count) bytes, got \(bytes.count)")
    }
    if let d = dst.baseAddress, let s = bytes.baseAddress { d.copyMemory(from: s, byteCount: dst.count) }
  }

  /// Copies `values` into float32 graph input `i` (exactly its element count).
  public func setInput(_ i: Int, _ values: [Float]) throws(TinfError) {
    _ = try checkedDesc(input: true, i, float32: true)
    var result: Result<Void, TinfError> = .success(())
    values.withUnsafeBytes { raw in
      do throws(TinfError) { try setInput(i, bytes: raw) } catch { result = .failure(error) }
    }
    try result.get()
  }

  /// A copy of graph output `i`'s bytes after a run.
  public func outputBytes(_ i: Int) throws(TinfError) -> [UInt8] {
    _ = try checkedDesc(input: false, i, float32: false)
    return Array(outputBuffer(i))
  }

  /// A copy of float32 graph output `i` after a run.
  public func outputFloats(_ i: Int) throws(TinfError) -> [Float] {
    _ = try checkedDesc(input: false, i, float32: true)
    return Array(outputBuffer(i).bindMemory(to: Float.self))
  }

  /// The description of graph input (output) `i` as this session runs it
  /// (its shape reflects `SessionOptions.inputShapes`).
  public func inputDesc(_ i: Int) throws(TinfError) -> TensorDesc { try checkedDesc(input: true, i, float32: false) }
  public func outputDesc(_ i: Int) throws(TinfError) -> TensorDesc { try checkedDesc(input: false, i, float32: false) }

  private func checkedDesc(input: Bool, _ i: Int, float32: Bool) throws(TinfError) -> TensorDesc {
    let list = input ? graph.inputs : graph.outputs
    let side = input ? "input" : "output"
    guard i >= 0 && i < list.count else {
      throw .arg("\(side) index \(i) out of range (the model has \(list.count))")
    }
    let t = graph.tensors[list[i]]
    if float32 && t.dtype != .float32 {
      throw .arg("\(side) \(i) ('\(t.name)') is \(t.dtype.name), not float32: use the bytes variant")
    }
    return t
  }
}
