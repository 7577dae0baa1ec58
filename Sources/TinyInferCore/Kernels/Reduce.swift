import TinyInferShims

/// Mean, ReduceMax, ReduceMin, ReduceSum and ReduceProd (docs/ops.md) over `axes` (negative counts from the
/// end, duplicates refused; none given: nothing is reduced), `keep_dims`
/// 0/1, float32 here and int8 (Mean, ReduceMax) in Quant/QReduce.swift. Every variant runs one
/// driver, `ReductionPlan.run`, with its step (`ReduceStep`: how elements
/// join an accumulator) and its own epilogue (accumulators to outputs).
///
/// The driver drops dims of size 1 and merges neighbouring dims of the same
/// kind (kept or reduced), so the input is walked once in memory order, in
/// runs of the innermost merged dim: a reduced run folds into one
/// accumulator (`foldRun`), a kept run folds element by element into a row
/// of accumulators (`fold`).
/// The reductions (Registry.variant maps ops to them).
enum ReduceOp { case mean, max, min, sum, prod }

enum ReduceKernel {
  /// Which dims of `x` are reduced.
  static func reducedDims(_ node: Node, _ x: TensorDesc) throws(TinfError) -> [Bool] {
    let rank = x.shape.count
    var reduced = [Bool](repeating: false, count: rank)
    let axes = try node.attrs.ints(.axes, in: -(1 << 20)...(1 << 20)) ?? []
    for a in axes {
      let i = try normalizeAxis(a, rank: rank, "axis")
      guard !reduced[i] else { throw .unsupported("axis \(a) is repeated in axes") }
      reduced[i] = true
    }
    return reduced
  }

  /// The output shape (reduced dims dropped, or 1 with keep_dims) and the
  /// number of elements reduced into each output.
  static func outputShape(_ node: Node, _ x: TensorDesc) throws(TinfError) -> (shape: [Int], count: Int) {
    let reduced = try reducedDims(node, x)
    let keep = try node.attrs.int(.keepDims, default: 0, in: 0...1) == 1
    var shape: [Int] = []
    var count = 1
    for (i, d) in x.shape.enumerated() {
      if !reduced[i] {
        shape.append(d)
      } else {
        count &*= d
        if keep { shape.append(1) }
      }
    }
    return (shape, count)
  }

  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, node.op.traits.inputs)
    let x = try required(inputs, 0, "input")
    try requireFloat(x, "input")
    return [TensorType(.float32, try outputShape(node, x).shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    guard let xd = ctx.inputs[0] else { throw .format("\(ctx.node.op.name): missing input") }
    let plan = ReductionPlan(shape: xd.shape, reduced: try reducedDims(ctx.node, xd))
    let x = ctx.floatIn(0)
    let y = ctx.floatOut(0)
    let outCount = plan.outCount
    switch try Registry.reduceOp(ctx.node) {
    case .max: return { () throws(TinfError) in plan.run(MaxFloat.self, x, y) }
    case .min: return { () throws(TinfError) in plan.run(MinFloat.self, x, y) }
    case .mean, .sum, .prod:
      break
    }
    // Mean, ReduceSum and ReduceProd accumulate in Double, rounded once at the end.
    let prod = ctx.node.op == .reduceProd
    let divisor = ctx.node.op == .mean ? Double(plan.reduceCount) : 1
    // Outer dims reduced, the inner kept (a Mean over the pixels of an
    // NHWC map): the level's mean_cols, in registers, same sums and bits.
    if !prod && plan.outerGroups == 1 && !plan.innerReduced {
      let kern = PackedGemm.kernels
      let (rows, n) = (plan.outer, plan.inner)
      return { () throws(TinfError) in kern.mean_cols(x, rows, n, divisor, y) }
    }
    let acc = try Scratch<Double>(count: outCount)
    return { () throws(TinfError) in
      let s = acc.base
      if prod { plan.run(ProdFloat.self, x, s) } else { plan.run(SumFloat.self, x, s) }
      for i in 0..<outCount {
        y[i] = Float(s[i] / divisor)
      }
    }
  }
}

/// How the elements of a reduction join an accumulator.
protocol ReduceStep {
  associatedtype Element
  associatedtype Acc
  /// The accumulator before any element.
  static var identity: Acc { get }
  /// One more element.
  static func fold(_ a: Acc, _ x: Element) -> Acc
  /// A contiguous run of `n` elements folded into `a`.
  static func foldRun(_ a: Acc, _ x: UnsafePointer<Element>, _ n: Int) -> Acc
  /// acc[i] = fold(acc[i], x[i]) for i < n (a kept run).
  static func foldRow(_ acc: UnsafeMutablePointer<Acc>, _ x: UnsafePointer<Element>, _ n: Int)
}

extension ReduceStep {
  @inline(__always)
  static func foldRow(_ acc: UnsafeMutablePointer<Acc>, _ x: UnsafePointer<Element>, _ n: Int) {
    for i in 0..<n { acc[i] = fold(acc[i], x[i]) }
  }
}

/// float32 sum in Double (Mean).
enum SumFloat: ReduceStep {
  static var identity: Double { 0 }
  @inline(__always) static func fold(_ a: Double, _ x: Float) -> Double { a + Double(x) }
  @inline(__always) static func foldRun(_ a: Double, _ x: UnsafePointer<Float>, _ n: Int) -> Double {
    var total = 0.0
    for i in 0..<n { total += Double(x[i]) }
    return a + total
  }
  /// In C per CPU level (tinyinfer_kernels_f32.h sum_f64_row).
  @inline(__always)
  static func foldRow(_ acc: UnsafeMutablePointer<Double>, _ x: UnsafePointer<Float>, _ n: Int) {
    ti_f32_kernels_get().pointee.sum_f64_row(acc, x, n)
  }
}

/// float32 maximum; a NaN anywhere gives NaN (as numpy's max).
enum MaxFloat: ReduceStep {
  static var identity: Float { -.infinity }
  @inline(__always) static func fold(_ a: Float, _ x: Float) -> Float { x > a || x != x ? x : a }
  /// 16 lanes at a time in C (tinyinfer_kernels_f32.h max_run, per CPU
  /// level); a lane's NaN may be replaced by a later value there, so NaN is
  /// looked for apart.
  @inline(__always) static func foldRun(_ a: Float, _ x: UnsafePointer<Float>, _ n: Int) -> Float {
    let m = ti_f32_kernels_get().pointee.max_run(a, x, n)
    return m == m && hasNaN(x, n) ? .nan : m
  }
  /// fold over a row is the pooling max step (tinyinfer_kernels_f32.h pool_max).
  @inline(__always)
  static func foldRow(_ acc: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
    ti_f32_kernels_get().pointee.pool_max(acc, x, n)
  }

  @inline(__always) static func hasNaN(_ x: UnsafePointer<Float>, _ n: Int) -> Bool {
    var any: UInt32 = 0
    for i in 0..<n { any |= x[i] != x[i] ? 1 : 0 }
    return any != 0
  }
}

/// float32 minimum; a NaN anywhere gives NaN (as numpy's min).
enum MinFloat: ReduceStep {
  static var identity: Float { .infinity }
  @inline(__always) static func fold(_ a: Float, _ x: Float) -> Float { a != a ? a : (x < a || x != x ? x : a) }
  @inline(__always) static func foldRun(_ a: Float, _ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var m = a
    for i in 0..<n { m = fold(m, x[i]) }
    return m
  }
}

/// float32 product in Double (ReduceProd).
enum ProdFloat: ReduceStep {
  static var identity: Double { 1 }
  @inline(__always) static func fold(_ a: Double, _ x: Float) -> Double { a * Double(x) }
  @inline(__always) static func foldRun(_ a: Double, _ x: UnsafePointer<Float>, _ n: Int) -> Double {
    var p = a
    for i in 0..<n { p *= Double(x[i]) }
    return p
  }
}

/// A reduction's iteration: size-1 dims dropped, neighbouring dims of the
/// same kind (reduced or kept) merged, with each merged dim's stride in the
/// output (0 when reduced). Built at bind; `run` allocates nothing.
struct ReductionPlan {
  /// Elements reduced into each output.
  let reduceCount: Int
  /// Outputs.
  let outCount: Int
  let inner: Int
  let innerReduced: Bool
  let outerGroups: Int
  let outer: Int
  let sizes: IntTable
  let outStrides: IntTable

  init(shape: [Int], reduced: [Bool]) {
    var sizes: [Int] = []
    var kinds: [Bool] = []
    var reduceCount = 1
    for (i, d) in shape.enumerated() where d > 1 {
      if reduced[i] { reduceCount &*= d }
      if let last = kinds.last, last == reduced[i] {
        sizes[sizes.count - 1] &*= d
      } else {
        sizes.append(d)
        kinds.append(reduced[i])
      }
    }
    if sizes.isEmpty {
      sizes = [1]
      kinds = [false]
    }
    var strides = [Int](repeating: 0, count: sizes.count)
    var acc = 1
    for g in stride(from: sizes.count - 1, through: 0, by: -1) where !kinds[g] {
      strides[g] = acc
      acc &*= sizes[g]
    }
    self.reduceCount = reduceCount
    outCount = acc
    inner = sizes[sizes.count - 1]
    innerReduced = kinds[kinds.count - 1]
    outerGroups = sizes.count - 1
    outer = sizes.dropLast().reduce(1, &*)
    self.sizes = IntTable(sizes)
    outStrides = IntTable(strides)
  }

  /// Sets `acc[0..<outCount]` to the reduction of `x` with step `R`.
  @inline(__always)
  func run<R: ReduceStep>(_: R.Type, _ x: UnsafePointer<R.Element>, _ acc: UnsafeMutablePointer<R.Acc>) {
    let identity = R.identity
    for i in 0..<outCount { acc[i] = identity }
    let sz = sizes.base
    let st = outStrides.base
    for t in 0..<outer {
      // Output offset of this run: decompose t over the outer merged dims.
      var rem = t
      var off = 0
      var g = outerGroups &- 1
      while g >= 0 {
        let d = sz[g]
        let q = rem / d
        off &+= (rem &- q &* d) &* st[g]
        rem = q
        g &-= 1
      }
      let xs = x + t &* inner
      if innerReduced {
        acc[off] = R.foldRun(acc[off], xs, inner)
      } else {
        R.foldRow(acc + off, xs, inner)
      }
    }
  }
}
