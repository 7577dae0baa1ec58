import TinyInferShims

/// Elementwise binary ops with numpy broadcasting: Add, Sub, Mul, Div,
/// Maximum, Minimum (with a fused activation where the op has one), and PRelu
/// (output shape is x's; the slope broadcasts to it). An Add may carry a
/// fused PRelu (`prelu_slopes`, one slope per channel of the last axis;
/// Passes/PReluFusion.swift): inputs of the output's shape, added and
/// PRelu'd in one pass (the C kernel add_prelu).
enum BinaryOp { case add, sub, mul, div, maximum, minimum, prelu }

enum BinaryKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    let (a, b) = try floatInputs(inputs, 2...2, "input", "input")
    let shape = try broadcastShapes(a.shape, b.shape)
    let op = try Registry.binaryOp(node)
    if let slopes = try node.attrs.floats(.preluSlopes) {
      guard op == .add else { throw .unsupported("\(node.op.name) has no fused PRelu (prelu_slopes: Add only)") }
      guard a.shape == shape, b.shape == shape, let c = shape.last, slopes.count == c else {
        throw .shape(
          "Add with prelu_slopes needs both inputs of one shape and one slope per channel of the last axis (inputs \(describe(a.shape)) and \(describe(b.shape)), \(slopes.count) slopes)"
        )
      }
      guard node.attrs[.activation] == nil || node.attrs[.activation] == .int(0) else {
        throw .unsupported("Add cannot have both a fused activation and prelu_slopes")
      }
    }
    switch op {
    case .prelu:
      guard shape == a.shape else {
        throw .shape("slope \(describe(b.shape)) does not broadcast to the input \(describe(a.shape))")
      }
    case .maximum, .minimum:
      guard node.attrs[.activation] == nil else { throw .unsupported("\(node.op.name) has no fused activation") }
    case .add, .sub, .mul, .div:
      _ = try Activation.from(node.attrs)
    }
    return [TensorType(.float32, shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let plan = BroadcastPlan(ctx.inputs[0]!.shape, ctx.inputs[1]!.shape, ctx.outputs[0].shape)
    let a = ctx.floatIn(0)
    let b = ctx.floatIn(1)
    let y = ctx.floatOut(0)
    let op = try Registry.binaryOp(ctx.node)
    let act = op == .prelu || op == .maximum || op == .minimum ? Activation.none : try Activation.from(ctx.attrs)
    let n = ctx.outputs[0].count
    if let s = try ctx.attrs.floats(.preluSlopes), let c = ctx.outputs[0].shape.last, c > 0 {
      let slopes = try Scratch<Float>(count: s.count)
      for (i, v) in s.enumerated() { slopes.base[i] = v }
      let fused = PackedGemm.kernels.add_prelu
      let rows = n / c
      let pool = ctx.pool
      let minRows = max(1, splitGrain / c)
      return { () throws(TinfError) in
        let w = UnsafePointer(slopes.base)
        pool.parallelRanges(rows, minChunk: minRows) { r in
          let o = r.lowerBound &* c
          fused(a + o, b + o, w, y + o, r.count, c)
        }
      }
    }
    switch op {
    case .add: return split(ctx, plan, AddFn.self, a, b, y, act)
    case .sub: return split(ctx, plan, SubFn.self, a, b, y, act)
    case .mul: return split(ctx, plan, MulFn.self, a, b, y, act)
    case .div: return split(ctx, plan, DivFn.self, a, b, y, act)
    case .maximum: return split(ctx, plan, MaxFn.self, a, b, y, .none)
    case .minimum: return split(ctx, plan, MinFn.self, a, b, y, .none)
    case .prelu: return split(ctx, plan, PReluFn.self, a, b, y, .none)
    }
  }

  /// Elements per thread below which a binary op stays on one thread.
  static let splitGrain = SplitGrain.elementwise

  /// The kernel of one binary op: with several threads and a large output,
  /// inputs of the output's shape (one merged dim) or rows of one
  /// broadcast (two merged dims) are split between the threads the way
  /// the ops before split their rows (contiguous halves): each thread
  /// reads what it wrote (measured: face_landmark's [1,96,96,16] Adds ran
  /// 4x slower with two threads on one thread, reading the other core's
  /// half of both inputs).
  @inline(__always)
  static func split<F: BinaryFn>(
    _ ctx: KernelContext, _ plan: BroadcastPlan, _: F.Type, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    _ y: UnsafeMutablePointer<Float>, _ act: Activation
  ) -> KernelFn {
    let n = plan.total
    let pool = ctx.pool
    if pool.threads > 1 && n >= 2 &* splitGrain && plan.dims.count <= 2 {
      let kern = ti_f32_kernels_get().pointee
      if plan.dims.count == 1 {
        let (ia, ib) = (plan.sa[0], plan.sb[0])
        return { () throws(TinfError) in
          pool.parallelRanges(n, minChunk: splitGrain) { r in
            let lo = r.lowerBound
            kern.binary_row(F.code, a + lo &* ia, ia, b + lo &* ib, ib, y + lo, r.count)
            act.apply(y + lo, r.count)
          }
        }
      }
      let (rows, cols) = (plan.dims[0], plan.dims[1])
      let (sa0, sa1, sb0, sb1) = (plan.sa[0], plan.sa[1], plan.sb[0], plan.sb[1])
      return { () throws(TinfError) in
        pool.parallelRanges(rows, minChunk: max(1, splitGrain / max(cols, 1))) { r in
          let lo = r.lowerBound
          kern.binary_rows(F.code, a + lo &* sa0, sa0, sa1, b + lo &* sb0, sb0, sb1, y + lo &* cols, r.count, cols)
          act.apply(y + lo &* cols, r.count &* cols)
        }
      }
    }
    return { () throws(TinfError) in plan.run(F.self, a, b, y); act.apply(y, n) }
  }
}

/// A binary function: its code for the row kernel (C per CPU level,
/// tinyinfer_kernels_f32.h binary_row, which defines each op).
protocol BinaryFn {
  static var code: Int32 { get }
}

enum AddFn: BinaryFn {
  static var code: Int32 { Int32(TI_F32_BIN_ADD) }
}
enum SubFn: BinaryFn {
  static var code: Int32 { Int32(TI_F32_BIN_SUB) }
}
enum MulFn: BinaryFn {
  static var code: Int32 { Int32(TI_F32_BIN_MUL) }
}
enum DivFn: BinaryFn {
  static var code: Int32 { Int32(TI_F32_BIN_DIV) }
}
enum MaxFn: BinaryFn {
  // NaN propagates, as numpy.maximum does (and minimum).
  static var code: Int32 { Int32(TI_F32_BIN_MAX) }
}
enum MinFn: BinaryFn {
  static var code: Int32 { Int32(TI_F32_BIN_MIN) }
}
enum PReluFn: BinaryFn {
  static var code: Int32 { Int32(TI_F32_BIN_PRELU) }
}

/// Precomputed iteration of a broadcast binary op: the output is walked as
/// rows of its last (merged) dimension, each row reading a and b with a
/// stride of 0 or 1.
struct BroadcastPlan {
  /// Output dims and the two inputs' strides, after merging dims that are
  /// contiguous in all three.
  var dims: [Int]
  var sa: [Int]
  var sb: [Int]
  let total: Int

  init(_ a: [Int], _ b: [Int], _ out: [Int]) {
    let ra = broadcastStrides(a, to: out)
    let rb = broadcastStrides(b, to: out)
    // Merge adjacent dims whose strides continue each other in a and b.
    var d: [Int] = []
    var xa: [Int] = []
    var xb: [Int] = []
    for i in 0..<out.count {
      if out[i] == 1 { continue }
      if let last = d.last,
        xa[xa.count - 1] == ra[i] &* out[i] && xb[xb.count - 1] == rb[i] &* out[i]
      {
        d[d.count - 1] = last &* out[i]
        xa[xa.count - 1] = ra[i]
        xb[xb.count - 1] = rb[i]
      } else {
        d.append(out[i])
        xa.append(ra[i])
        xb.append(rb[i])
      }
    }
    if d.isEmpty {
      d = [1]
      xa = [0]
      xb = [0]
    }
    dims = d
    sa = xa
    sb = xb
    total = out.reduce(1, &*)
  }

  @inline(__always)
  func run<F: BinaryFn>(_: F.Type, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
    let op = F.code
    if dims.count == 2 {
      // Rows of one broadcast (a per-channel vector over pixels): one call.
      ti_f32_kernels_get().pointee.binary_rows(op, a, sa[0], sa[1], b, sb[0], sb[1], y, dims[0], dims[1])
      return
    }
    let rowKernel = ti_f32_kernels_get().pointee.binary_row
    forEachRow { offA, ia, offB, ib, o, inner in rowKernel(op, a + offA, ia, b + offB, ib, y + o, inner) }
  }

  /// The broadcast walked as rows along the last (merged) dim:
  /// `body(offA, ia, offB, ib, o, n)` for each output row of n elements
  /// at offset o, reading a from offA with stride ia (1, or 0 when it is
  /// broadcast) and b likewise. Shared by the float32 and int8 kernels.
  @inline(__always)
  func forEachRow(_ body: (_ offA: Int, _ ia: Int, _ offB: Int, _ ib: Int, _ o: Int, _ n: Int) -> Void) {
    let r = dims.count
    let inner = dims[r - 1]
    let ia = sa[r - 1]
    let ib = sb[r - 1]
    var outer = 1
    for i in 0..<(r - 1) { outer = outer &* dims[i] }
    withUnsafeTemporaryAllocation(of: Int.self, capacity: 8) { idx in
      for i in 0..<8 { idx[i] = 0 }
      var offA = 0
      var offB = 0
      var o = 0
      for _ in 0..<outer {
        body(offA, ia, offB, ib, o, inner)
        o = o &+ inner
        // Advance the multi-index over the outer dims.
        var k = r - 2
        while k >= 0 {
          idx[k] = idx[k] &+ 1
          offA = offA &+ sa[k]
          offB = offB &+ sb[k]
          if idx[k] < dims[k] { break }
          offA = offA &- sa[k] &* dims[k]
          offB = offB &- sb[k] &* dims[k]
          idx[k] = 0
          k -= 1
        }
      }
    }
  }
}

