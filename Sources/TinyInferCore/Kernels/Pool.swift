import TinyInferShims

/// MaxPool2D and AveragePool2D (docs/ops.md), NHWC.
///
/// Padding cells never take part in a max; an average divides by the number
/// of real input cells in the window (TFLite), or by KH*KW when
/// count_include_pad = 1. Explicit pads must be smaller than the filter, so
/// that every window holds at least one real cell.
enum PoolKernel {
  static func infer(_ node: Node, _ inputs: [TensorDesc?]) throws(TinfError) -> [TensorType] {
    try infer(node, inputs, int8: false)
  }

  /// Shape inference of the float32 or (`int8`) the int8 pools; int8
  /// takes an input quantized per tensor and no count_include_pad.
  static func infer(_ node: Node, _ inputs: [TensorDesc?], int8: Bool) throws(TinfError) -> [TensorType] {
    try arity(inputs, 1...1)
    let x = try required(inputs, 0, "input")
    if int8 {
      try QCheck.requireInt8(x, "input")
    } else {
      try requireFloat(x, "input")
    }
    try requireNHWC(x, "input")
    if int8 { _ = try QCheck.perTensor(x, "input") }
    _ = try Activation.from(node.attrs)
    if int8, try node.attrs.int(.countIncludePad, default: 0, in: 0...1) != 0 {
      throw .unsupported("count_include_pad = 1 is not supported for int8 (TFLite divides by the real cells)")
    }
    let g = try PoolGeometry(node, x)
    return [TensorType(int8 ? .int8 : .float32, [x.shape[0], g.oh, g.ow, x.shape[3]])]
  }

  static func bind(_ ctx: KernelContext) throws(TinfError) -> KernelFn {
    let g = try PoolGeometry(ctx)
    let (lo, hi) = try Activation.from(ctx.node.attrs).range
    let (x, y) = (ctx.floatIn(0), ctx.floatOut(0))
    // The per-cell steps are C kernels per CPU level (tinyinfer_kernels_f32.h).
    let kern = PackedGemm.kernels
    if ctx.node.op == .maxPool2D {
      // One C call per output row, the pixel kept in registers over its
      // window (max_pool_row).
      let rowKernel = kern.max_pool_row
      let (h, w, c, kh, kw, ow, padL, sw) = (g.h, g.w, g.c, g.kh, g.kw, g.ow, g.padL, g.sw)
      return g.rowDriver(x: x, y: y, pool: ctx.pool) { yr, xi, iy0 in
        rowKernel(yr, xi, c, h, w, kh, kw, iy0, padL, sw, ow, lo, hi)
      }
    }
    let window = g.countIncludePad ? g.kh &* g.kw : 0
    return g.driver(
      x: x, y: y, pool: ctx.pool,
      Average(c: g.c, window: window, lo: lo, hi: hi, step: kern.pool_add, divide: kern.pool_divide))
  }

  struct Average: PoolWindow {
    let c: Int
    let window: Int
    let lo: Float, hi: Float
    /// y += x over c channels (ti_f32_kernels.pool_add).
    let step: @convention(c) (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void
    /// y = clamp(y / divisor, lo, hi) over c channels (ti_f32_kernels.pool_divide).
    let divide: @convention(c) (UnsafeMutablePointer<Float>, Int, Float, Float, Float) -> Void

    @inline(__always) func begin(_ y: UnsafeMutablePointer<Float>, chunk: Int) {
      y.update(repeating: 0, count: c)
    }
    @inline(__always) func add(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, chunk: Int) {
      step(y, x, c)
    }
    @inline(__always) func finish(_ y: UnsafeMutablePointer<Float>, cells: Int, chunk: Int) {
      divide(y, c, Float(window != 0 ? window : cells), lo, hi)
    }
  }
}

/// The step of the pooling driver for one output pixel of C channels:
/// `begin`, then `add` for each real input cell of its window, then
/// `finish` with the number of those cells. `chunk` indexes per-thread
/// scratch.
protocol PoolWindow {
  associatedtype Element
  func begin(_ y: UnsafeMutablePointer<Element>, chunk: Int)
  func add(_ x: UnsafePointer<Element>, _ y: UnsafeMutablePointer<Element>, chunk: Int)
  func finish(_ y: UnsafeMutablePointer<Element>, cells: Int, chunk: Int)
}

/// The sizes of a bound MaxPool2D or AveragePool2D (float32 or int8), and
/// the pooling driver.
struct PoolGeometry {
  let n: Int, h: Int, w: Int, c: Int
  let kh: Int, kw: Int, oh: Int, ow: Int, padT: Int, padL: Int, sh: Int, sw: Int
  let countIncludePad: Bool

  /// Checks the attributes: no dilations, explicit pads smaller than the
  /// filter (every window holds a real cell), count_include_pad only for
  /// AveragePool2D.
  init(_ node: Node, _ x: TensorDesc) throws(TinfError) {
    let filter = try node.attrs.ints(.filter, count: 2, default: [1, 1], in: 1...(1 << 20))
    let win = try WindowAttrs(node.attrs)
    guard win.dilations == [1, 1] else {
      throw .unsupported("pooling takes no dilations (got \(describe(win.dilations)))")
    }
    if win.padding == 2 {
      guard win.pads[0] < filter[0], win.pads[1] < filter[0], win.pads[2] < filter[1], win.pads[3] < filter[1] else {
        throw .unsupported(
          "pads \(describe(win.pads)) must be smaller than the filter \(describe(filter)) (a window would hold only padding)")
      }
    }
    countIncludePad = try node.attrs.int(.countIncludePad, default: 0, in: 0...1) == 1
    if countIncludePad && node.op != .averagePool2D {
      throw .unsupported("count_include_pad = 1 applies to AveragePool2D only")
    }
    let d = try win.dims(inputH: x.shape[1], inputW: x.shape[2], kernelH: filter[0], kernelW: filter[1])
    (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    (kh, kw, oh, ow, padT, padL) = (filter[0], filter[1], d.h.out, d.w.out, d.h.padBefore, d.w.padBefore)
    (sh, sw) = (win.strides[0], win.strides[1])
  }

  init(_ ctx: KernelContext) throws(TinfError) {
    guard let xd = ctx.inputs[0] else { throw .format("pool: missing input") }
    try self.init(ctx.node, xd)
  }

  /// Output rows split over threads, one `kernel(output row, its image,
  /// first window row iy0)` call per output row (the max pools' C kernels).
  func rowDriver<T>(
    x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, pool: ThreadPool,
    _ kernel: @escaping (UnsafeMutablePointer<T>, UnsafePointer<T>, Int) -> Void
  ) -> KernelFn {
    let g = self
    let minChunk = minChunkFor(perItem: ow &* kh &* kw &* c)
    return { () throws(TinfError) in
      forEachChunk(pool, g.n &* g.oh, minChunk: minChunk) { _, range in
        for row in range {
          let b = row / g.oh
          kernel(y + row &* g.ow &* g.c, x + b &* g.h &* g.w &* g.c, (row &- b &* g.oh) &* g.sh &- g.padT)
        }
      }
    }
  }

  /// Output rows split over threads; each output pixel runs `step` over
  /// the real cells of its window (padding cells take no part).
  func driver<Step: PoolWindow>(
    x: UnsafePointer<Step.Element>, y: UnsafeMutablePointer<Step.Element>, pool: ThreadPool, _ step: Step
  ) -> KernelFn {
    let g = self
    let rows = n &* oh
    let minChunk = minChunkFor(perItem: ow &* kh &* kw &* c)
    return { () throws(TinfError) in
      forEachChunk(pool, rows, minChunk: minChunk) { chunk, range in
        for row in range {
          let b = row / g.oh
          let oy = row &- b &* g.oh
          let iy0 = oy &* g.sh &- g.padT
          let yBegin = max(iy0, 0)
          let yEnd = min(iy0 &+ g.kh, g.h)
          for ox in 0..<g.ow {
            let yo = y + (row &* g.ow &+ ox) &* g.c
            let ix0 = ox &* g.sw &- g.padL
            let xBegin = max(ix0, 0)
            let xEnd = min(ix0 &+ g.kw, g.w)
            step.begin(yo, chunk: chunk)
            for iy in yBegin..<yEnd {
              for ix in xBegin..<xEnd {
                step.add(x + ((b &* g.h &+ iy) &* g.w &+ ix) &* g.c, yo, chunk: chunk)
              }
            }
            step.finish(yo, cells: (yEnd &- yBegin) &* (xEnd &- xBegin), chunk: chunk)
          }
        }
      }
    }
  }
}
