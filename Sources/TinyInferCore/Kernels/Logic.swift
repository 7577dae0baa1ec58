/// Comparisons (Equal, NotEqual, Less, LessEqual, Greater, GreaterEqual),
/// logical ops (LogicalAnd, LogicalOr, LogicalXor, LogicalNot) and Where
/// (docs/ops.md): numpy broadcasting, bool outputs (one byte, 0 or 1).
/// Comparisons take two inputs of one dtype (float32 with IEEE rules: NaN
/// compares unequal to everything; int8, uint8, int32, int64; bool for
/// Equal and NotEqual);
/// int8/uint8 only without quantization parameters (raw integers).
enum CompareOp { case equal, notEqual, less, lessEqual, greater, greaterEqual }
enum LogicOp { case and, or, xor, not }

enum CompareKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 2...2)
    let a = try required(inputs, 0, "x")
    let b = try required(inputs, 1, "y")
    guard a.dtype == b.dtype else {
      throw TinfError(.unsupportedDType, "compares inputs of one dtype; got \(a.dtype.name) and \(b.dtype.name)")
    }
    try requirePlainNumbers(a, allowBool: true)
    guard a.dtype != .int16 else { throw TinfError(.unsupportedDType, "\(node.op.name) does not take int16") }
    let op = try Registry.compareOp(node)
    if a.dtype == .bool && op != .equal && op != .notEqual {
      throw TinfError(.unsupportedDType, "\(node.op.name) does not order bool values")
    }
    return [TensorType(.bool, try broadcastShapes(a.shape, b.shape))]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let plan = BroadcastPlan(ctx.inputs[0]!.shape, ctx.inputs[1]!.shape, ctx.outputs[0].shape)
    let a = try movePointer(ctx, 0)
    let b = try movePointer(ctx, 1)
    let y = ctx.output(0, Bool.self)
    let op = try Registry.compareOp(ctx.node)
    switch ctx.inputs[0]!.dtype {
    case .float32: return compare(Float.self, op, plan, a, b, y)
    case .int32: return compare(Int32.self, op, plan, a, b, y)
    case .int64: return compare(Int64.self, op, plan, a, b, y)
    case .int8: return compare(Int8.self, op, plan, a, b, y)
    case .uint8, .bool: return compare(UInt8.self, op, plan, a, b, y)
    case .int16, .float16:
      throw TinfError(.unsupportedDType, "\(ctx.node.op.name) does not take \(ctx.inputs[0]!.dtype.name)")
    }
  }

  /// Each comparison as a 4-bit table over the outcomes less, equal,
  /// greater, unordered (a NaN), so one loop per dtype serves all six.
  static func table(_ op: CompareOp) -> UInt8 {
    switch op {
    case .equal: return 0b0010
    case .notEqual: return 0b1101
    case .less: return 0b0001
    case .lessEqual: return 0b0011
    case .greater: return 0b0100
    case .greaterEqual: return 0b0110
    }
  }

  static func compare<T: Comparable>(
    _: T.Type, _ op: CompareOp, _ plan: BroadcastPlan, _ a: UnsafeRawPointer, _ b: UnsafeRawPointer,
    _ y: UnsafeMutablePointer<Bool>
  ) -> KernelFn {
    let pa = a.assumingMemoryBound(to: T.self)
    let pb = b.assumingMemoryBound(to: T.self)
    let t = table(op)
    let (mlt, meq, mgt, mun) = (t & 1, (t >> 1) & 1, (t >> 2) & 1, (t >> 3) & 1)
    let yb = UnsafeMutableRawPointer(y).assumingMemoryBound(to: UInt8.self)
    return { () throws(TinfError) in
      plan.map(pa, pb, yb) { u, v in
        let lt: UInt8 = u < v ? 1 : 0
        let eq: UInt8 = u == v ? 1 : 0
        let gt: UInt8 = u > v ? 1 : 0
        return (lt & mlt) | (eq & meq) | (gt & mgt) | ((1 &- lt &- eq &- gt) & mun)
      }
    }
  }
}

/// Refuses float16 and quantized 8-bit inputs of the ops that compute on
/// raw numbers (comparisons, Where's condition, Cast).
func requirePlainNumbers(_ t: TensorDesc, allowBool: Bool) throws(TinfError) {
  if t.dtype == .float16 || (t.dtype == .bool && !allowBool) {
    throw TinfError(.unsupportedDType, "input '\(t.name)' is \(t.dtype.name), which this op does not take")
  }
  if t.quant != nil {
    throw TinfError(.unsupportedDType, "input '\(t.name)' is quantized \(t.dtype.name); this op takes raw numbers")
  }
}

/// LogicalAnd, LogicalOr, LogicalXor (two bool inputs, broadcast) and
/// LogicalNot (one).
enum LogicKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, node.op.traits.inputs)
    var shape: [Int] = []
    for i in 0..<inputs.count {
      let t = try required(inputs, i, "x")
      guard t.dtype == .bool else {
        throw TinfError(.unsupportedDType, "input '\(t.name)' is \(t.dtype.name); \(node.op.name) takes bool")
      }
      shape = i == 0 ? t.shape : try broadcastShapes(shape, t.shape)
    }
    return [TensorType(.bool, shape)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let y = ctx.output(0, UInt8.self)
    let a = ctx.input(0, UInt8.self)
    let op = try Registry.logicOp(ctx.node)
    if op == .not {
      let n = ctx.outputs[0].count
      // Any nonzero byte is true.
      return { () throws(TinfError) in for i in 0..<n { y[i] = a[i] == 0 ? 1 : 0 } }
    }
    let plan = BroadcastPlan(ctx.inputs[0]!.shape, ctx.inputs[1]!.shape, ctx.outputs[0].shape)
    let b = ctx.input(1, UInt8.self)
    let yb = ctx.output(0, Bool.self)
    switch op {
    case .and: return { () throws(TinfError) in plan.map(a, b, yb) { $0 != 0 && $1 != 0 } }
    case .or: return { () throws(TinfError) in plan.map(a, b, yb) { $0 != 0 || $1 != 0 } }
    case .xor: return { () throws(TinfError) in plan.map(a, b, yb) { ($0 != 0) != ($1 != 0) } }
    case .not: throw TinfError(.internal, "LogicalNot is unary")
    }
  }
}

/// Where (TFLite SELECT / SELECT_V2, ONNX Where): y = cond ? x : y, the
/// three broadcast together; x and y of one dtype (any), cond bool.
enum SelectKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try arity(inputs, 3...3)
    let c = try required(inputs, 0, "condition")
    let x = try required(inputs, 1, "x")
    let y = try required(inputs, 2, "y")
    guard c.dtype == .bool else {
      throw TinfError(.unsupportedDType, "condition '\(c.name)' is \(c.dtype.name); Where takes bool")
    }
    guard x.dtype == y.dtype else {
      throw TinfError(.unsupportedDType, "x and y must have one dtype; got \(x.dtype.name) and \(y.dtype.name)")
    }
    guard x.quant == y.quant else { throw .unsupported("x and y have different quantization parameters") }
    let shape = try broadcastShapes(try broadcastShapes(c.shape, x.shape), y.shape)
    try checkMoveShape(shape)
    guard x.quant?.axis == nil else { throw .unsupported("per-axis quantized x and y are not supported") }
    return [TensorType(x.dtype, shape, quant: x.quant)]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let out = ctx.outputs[0].shape
    let sc = broadcastStrides(ctx.inputs[0]!.shape, to: out)
    let sx = broadcastStrides(ctx.inputs[1]!.shape, to: out)
    let sy = broadcastStrides(ctx.inputs[2]!.shape, to: out)
    let c = ctx.input(0, UInt8.self)
    let x = try movePointer(ctx, 1)
    let y = try movePointer(ctx, 2)
    let d = ctx.outputData[0]
    let walk = IndexWalk(out, [sc, sx, sy])
    switch ctx.outputs[0].dtype.size {
    case 1: return select(UInt8.self, walk, c, x, y, d)
    case 2: return select(UInt16.self, walk, c, x, y, d)
    case 4: return select(UInt32.self, walk, c, x, y, d)
    default: return select(UInt64.self, walk, c, x, y, d)
    }
  }

  static func select<T>(
    _: T.Type, _ walk: IndexWalk, _ c: UnsafePointer<UInt8>, _ x: UnsafeRawPointer, _ y: UnsafeRawPointer,
    _ d: UnsafeMutableRawPointer
  ) -> KernelFn {
    let px = x.assumingMemoryBound(to: T.self)
    let py = y.assumingMemoryBound(to: T.self)
    let pd = d.assumingMemoryBound(to: T.self)
    return { () throws(TinfError) in
      walk.forEachRow { off, st, o, n in
        let (oc, ox, oy) = (off[0], off[1], off[2])
        let (ic, ix, iy) = (st[0], st[1], st[2])
        for i in 0..<n {
          pd[o &+ i] = c[oc &+ i &* ic] != 0 ? px[ox &+ i &* ix] : py[oy &+ i &* iy]
        }
      }
    }
  }
}

/// The walk of an output shape in rows of its last dim, with the offsets
/// (in elements) of several broadcast inputs: `body(offsets, innerStrides,
/// outputOffset, n)` per row; an input's inner stride is 0 when it is
/// broadcast along the last dim. Built at bind; allocates nothing to run.
struct IndexWalk {
  let dims: IntTable
  let strides: IntTable
  let inputs: Int
  let inner: Int
  let outer: Int

  init(_ out: [Int], _ ins: [[Int]]) {
    let r = max(out.count, 1)
    let d = out.isEmpty ? [1] : out
    var st: [Int] = []
    for s in ins { st.append(contentsOf: s.isEmpty ? [0] : s) }
    dims = IntTable(d)
    strides = IntTable(st)
    inputs = ins.count
    inner = d[r - 1]
    outer = d.dropLast().reduce(1, &*)
  }

  @inline(__always)
  func forEachRow(
    _ body: (_ off: UnsafePointer<Int>, _ st: UnsafePointer<Int>, _ o: Int, _ n: Int) -> Void
  ) {
    let dm = dims.base
    let sb = strides.base
    let r = dims.count
    let k = inputs
    withUnsafeTemporaryAllocation(of: Int.self, capacity: r &+ 2 &* k) { buf in
      let idx = buf.baseAddress!
      let off = idx + r
      let inn = off + k
      for i in 0..<r { idx[i] = 0 }
      for j in 0..<k {
        off[j] = 0
        inn[j] = sb[j &* r &+ r &- 1]
      }
      var o = 0
      for _ in 0..<outer {
        body(UnsafePointer(off), UnsafePointer(inn), o, inner)
        o &+= inner
        var a = r &- 2
        while a >= 0 {
          idx[a] &+= 1
          for j in 0..<k { off[j] &+= sb[j &* r &+ a] }
          if idx[a] < dm[a] { break }
          for j in 0..<k { off[j] &-= sb[j &* r &+ a] &* dm[a] }
          idx[a] = 0
          a &-= 1
        }
      }
    }
  }
}

extension BroadcastPlan {
  /// y = f(a, b) elementwise over the broadcast (comparisons, logical ops).
  @inline(__always)
  func map<T, U>(
    _ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ y: UnsafeMutablePointer<U>, _ f: (T, T) -> U
  ) {
    forEachRow { offA, ia, offB, ib, o, n in
      let pa = a + offA
      let pb = b + offB
      let py = y + o
      if ia == 1 && ib == 1 {
        for i in 0..<n { py[i] = f(pa[i], pb[i]) }
      } else if ib == 0 {
        let v = pb[0]
        for i in 0..<n { py[i] = f(pa[i &* ia], v) }
      } else {
        let u = pa[0]
        for i in 0..<n { py[i] = f(u, pb[i]) }
      }
    }
  }
}
