import TinyInferShims

/// int8 Add, Sub and Mul with numpy broadcasting (TFLite's reference integer
/// Add / Sub / Mul), and Maximum / Minimum. Div has no int8 kernel; PRelu's is QPRelu.swift.
///
/// Maximum and Minimum (TFLite's int8 MAXIMUM / MINIMUM: the raw values
/// compared, inputs and output with the same parameters, as the converter
/// writes them; other parameters are refused): the level's `minmax_row`,
/// a row against a row or against one broadcast value.
///
/// Add and Sub (TFLite's left_shift = 20 scheme): each input is rescaled to
/// `(q - zp) * 2^20 * s / (2 max(s_a, s_b))` with its own multiplier, the two
/// are added (subtracted), and the sum is requantized with
/// `2 max(s_a, s_b) / (2^20 s_y)`. The per-input stage depends only on the
/// int8 value, so it is tabulated at bind time (256 entries per input).
///
/// Mul: `clamp(MultiplyByQuantizedMultiplier((a - zp_a)(b - zp_b), s_a s_b / s_y) + zp_y)`,
/// the multiplier computed in float as TFLite's mul.cc does; with the
/// `requantization` attribute 1 (int8-static's default), the float32 stage
/// `clamp(roundeven(fl(fl(prod) s)) + zp_y)`, s = s_a s_b / s_y in double
/// rounded to float (`requantizeFloat`, the level's `mul_row_f32`).
///
/// Rows where both inputs are contiguous (same shapes, or the innermost
/// merged dim of both) run a vector at a time in the level's C kernels
/// (ti_q8_kernels: add_row, mul_row; Add and Sub compute the input stage
/// instead of looking it up); long rows against one broadcast value (x + 3
/// of HardSwish, x * scalar) through a 256-entry table of the exact
/// per-element result; one input against a per-channel row (shape
/// [..., 1, C]) as long rows against a repeated copy of it (`PerChannel`);
/// the rest, and the tails, element by element.
enum QBinaryKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 2...2)
    let a = try required(inputs, 0, "a")
    let b = try required(inputs, 1, "b")
    guard node.op.traits.int8 == .always else {
      throw TinfError(
        .unsupportedDType,
        "\(node.op.name) has no int8 kernel (int8: Add, Sub, Mul, Maximum, Minimum); dequantize its inputs first")
    }
    try QCheck.requireInt8(a, "input")
    try QCheck.requireInt8(b, "input")
    let aq = try QCheck.perTensor(a, "input")
    let bq = try QCheck.perTensor(b, "input")
    if node.op == .maximum || node.op == .minimum {
      guard aq.matches(bq) else {
        throw .unsupported(
          "int8 \(node.op.name) compares raw values: its inputs must share their quantization (scales \(aq.scale) and \(bq.scale), zero points \(aq.zeroPoint) and \(bq.zeroPoint))"
        )
      }
      guard node.attrs[.preluSlopes] == nil, try Activation.from(node.attrs) == .none else {
        throw .unsupported("int8 \(node.op.name) takes no fused activation")
      }
    }
    _ = try Activation.from(node.attrs)
    let shape = try broadcastShapes(a.shape, b.shape)
    if let s = try node.attrs.floats(.preluSlopes) {
      // Passes/PReluFusion's int8 form: [s_t, zp_t, s_a, zp_a, C raw slopes].
      guard node.op == .add, a.shape == shape, b.shape == shape, let c = shape.last, s.count == c &+ 4,
        s[0] > 0, s[2] > 0,
        ([s[1], s[3]] + s.dropFirst(4)).allSatisfy({ $0 == $0.rounded() && $0 >= -128 && $0 <= 127 })
      else {
        throw .unsupported(
          "an int8 \(node.op.name) with prelu_slopes needs Add, both inputs of the output's shape and [s_t, zp_t, s_a, zp_a] then one int8 slope per channel")
      }
    }
    return [TensorType(.int8, shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let ad = ctx.inputs[0], let bd = ctx.inputs[1] else { throw .format("missing input") }
    let aq = try QCheck.perTensor(ad, "input")
    let bq = try QCheck.perTensor(bd, "input")
    // With a fused PRelu (prelu_slopes, see infer) the Add's own result t has the parameters of the
    // attribute and the PRelu of t is the output.
    let fused = try ctx.attrs.floats(.preluSlopes)
    var yq = try QCheck.output(ctx)
    if let f = fused { yq = QParams(scale: f[0], zeroPoint: Int32(f[1])) }
    let (lo, hi) = try QCheck.activationRange(try Activation.from(ctx.attrs), yq)
    let plan = BroadcastPlan(ad.shape, bd.shape, ctx.outputs[0].shape)
    guard let ap = ctx.inputData[0], let bp = ctx.inputData[1] else { throw TinfError(.internal, "missing data") }
    let a = UnsafePointer(ap.assumingMemoryBound(to: Int8.self))
    let b = UnsafePointer(bp.assumingMemoryBound(to: Int8.self))
    let y = ctx.outputData[0].assumingMemoryBound(to: Int8.self)

    let fn = try Registry.binaryOp(ctx.node)
    if fn == .maximum || fn == .minimum {
      guard aq.matches(yq) else {
        throw .unsupported(
          "int8 \(ctx.node.op.name) keeps its inputs' quantization (scale \(aq.scale), zero point \(aq.zeroPoint)); the output declares scale \(yq.scale), zero point \(yq.zeroPoint)"
        )
      }
      return minMax(isMin: fn == .minimum, plan, a, b, y, ad.count, bd.count)
    }
    if fn == .mul {
      let real = (aq.scale * bq.scale) / yq.scale  // float, as mul.cc
      let m = try FixedPoint.requantization(Double(real), "Mul")
      // The float32 stage's scale: s_a s_b / s_y in double, rounded to float
      // (the convolutions' float32 tables likewise).
      let floatScale =
        try QCheck.floatRequantization(ctx)
        ? Float(Double(aq.scale) * Double(bq.scale) / Double(yq.scale)) : 0
      let op = QMulOp(
        za: aq.zeroPoint, zb: bq.zeroPoint, out: QOutputStage(m, zp: yq.zeroPoint, lo: lo, hi: hi),
        params: ti_q8_binary(
          za: aq.zeroPoint, zb: bq.zeroPoint, a_mult: 0, a_shift: 0, b_mult: 0, b_shift: 0, out_mult: m.multiplier,
          out_shift: m.shift, zp: yq.zeroPoint, lo: lo, hi: hi, negate: 0),
        floatScale: floatScale, mulRow: ti_q8_kernels_get().pointee.mul_row,
        mulRowF32: ti_q8_kernels_get().pointee.mul_row_f32)
      if let pc = try PerChannel(ad.shape, bd.shape, ctx.outputs[0].shape) {
        return { () throws(TinfError) in pc.run(op, a, b, y) }
      }
      if let fn = split(op, plan, a, b, y, ctx.pool) { return fn }
      return { () throws(TinfError) in QBinaryKernel.run(op, plan, a, b, y) }
    }

    // Add / Sub: TFLite add.cc / sub.cc Prepare.
    let leftShift: Int32 = 20
    let twiceMax = Double(2 * max(aq.scale, bq.scale))
    let m1 = FixedPoint.quantize(Double(aq.scale) / twiceMax)
    let m2 = FixedPoint.quantize(Double(bq.scale) / twiceMax)
    let mo = try FixedPoint.requantization(twiceMax / Double(Float(1 << leftShift) * yq.scale), ctx.node.op.name)
    let negate = fn == .sub
    var ta = [Int32](repeating: 0, count: 256)
    var tb = [Int32](repeating: 0, count: 256)
    for v in -128...127 {
      let sa = (Int32(v) &- aq.zeroPoint) &* (1 << leftShift)
      let sb = (Int32(v) &- bq.zeroPoint) &* (1 << leftShift)
      ta[v + 128] = FixedPoint.rdbpot(FixedPoint.srdhm(sa, m1.multiplier), -m1.shift)
      let vb = FixedPoint.rdbpot(FixedPoint.srdhm(sb, m2.multiplier), -m2.shift)
      tb[v + 128] = negate ? 0 &- vb : vb
    }
    let tables = try QBuffer(int32: ta + tb)
    let kernels = ti_q8_kernels_get().pointee
    var op = QAddOp(
      ta: UnsafePointer(tables.int32), tb: UnsafePointer(tables.int32 + 256),
      out: QOutputStage(mo, zp: yq.zeroPoint, lo: lo, hi: hi),
      params: ti_q8_binary(
        za: aq.zeroPoint, zb: bq.zeroPoint, a_mult: m1.multiplier, a_shift: m1.shift, b_mult: m2.multiplier,
        b_shift: m2.shift, out_mult: mo.multiplier, out_shift: mo.shift, zp: yq.zeroPoint, lo: lo, hi: hi,
        negate: negate ? 1 : 0),
      addRow: kernels.add_row, linear: nil, linearRow: kernels.add_lin_row)
    op.linear = try QAddOp.linearForm(
      op, slopeA: Double(aq.scale) / Double(yq.scale), slopeB: (negate ? -1 : 1) * Double(bq.scale) / Double(yq.scale))
    if let f = fused {
      return try fusedPRelu(op, f, tq: yq, a, b, y, ctx, keep: tables)
    }
    if let pc = try PerChannel(ad.shape, bd.shape, ctx.outputs[0].shape) {
      return { () throws(TinfError) in
        withExtendedLifetime(tables) { pc.run(op, a, b, y) }
      }
    }
    if let fn = split(op, plan, a, b, y, ctx.pool, keep: tables) { return fn }
    return { () throws(TinfError) in
      withExtendedLifetime(tables) { QBinaryKernel.run(op, plan, a, b, y) }
    }
  }

  /// Bytes per thread below which an int8 binary op stays on one thread.
  static let splitGrain = SplitGrain.elementwiseInt8

  /// Inputs and output of one shape, a large output and several threads:
  /// the rows kernel on contiguous ranges, one per thread, in the halves
  /// the ops before split their rows, so each thread reads what it wrote
  /// (the float32 Binary.split; exact integer arithmetic per element, so
  /// the result does not depend on the split). nil otherwise.
  static func split<Op: QBinaryOp>(
    _ op: Op, _ plan: BroadcastPlan, _ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>,
    _ y: UnsafeMutablePointer<Int8>, _ pool: ThreadPool, keep: QBuffer? = nil
  ) -> KernelFn? {
    let n = plan.total
    guard pool.threads > 1, n >= 2 &* splitGrain, plan.dims.count == 1, plan.sa[0] == 1, plan.sb[0] == 1 else {
      return nil
    }
    return { () throws(TinfError) in
      withExtendedLifetime(keep) {
        pool.parallelRanges(n, minChunk: splitGrain) { r in
          let lo = r.lowerBound
          op.row(a + lo, b + lo, y + lo, r.count)
        }
      }
    }
  }

  /// The int8 Add `op` (output parameters tq) with the PRelu of its result
  /// fused (Passes/PReluFusion; `attr` = [s_t, zp_t, s_a, zp_a, slopes]):
  /// one pass of the level's add_prelu_lin_row where both have a
  /// floor-linear form, else the Add's rows then the PRelu in place; the
  /// tails element by element. a, b and y have one shape.
  static func fusedPRelu(
    _ op: QAddOp, _ attr: [Float], tq: QParams, _ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>,
    _ y: UnsafeMutablePointer<Int8>, _ ctx: KernelContext, keep tables: QBuffer
  ) throws(TinfError) -> KernelFn {
    let yq = try QCheck.output(ctx)
    let aq = QParams(scale: attr[2], zeroPoint: Int32(attr[3]))
    let c = attr.count &- 4
    let slopes = try QBuffer(int8: attr.dropFirst(4).map { Int8($0) })
    let sp = UnsafePointer(slopes.int8)
    let (m1, m2) = try QPReluKernel.multipliers(tq, aq, yq)
    var total = 1
    for d in ctx.outputs[0].shape { total &*= d }
    // The elements from..<to past the row kernel's vectors, one at a time.
    let finish = { (from: Int, to: Int) in
      var i = from
      while i < to {
        y[i] = QPReluKernel.value(Int32(op.apply(a[i], b[i])), Int32(sp[i % c]), tq, aq, yq, m1, m2)
        i &+= 1
      }
    }
    // Whole rows of c channels (the slopes' period restarts at each range's
    // start) split between the threads from 2 * splitGrain bytes, as split.
    let pool = ctx.pool
    let rows = c > 0 ? total / c : 0
    let minRows = max(1, splitGrain / max(c, 1))
    let threaded = pool.threads > 1 && total >= 2 &* splitGrain && rows &* c == total
    @inline(__always) func ranges(_ body: (Int, Int) -> Void) {
      if threaded {
        pool.parallelRanges(rows, minChunk: minRows) { r in body(r.lowerBound &* c, r.upperBound &* c) }
      } else {
        body(0, total)
      }
    }
    if let al = op.linear, let row16 = ti_q8_kernels_get().pointee.add_prelu16_row,
      let al16 = shifted(al, by: tq.zeroPoint),
      let pl = try QPReluKernel.linearForm16(tq, aq, yq, m1, m2, slope: sp, period: c)
    {
      return { () throws(TinfError) in
        withExtendedLifetime((slopes, pl.table, tables)) {
          let t = UnsafePointer(pl.table.int32)
          ranges { lo, hi in
            let done = withUnsafePointer(to: al16) { ap in
              withUnsafePointer(to: pl.params) {
                row16(a + lo, b + lo, y + lo, hi &- lo, ap, t, t + pl.entries, pl.entries, $0)
              }
            }
            finish(lo &+ done, hi)
          }
        }
      }
    }
    if let al = op.linear, let pl = try QPReluKernel.linearForm(tq, aq, yq, m1, m2, slope: sp, period: c) {
      let row = ti_q8_kernels_get().pointee.add_prelu_lin_row
      return { () throws(TinfError) in
        withExtendedLifetime((slopes, pl.table, tables)) {
          let t = UnsafePointer(pl.table.int32)
          ranges { lo, hi in
            let done = withUnsafePointer(to: al) { ap in
              withUnsafePointer(to: pl.params) {
                row(a + lo, b + lo, y + lo, hi &- lo, ap, t, t + pl.entries, pl.entries, $0)
              }
            }
            finish(lo &+ done, hi)
          }
        }
      }
    }
    return { () throws(TinfError) in
      withExtendedLifetime((slopes, tables)) {
        ranges { lo, hi in
          op.row(a + lo, b + lo, y + lo, hi &- lo)
          QPReluKernel.runPeriodic(UnsafePointer(y + lo), sp, c, y + lo, hi &- lo, tq, aq, yq, m1, m2)
        }
      }
    }
  }

  /// The Add's floor-linear form `f` giving t - zx instead of t (its offset
  /// less zx 2^shift, its bounds less zx: floor((L - zx 2^s) / 2^s) = floor(L
  /// / 2^s) - zx), for add_prelu16_row; nil if an int32 lane could overflow.
  static func shifted(_ f: ti_q8_lin2, by zx: Int32) -> ti_q8_lin2? {
    let c = Int64(f.c) &- (Int64(zx) << Int64(f.shift))
    let bound = 128 &* (Int64(f.pa).magnitude &+ Int64(f.pb).magnitude) &+ c.magnitude
    guard bound < UInt64(Int32.max) else { return nil }
    return ti_q8_lin2(pa: f.pa, pb: f.pb, c: Int32(c), shift: f.shift, lo: f.lo &- zx, hi: f.hi &- zx)
  }

  /// Maximum / Minimum of raw int8 values: one value against the other
  /// tensor in a single call; otherwise per innermost row of the broadcast
  /// (the ops commute, so a broadcast `a` swaps with `b`).
  static func minMax(
    isMin: Bool, _ plan: BroadcastPlan, _ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>,
    _ y: UnsafeMutablePointer<Int8>, _ countA: Int, _ countB: Int
  ) -> KernelFn {
    let row = ti_q8_kernels_get().pointee.minmax_row
    let flag: Int32 = isMin ? 1 : 0
    if countB == 1 || countA == 1 {
      let (t, v, n) = countB == 1 ? (a, b, countA) : (b, a, countB)
      return { () throws(TinfError) in row(t, v, y, n, 0, flag) }
    }
    return { () throws(TinfError) in
      plan.forEachRow { offA, ia, offB, ib, o, inner in
        let ar = a + offA
        let br = b + offB
        let yr = y + o
        if ia == 1 && (ib == 1 || ib == 0) {
          row(ar, br, yr, inner, ib, flag)
        } else if ib == 1 && ia == 0 {
          row(br, ar, yr, inner, 0, flag)
        } else {
          for i in 0..<inner {
            let (u, v) = (ar[i &* ia], br[i &* ib])
            yr[i] = isMin ? min(u, v) : max(u, v)
          }
        }
      }
    }
  }

  /// One input of the output's shape, the other a row of the last dim's C
  /// values (shape [..., 1, C]) broadcast over every pixel (a squeeze-and-
  /// excitation scale, a per-channel addend). Per pixel the row kernel
  /// would run C elements at a time (a call and a scalar tail per pixel);
  /// instead the row of C is repeated in a scratch row of about 1024 values
  /// once per run, and the row kernel runs over whole stretches of pixels.
  struct PerChannel {
    /// Whether `a` is the broadcast row (else `b`).
    let aIsRow: Bool
    let c: Int
    let total: Int
    let tile: QBuffer
    let reps: Int

    init?(_ a: [Int], _ b: [Int], _ out: [Int]) throws(TinfError) {
      guard let c = out.last, c > 0, c < 1024 else { return nil }
      func isRow(_ s: [Int]) -> Bool { s.last == c && s.dropLast().allSatisfy { $0 == 1 } }
      var total = 1
      for d in out { total &*= d }
      if a == out && isRow(b) {
        aIsRow = false
      } else if b == out && isRow(a) {
        aIsRow = true
      } else {
        return nil
      }
      guard total > c else { return nil }
      self.c = c
      self.total = total
      reps = max(1, 1024 / c)
      tile = try QBuffer(bytes: reps &* c)
    }

    @inline(__always)
    func run<Op: QBinaryOp>(_ op: Op, _ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>, _ y: UnsafeMutablePointer<Int8>) {
      let row = aIsRow ? a : b
      let t = tile.int8
      for r in 0..<reps {
        for i in 0..<c { t[r &* c &+ i] = row[i] }
      }
      let span = reps &* c
      let tp = UnsafePointer(t)
      var i = 0
      while i < total {
        let n = min(span, total &- i)
        if aIsRow {
          op.row(tp, b + i, y + i, n)
        } else {
          op.row(a + i, tp, y + i, n)
        }
        i &+= n
      }
    }
  }

  /// A row whose other input is one value broadcast along it (a scalar, an
  /// addend per channel row) of at least this many elements goes through a
  /// 256-entry table of `op.apply` over every int8 value, built per row:
  /// the same results, a lookup per element instead of the rescale.
  static let lutMinimum = 512

  /// A shorter row against one broadcast value (x * scale, x - mean on a
  /// few hundred values): the value repeated in a stack row of `n` (below
  /// lutMinimum), so that the level's vector row kernel runs instead of
  /// `op.apply` per element (the table costs 256 of those to build).
  @inline(__always)
  static func broadcastRow(_ v: Int8, _ n: Int, _ body: (UnsafePointer<Int8>) -> Void) {
    withUnsafeTemporaryAllocation(of: Int8.self, capacity: lutMinimum) { t in
      let p = t.baseAddress!
      p.initialize(repeating: v, count: n)
      body(UnsafePointer(p))
    }
  }

  /// Runs `op` over the broadcast output, a row of the innermost merged dim
  /// at a time. In place (y == a) is safe: each element is read before it
  /// is written.
  @inline(__always)
  static func run<Op: QBinaryOp>(
    _ op: Op, _ plan: BroadcastPlan, _ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>, _ y: UnsafeMutablePointer<Int8>
  ) {
    plan.forEachRow { offA, ia, offB, ib, o, inner in
      let ar = a + offA
      let br = b + offB
      let yr = y + o
      if ia == 1 && ib == 1 {
        op.row(ar, br, yr, inner)
      } else if ia == 1 {
        let bv = br[0]
        if ib == 0 && inner >= lutMinimum {
          withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256) { t in
            let lut = t.baseAddress!
            for v in 0..<256 { lut[v] = op.apply(Int8(truncatingIfNeeded: v &- 128), bv) }
            lookup256(ar, yr, UnsafePointer(lut), inner)
          }
        } else if ib == 0 && inner >= 16 {
          broadcastRow(bv, inner) { op.row(ar, $0, yr, inner) }
        } else {
          for i in 0..<inner { yr[i] = op.apply(ar[i], bv) }
        }
      } else if ib == 1 {
        let av = ar[0]
        if ia == 0 && inner >= lutMinimum {
          withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256) { t in
            let lut = t.baseAddress!
            for v in 0..<256 { lut[v] = op.apply(av, Int8(truncatingIfNeeded: v &- 128)) }
            lookup256(br, yr, UnsafePointer(lut), inner)
          }
        } else if ia == 0 && inner >= 16 {
          broadcastRow(av, inner) { op.row($0, br, yr, inner) }
        } else {
          for i in 0..<inner { yr[i] = op.apply(av, br[i]) }
        }
      } else {
        for i in 0..<inner { yr[i] = op.apply(ar[i &* ia], br[i &* ib]) }
      }
    }
  }
}

protocol QBinaryOp {
  func apply(_ a: Int8, _ b: Int8) -> Int8
  /// y[i] = apply(a[i], b[i]) for i < n (y may be a or b).
  func row(_ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>, _ y: UnsafeMutablePointer<Int8>, _ n: Int)
}

/// Add or Sub from the tabulated rescaled inputs (Sub's second table is negated).
struct QAddOp: QBinaryOp {
  let ta: UnsafePointer<Int32>
  let tb: UnsafePointer<Int32>
  let out: QOutputStage

  /// The constants of the level's C row kernel (which computes the input
  /// stages instead of looking them up), and the kernel.
  let params: ti_q8_binary
  let addRow: @convention(c) (
    UnsafePointer<Int8>, UnsafePointer<Int8>, UnsafeMutablePointer<Int8>, Int, UnsafePointer<ti_q8_binary>
  ) -> Int

  @inline(__always)
  func apply(_ a: Int8, _ b: Int8) -> Int8 {
    out.one(ta[Int(a) &+ 128] &+ tb[Int(b) &+ 128])
  }

  /// The op as a floor-linear function of the two int8 inputs (QLinearFit),
  /// where one reproduces it on all 65536 input pairs; its row kernel.
  var linear: ti_q8_lin2?
  let linearRow: @convention(c) (
    UnsafePointer<Int8>, UnsafePointer<Int8>, UnsafeMutablePointer<Int8>, Int, UnsafePointer<ti_q8_lin2>
  ) -> Int

  @inline(never)
  func row(_ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>, _ y: UnsafeMutablePointer<Int8>, _ n: Int) {
    var i = 0
    if let lin = linear {
      i = withUnsafePointer(to: lin) { linearRow(a, b, y, n, $0) }
    } else {
      i = withUnsafePointer(to: params) { addRow(a, b, y, n, $0) }
    }
    while i < n {
      y[i] = apply(a[i], b[i])
      i &+= 1
    }
  }

  /// The floor-linear form of `op` (without one) checked against its
  /// fixed-point rows over every pair of int8 inputs, or nil.
  static func linearForm(_ op: QAddOp, slopeA: Double, slopeB: Double) throws(TinfError) -> ti_q8_lin2? {
    // The exact results: row x1 + 128 holds op(x1, x2) for x2 = -128...127.
    let grid = try QBuffer(bytes: 3 &* 256 &+ 65536)
    let bs = grid.int8
    let asRow = grid.int8 + 256
    let target = grid.int8 + 768
    for v in 0..<256 { bs[v] = Int8(truncatingIfNeeded: v &- 128) }
    for x1 in 0..<256 {
      for v in 0..<256 { asRow[v] = Int8(truncatingIfNeeded: x1 &- 128) }
      op.row(UnsafePointer(asRow), UnsafePointer(bs), target + x1 &* 256, 256)
    }
    let (lo, hi) = (op.params.lo, op.params.hi)
    for shift in QLinearFit.shifts {
      if let f = QLinearFit.find(
        -128...127, -128...127, UnsafePointer(target), slope1: slopeA, slope2: slopeB, shift: shift, lo: lo, hi: hi)
      {
        return ti_q8_lin2(pa: f.p1, pb: f.p2, c: f.c, shift: Int32(shift), lo: lo, hi: hi)
      }
    }
    return nil
  }
}

/// Mul with TFLite's fixed-point output stage, or (`floatScale` > 0, the
/// `requantization` attribute) the float32 one of `requantizeFloat`.
struct QMulOp: QBinaryOp {
  let za: Int32
  let zb: Int32
  let out: QOutputStage
  let params: ti_q8_binary
  /// s_a s_b / s_y in float32 for the float32 stage, else 0.
  let floatScale: Float
  let mulRow: @convention(c) (
    UnsafePointer<Int8>, UnsafePointer<Int8>, UnsafeMutablePointer<Int8>, Int, UnsafePointer<ti_q8_binary>
  ) -> Int
  let mulRowF32: @convention(c) (
    UnsafePointer<Int8>, UnsafePointer<Int8>, UnsafeMutablePointer<Int8>, Int, UnsafePointer<ti_q8_binary>, Float
  ) -> Int

  @inline(__always)
  func apply(_ a: Int8, _ b: Int8) -> Int8 {
    let p = (Int32(a) &- za) &* (Int32(b) &- zb)
    if floatScale > 0 { return requantizeFloat(p, floatScale, out.zp, out.lo, out.hi) }
    return out.one(p)
  }

  @inline(never)
  func row(_ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>, _ y: UnsafeMutablePointer<Int8>, _ n: Int) {
    var i = withUnsafePointer(to: params) {
      floatScale > 0 ? mulRowF32(a, b, y, n, $0, floatScale) : mulRow(a, b, y, n, $0)
    }
    while i < n {
      y[i] = apply(a[i], b[i])
      i &+= 1
    }
  }
}
