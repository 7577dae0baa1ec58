/// DynamicUpdateSlice (docs/ops.md, Data movement; TFLite DYNAMIC_UPDATE_SLICE,
/// XLA semantics): operand (any dtype), update (the operand's dtype and rank,
/// each dim at most the operand's), start (int32 or int64 [rank], a run-time
/// value). The output is the operand with the update written at `start`, each
/// start clamped to `0...operand.shape[i] - update.shape[i]` so that the
/// update always fits. The output may share the operand's buffer
/// (OpTraits.inPlace); then only the update's elements move.
enum DynamicUpdateSliceKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 3...3)
    let x = try required(inputs, 0, "operand")
    let u = try required(inputs, 1, "update")
    let start = try required(inputs, 2, "start")
    guard u.dtype == x.dtype else {
      throw TinfError(.unsupportedDType, "update '\(u.name)' is \(u.dtype.name), the operand \(x.dtype.name)")
    }
    guard start.dtype == .int32 || start.dtype == .int64 else {
      throw TinfError(.unsupportedDType, "start '\(start.name)' is \(start.dtype.name); only int32 and int64")
    }
    guard u.shape.count == x.shape.count, start.shape == [x.shape.count] else {
      throw .shape(
        "update \(describe(u.shape)) and start \(describe(start.shape)) must have the operand's rank "
          + "(\(describe(x.shape)), start [\(x.shape.count)])")
    }
    for i in 0..<x.shape.count where u.shape[i] > x.shape[i] {
      throw .shape("update \(describe(u.shape)) is larger than the operand \(describe(x.shape)) in dim \(i)")
    }
    return [TensorType(x.dtype, x.shape, quant: x.quant)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let x = ctx.inputs[0], let u = ctx.inputs[1], let start = ctx.inputs[2] else {
      throw TinfError(.internal, "missing input")
    }
    let src = try movePointer(ctx, 0)
    let upd = try movePointer(ctx, 1)
    let sp = try movePointer(ctx, 2)
    let dst = ctx.outputData[0]
    let bytes = x.nbytes
    let rank = x.shape.count
    let es = x.dtype.size
    let xs = x.shape
    let us = u.shape
    let wide = start.dtype == .int64
    // The update as rows of its last dim: `rows` rows of `rowBytes`.
    let rowBytes = (rank == 0 ? 1 : us[rank - 1]) &* es
    let rows = u.count / max(1, rank == 0 ? 1 : us[rank - 1])
    let xStrides = stridesOf(xs)
    let starts = try Scratch<Int>(count: max(1, rank))
    let index = try Scratch<Int>(count: max(1, rank))
    return { () throws(TinfError) in
      if UnsafeRawPointer(dst) != src { dst.copyMemory(from: src, byteCount: bytes) }
      for i in 0..<rank {
        let v = wide ? Int(sp.load(fromByteOffset: i &* 8, as: Int64.self)) : Int(sp.load(fromByteOffset: i &* 4, as: Int32.self))
        starts.base[i] = min(max(v, 0), xs[i] &- us[i])
        index.base[i] = 0
      }
      // Each row of the update to its place in the output, the index counting over the update's dims but the last.
      var from = upd
      for _ in 0..<rows {
        var off = 0
        for i in 0..<rank { off = off &+ (starts.base[i] &+ index.base[i]) &* xStrides[i] }
        (dst + off &* es).copyMemory(from: from, byteCount: rowBytes)
        from += rowBytes
        var i = rank &- 2
        while i >= 0 {
          index.base[i] &+= 1
          if index.base[i] < us[i] { break }
          index.base[i] = 0
          i &-= 1
        }
      }
    }
  }
}
