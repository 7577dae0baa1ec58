import TinyInferShims

/// LSTM and GRU (ONNX semantics; docs/ops.md, "Recurrent"): one layer, forward,
/// reverse or both directions, the default activations (sigmoid for the
/// gates, tanh for the cell and hidden state).
///
/// Inputs (absent optional inputs are -1):
/// - LSTM: X, W [D, 4H, I], R [D, 4H, H], B [D, 8H], initial_h, initial_c,
///   P [D, 3H] (peepholes), sequence_lens; gate order i, o, f, c.
/// - GRU: X, W [D, 3H, I], R [D, 3H, H], B [D, 6H], initial_h,
///   sequence_lens; gate order z, r, h.
///
/// sequence_lens (int32 [B], read at each run; each 0...T): batch entry n
/// runs its first lens[n] steps only (the reverse direction from step
/// lens[n] - 1 down), Y is zero past them, and Y_h / Y_c are the state after
/// its last step (zeros when lens[n] is 0, as onnxruntime gives).
///
/// `axis` is the time axis: 0 (X [T, B, I], Y [T, D, B, H], states [D, B, H])
/// or 1 (X [B, T, I], Y [B, T, D, H], states [B, D, H]); `mode` the
/// direction (0 forward, 1 reverse, 2 both). Outputs: Y, Y_h (and Y_c for
/// LSTM), as many as the node lists.
///
/// The run: the input projection of every time step and direction is one
/// GEMM (X [T*B, I] x W [D*G*H, I]^T plus the biases that add to it); then,
/// per direction (the two directions in parallel when the pool has threads),
/// per step, the recurrent GEMM of the B hidden rows with R and the gate
/// math on the vectorized sigmoid and tanh kernels. W and R are packed into
/// PackedGemm's panels once at bind when they are constants (else at the
/// start of each run), so both GEMMs run on the packed micro-kernels (the
/// one-row GEMV kernel when B is 1).
enum RecurrentKernel {
  enum Cell { case lstm, gru }

  /// Sizes and attributes, checked once (shared by infer and bind).
  struct Dims {
    var cell: Cell
    var t: Int
    var b: Int
    var i: Int
    var h: Int
    var d: Int
    var gates: Int
    var timeAxis: Int
    var direction: Int
    var clip: Float
    var inputForget: Bool
    var linearBeforeReset: Bool
  }

  static func dims(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> Dims {
    let cell: Cell = node.op == .lstm ? .lstm : .gru
    try arity(inputs, node.op.traits.inputs)
    let x = try required(inputs, 0, "X")
    let w = try required(inputs, 1, "W")
    let r = try required(inputs, 2, "R")
    for (t, what) in [(x, "X"), (w, "W"), (r, "R")] { try requireFloat(t, what) }
    let timeAxis = try node.attrs.int(.axis, default: 0, in: 0...1)
    let direction = try node.attrs.int(.mode, default: 0, in: 0...2)
    let d = direction == 2 ? 2 : 1
    let gates = cell == .lstm ? 4 : 3
    guard x.shape.count == 3 else { throw .shape("X \(describe(x.shape)) must have rank 3") }
    let t = x.shape[timeAxis]
    let b = x.shape[1 - timeAxis]
    let i = x.shape[2]
    guard w.shape.count == 3, w.shape[0] == d, w.shape[2] == i, w.shape[1] % gates == 0, w.shape[1] > 0 else {
      throw .shape(
        "W \(describe(w.shape)) must be [\(d), \(gates) * hidden, \(i)] (directions, gates x hidden size, input size)")
    }
    let h = w.shape[1] / gates
    guard r.shape == [d, gates * h, h] else {
      throw .shape("R \(describe(r.shape)) must be [\(d), \(gates * h), \(h)]")
    }
    let state = timeAxis == 0 ? [d, b, h] : [b, d, h]
    func optional(_ slot: Int, _ what: String, _ shape: [Int]) throws(TinfError) {
      guard slot < inputs.count, let v = inputs[slot] else { return }
      try requireFloat(v, what)
      guard v.shape == shape else { throw .shape("\(what) \(describe(v.shape)) must be \(describe(shape))") }
    }
    try optional(3, "B", [d, 2 * gates * h])
    try optional(4, "initial_h", state)
    if cell == .lstm {
      try optional(5, "initial_c", state)
      try optional(6, "P", [d, 3 * h])
    }
    let lensSlot = cell == .lstm ? 7 : 5
    if lensSlot < inputs.count, let lens = inputs[lensSlot] {
      guard lens.dtype == .int32 else {
        throw TinfError(.unsupportedDType, "sequence_lens '\(lens.name)' is \(lens.dtype.name); it must be int32")
      }
      guard lens.shape == [b] else { throw .shape("sequence_lens \(describe(lens.shape)) must be [\(b)] (the batch)") }
    }
    let clip = try node.attrs.float(.clip, default: 0)
    guard clip >= 0 && clip.isFinite else { throw .unsupported("clip \(clip) must be finite and >= 0 (0: none)") }
    let inputForget = try node.attrs.int(.inputForget, default: 0, in: 0...1) == 1
    let lbr = try node.attrs.int(.linearBeforeReset, default: 0, in: 0...1) == 1
    if inputForget && cell != .lstm { throw .unsupported("input_forget is an LSTM attribute") }
    if lbr && cell != .gru { throw .unsupported("linear_before_reset is a GRU attribute") }
    return Dims(
      cell: cell, t: t, b: b, i: i, h: h, d: d, gates: gates, timeAxis: timeAxis, direction: direction, clip: clip,
      inputForget: inputForget, linearBeforeReset: lbr)
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    let m = try dims(node, inputs)
    let outs = node.outputs.count
    guard outs >= 1 && outs <= (m.cell == .lstm ? 3 : 2) else {
      throw .format("makes \(m.cell == .lstm ? "1 to 3" : "1 or 2") outputs, the node lists \(outs)")
    }
    let y = m.timeAxis == 0 ? [m.t, m.d, m.b, m.h] : [m.b, m.t, m.d, m.h]
    let state = m.timeAxis == 0 ? [m.d, m.b, m.h] : [m.b, m.d, m.h]
    var types = [TensorType(.float32, y)]
    for _ in 1..<outs { types.append(TensorType(.float32, state)) }
    return types
  }

  /// Multiply-adds of a run (WorkCost): every step of every direction
  /// multiplies the input and the hidden state by the gates' weights.
  static func work(_ inputs: [TensorDesc?]) -> UInt64? {
    guard inputs.count >= 3, let x = inputs[0], let w = inputs[1], let r = inputs[2], let i = x.shape.last, i > 0
    else { return nil }
    let rows = UInt64(x.count / i)
    let (a, o1) = UInt64(w.count).addingReportingOverflow(UInt64(r.count))
    let (c, o2) = rows.multipliedReportingOverflow(by: a)
    return o1 || o2 ? .max : c
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let m = try dims(ctx.node, ctx.inputs)
    let (t, b, i, h, d, gh) = (m.t, m.b, m.i, m.h, m.d, m.gates * m.h)
    let dgh = d &* gh
    let x = ctx.floatIn(0)
    let w = ctx.floatIn(1)
    let r = ctx.floatIn(2)
    let bias = ctx.optionalFloatIn(3)
    let h0 = ctx.optionalFloatIn(4)
    let c0 = m.cell == .lstm ? ctx.optionalFloatIn(5) : nil
    let peep = m.cell == .lstm ? ctx.optionalFloatIn(6) : nil
    let lensIn = ctx.optionalInput(m.cell == .lstm ? 7 : 5, Int32.self)
    // Each entry's length, read at the start of a run (T for all without sequence_lens).
    let lens = try Scratch<Int>(count: b)
    for n in 0..<b { lens.base[n] = t }
    let y = ctx.floatOut(0)
    let yh = ctx.outputs.count > 1 ? ctx.floatOut(1) : nil
    let yc = ctx.outputs.count > 2 ? ctx.floatOut(2) : nil
    // The input projection of every step ([T*B, D*G*H], rows in X's order),
    // the combined input bias, and per direction: h, c, the gates [B, G*H]
    // and one temporary row set [B, H].
    let xw = try Scratch<Float>(count: t &* b &* dgh)
    let inBias = try Scratch<Float>(count: dgh)
    let perDir = 4 &* b &* h &+ b &* gh
    let state = try Scratch<Float>(count: d &* perDir)
    let kern = PackedGemm.kernels
    // Packed weights: W [D*G*H, I] as one matrix; R per direction in one or
    // two segments of gate rows (GRU without linear_before_reset multiplies
    // its h gate's rows by r * h, after the other two gates).
    let split = m.cell == .gru && !m.linearBeforeReset ? 2 &* h : gh
    let segCount0 = PackedGemm.packedCount(n: split, k: h)
    let segCount1 = split < gh ? PackedGemm.packedCount(n: gh &- split, k: h) : 0
    let perDirPacked = segCount0 &+ segCount1
    let wPacked = try Scratch<Float>(count: PackedGemm.packedCount(n: dgh, k: i))
    let rPacked = try Scratch<Float>(count: d &* perDirPacked)
    let wPanels = (dgh &+ PackedGemm.nr &- 1) / PackedGemm.nr
    let panels0 = (split &+ PackedGemm.nr &- 1) / PackedGemm.nr
    let panels1 = (gh &- split &+ PackedGemm.nr &- 1) / PackedGemm.nr
    let (lo, hi) = Activation.none.range
    let wConst = ctx.inputs[1]?.isConstant ?? false
    let rConst = ctx.inputs[2]?.isConstant ?? false
    func packW() { PackedGemm.pack(w, n: dgh, k: i, into: wPacked.base) }
    func packR() {
      for dir in 0..<d {
        let src = r + dir &* gh &* h
        let dst = rPacked.base + dir &* perDirPacked
        PackedGemm.pack(src, n: split, k: h, into: dst)
        if split < gh { PackedGemm.pack(src + split &* h, n: gh &- split, k: h, into: dst + segCount0) }
      }
    }
    if wConst { packW() }
    if rConst { packR() }
    let math = ti_math_kernels_get().pointee
    let pool = ctx.pool
    let layout1 = m.timeAxis == 1
    let cell = m.cell
    let clip = m.clip
    let inputForget = m.inputForget
    let lbr = m.linearBeforeReset
    let direction = m.direction

    // Row of X (and of xw) for step s, batch n.
    @inline(__always) func xrow(_ s: Int, _ n: Int) -> Int { layout1 ? n &* t &+ s : s &* b &+ n }
    // Offset of a state row (initial_h, Y_h) for direction dir, batch n.
    @inline(__always) func srow(_ dir: Int, _ n: Int) -> Int { layout1 ? (n &* d &+ dir) &* h : (dir &* b &+ n) &* h }
    // Offset of Y's row for step s, direction dir, batch n.
    @inline(__always) func yrow(_ s: Int, _ dir: Int, _ n: Int) -> Int {
      layout1 ? ((n &* t &+ s) &* d &+ dir) &* h : ((s &* d &+ dir) &* b &+ n) &* h
    }

    func clamp(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
      let lo = -clip
      for j in 0..<n {
        let v = p[j]
        p[j] = v < lo ? lo : (v > clip ? clip : v)
      }
    }

    func runDirection(_ dir: Int) {
      let base = state.base + dir &* perDir
      let hs = base
      let cs = base + b &* h
      let tmp = base + 2 &* b &* h
      let tmp2 = base + 3 &* b &* h
      let g = base + 4 &* b &* h
      let rp0 = UnsafePointer(rPacked.base + dir &* perDirPacked)
      let rp1 = rp0 + segCount0
      let hsRow = { (n: Int) -> UnsafePointer<Float> in UnsafePointer(hs + n &* h) }
      let pd = peep.map { $0 + dir &* 3 &* h }
      let rbh = bias.map { $0 + dir &* 2 &* gh + gh + 2 &* h }  // GRU's Rb of the h gate
      for n in 0..<b {
        let o = srow(dir, n)
        for j in 0..<h {
          hs[n &* h &+ j] = h0.map { $0[o &+ j] } ?? 0
          cs[n &* h &+ j] = c0.map { $0[o &+ j] } ?? 0
        }
      }
      let reverse = direction == 1 || dir == 1
      let ln = lens.base
      // Y's rows past an entry's length are zeros.
      if lensIn != nil {
        for n in 0..<b where ln[n] < t {
          for s in ln[n]..<t {
            let yr = y + yrow(s, dir, n)
            for j in 0..<h { yr[j] = 0 }
          }
        }
      }
      // Step `step` of entry n: its time (the reverse direction counts down from its own last step), or -1
      // once the entry has ended (its state then stays as it is).
      @inline(__always) func time(_ step: Int, _ n: Int) -> Int {
        step >= ln[n] ? -1 : (reverse ? ln[n] &- 1 &- step : step)
      }
      for step in 0..<t {
        switch cell {
        case .lstm:
          // Recurrent products of all four gates.
          PackedGemm.run(
            kern, rows: 0..<b, panels: 0..<panels0, k: h, n: gh, packed: rp0, bias: nil, lo: lo, hi: hi, y: g, ldy: gh,
            row: hsRow)
          for n in 0..<b {
            let s = time(step, n)
            if s < 0 { continue }
            let p = g + n &* gh
            let xr = xw.base + xrow(s, n) &* dgh + dir &* gh
            for j in 0..<gh { p[j] += xr[j] }
            let c = cs + n &* h
            let (pi, po, pf, pc) = (p, p + h, p + 2 &* h, p + 3 &* h)
            if let pd {
              for j in 0..<h {
                pi[j] += pd[j] * c[j]
                pf[j] += pd[2 &* h &+ j] * c[j]
              }
            }
            if clip > 0 {
              clamp(pi, h)
              clamp(pf, 2 &* h)  // f and c
            }
            if pd == nil {
              if clip > 0 { clamp(po, h) }
              kern.logistic(p, p, 3 &* h)  // i, o, f
            } else {
              kern.logistic(pi, pi, h)
              kern.logistic(pf, pf, h)
            }
            if inputForget { for j in 0..<h { pf[j] = 1 - pi[j] } }
            math.tanh(pc, pc, h)
            for j in 0..<h { c[j] = pf[j] * c[j] + pi[j] * pc[j] }
            if let pd {
              for j in 0..<h { po[j] += pd[h &+ j] * c[j] }
              if clip > 0 { clamp(po, h) }
              kern.logistic(po, po, h)
            }
            let th = tmp + n &* h
            math.tanh(c, th, h)
            let hr = hs + n &* h
            let yr = y + yrow(s, dir, n)
            for j in 0..<h {
              let v = po[j] * th[j]
              hr[j] = v
              yr[j] = v
            }
          }
        case .gru:
          // z, r (and with linear_before_reset the h gate's R h_{t-1}; Rb_h is added inside the reset).
          PackedGemm.run(
            kern, rows: 0..<b, panels: 0..<panels0, k: h, n: split, packed: rp0, bias: nil, lo: lo, hi: hi, y: g,
            ldy: gh, row: hsRow)
          for n in 0..<b {
            let s = time(step, n)
            if s < 0 { continue }
            let p = g + n &* gh
            let xr = xw.base + xrow(s, n) &* dgh + dir &* gh
            for j in 0..<(2 &* h) { p[j] += xr[j] }
            if clip > 0 { clamp(p, 2 &* h) }
            kern.logistic(p, p, 2 &* h)  // z, r
          }
          let ph = g + 2 &* h
          if lbr {
            for n in 0..<b {
              let s = time(step, n)
              if s < 0 { continue }
              let p = ph + n &* gh
              let rg = g + n &* gh + h
              let xr = xw.base + xrow(s, n) &* dgh + dir &* gh + 2 &* h
              if let rbh {
                for j in 0..<h { p[j] = xr[j] + rg[j] * (p[j] + rbh[j]) }
              } else {
                for j in 0..<h { p[j] = xr[j] + rg[j] * p[j] }
              }
            }
          } else {
            // (r * h_{t-1}) R_h^T, Rb_h is in the input bias.
            for n in 0..<b {
              let rg = g + n &* gh + h
              let hr = hs + n &* h
              let q = tmp + n &* h
              for j in 0..<h { q[j] = rg[j] * hr[j] }
            }
            PackedGemm.run(
              kern, rows: 0..<b, panels: 0..<panels1, k: h, n: h, packed: rp1, bias: nil, lo: lo, hi: hi, y: tmp2,
              ldy: h
            ) { n in UnsafePointer(tmp + n &* h) }
            for n in 0..<b {
              let s = time(step, n)
              if s < 0 { continue }
              let p = ph + n &* gh
              let q = tmp2 + n &* h
              let xr = xw.base + xrow(s, n) &* dgh + dir &* gh + 2 &* h
              for j in 0..<h { p[j] = xr[j] + q[j] }
            }
          }
          for n in 0..<b {
            let s = time(step, n)
            if s < 0 { continue }
            let p = ph + n &* gh
            if clip > 0 { clamp(p, h) }
            math.tanh(p, p, h)
            let z = g + n &* gh
            let hr = hs + n &* h
            let yr = y + yrow(s, dir, n)
            for j in 0..<h {
              let v = (1 - z[j]) * p[j] + z[j] * hr[j]
              hr[j] = v
              yr[j] = v
            }
          }
        }
      }
      for n in 0..<b {
        let o = srow(dir, n)
        let none = ln[n] == 0  // no step: zeros, as onnxruntime gives
        if let yh { for j in 0..<h { yh[o &+ j] = none ? 0 : hs[n &* h &+ j] } }
        if let yc { for j in 0..<h { yc[o &+ j] = none ? 0 : cs[n &* h &+ j] } }
      }
    }

    return { () throws(TinfError) in
      if let lensIn {
        for n in 0..<b {
          let v = Int(lensIn[n])
          guard v >= 0 && v <= t else {
            throw TinfError(.runtime, "sequence_lens[\(n)] is \(v), outside 0...\(t) (the sequence length)")
          }
          lens.base[n] = v
        }
      }
      // The biases that add to the input projection: Wb + Rb, except GRU's
      // Rb_h with linear_before_reset (applied inside the reset product).
      if let bias {
        for dir in 0..<d {
          let wb = bias + dir &* 2 &* gh
          let rb = wb + gh
          let dst = inBias.base + dir &* gh
          let summed = cell == .gru && lbr ? 2 &* h : gh
          for j in 0..<gh { dst[j] = j < summed ? wb[j] + rb[j] : wb[j] }
        }
      }
      if !wConst { packW() }
      if !rConst { packR() }
      let rows = t &* b
      let pb: UnsafePointer<Float>? = bias == nil ? nil : UnsafePointer(inBias.base)
      let wp = UnsafePointer(wPacked.base)
      pool.parallelRanges(rows, minChunk: max(1, 32768 / max(1, i &* dgh))) { range in
        PackedGemm.runStrided(
          kern, rows: range, a: x, lda: i, panels: 0..<wPanels, k: i, n: dgh, packed: wp, bias: pb, lo: lo, hi: hi,
          y: xw.base, ldy: dgh)
      }
      if d == 2 {
        pool.parallelRanges(2, minChunk: 1) { range in
          for dir in range { runDirection(dir) }
        }
      } else {
        runDirection(0)
      }
    }
  }
}
