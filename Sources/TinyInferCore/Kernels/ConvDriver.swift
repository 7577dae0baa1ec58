/// The convolution family's shared parts: shape inference and bind-time
/// geometry of the float32 and int8 Conv2D and DepthwiseConv2D, and the two
/// drivers whose element type and inner step are generic parameters (fully
/// specialized: each kernel calls them with a concrete step type):
///
/// - `ConvDriver.general`: Conv2D with any groups and weights (the paths
///   without packed weights): tiles of four output pixels, their patches
///   read in place (1x1, no padding) or gathered with the padding value,
///   then the step's dot products and output stage (`ConvTile`).
/// - `ConvDriver.depthwise`: DepthwiseConv2D, any depth multiplier, one
///   output pixel at a time over the taps inside the image
///   (`DepthwiseTaps`).
///
/// The SIMD paths of the depthwise kernels (depth multiplier 1) and the
/// packed-GEMM paths of Conv2D keep loops of their own.
enum ConvFamily {
  /// The input and weights of a weighted op (x, w and an optional bias):
  /// float32 input and weights, or (`int8`) an int8 input quantized per
  /// tensor (the weights are checked by the caller).
  static func inputs(_ inputs: [TensorDesc?], int8: Bool) throws(TinfError) -> (x: TensorDesc, w: TensorDesc) {
    guard int8 else { return try floatInputs(inputs, 2...3, "input", "weights") }
    try arity(inputs, 2...3)
    let x = try required(inputs, 0, "input")
    let w = try required(inputs, 1, "weights")
    try QCheck.requireInt8(x, "input")
    _ = try QCheck.perTensor(x, "input")
    return (x, w)
  }

  /// Shape inference of Conv2D or (`depthwise`) DepthwiseConv2D, float32 or
  /// int8: NHWC output [N, OH, OW, output channels] (weights quantized per tensor or per output channel: dim 0 of a
  /// Conv2D's, dim 3 of a DepthwiseConv2D's; an int32 bias).
  static func infer(_ node: Node, _ inputs: [TensorDesc?], int8: Bool, depthwise: Bool) throws(TinfError)
    -> [TensorType]
  {
    let (x, w) = try Self.inputs(inputs, int8: int8)
    try requireNHWC(x, "input")
    let cout =
      depthwise ? try DepthwiseConv2DKernel.outputChannels(node, x, w) : try Conv2DKernel.outputChannels(node, x, w)
    let g = try WindowGeometry(node.attrs, inputH: x.shape[1], inputW: x.shape[2], kernelH: w.shape[1], kernelW: w.shape[2])
    let shape = [x.shape[0], g.oh, g.ow, cout]
    if int8 {
      _ = try QCheck.weights(
        w, channels: shape[3], axis: depthwise ? 3 : 0, depthwise ? "DepthwiseConv2D" : "Conv2D")
      try QCheck.bias(inputs, 2, shape[3])
    } else {
      try checkBias(inputs, 2, shape[3])
    }
    _ = try Activation.from(node.attrs)
    return [TensorType(int8 ? .int8 : .float32, shape)]
  }
}

/// The sizes of a bound Conv2D or DepthwiseConv2D (float32 or int8): input
/// [N, H, W, Cin], window KH x KW, `cout` output channels (dim 0 of a
/// Conv2D's weights, dim 3 of a DepthwiseConv2D's), and the window geometry.
struct ConvDims {
  let n: Int, h: Int, w: Int, cin: Int
  let cout: Int, kh: Int, kw: Int
  let oh: Int, ow: Int, padT: Int, padL: Int
  let sh: Int, sw: Int, dh: Int, dw: Int

  init(_ ctx: KernelContext, depthwise: Bool) throws(TinfError) {
    guard let xd = ctx.inputs[0], let wd = ctx.inputs[1] else { throw .format("\(ctx.node.op.name): missing input") }
    n = xd.shape[0]
    h = xd.shape[1]
    w = xd.shape[2]
    cin = xd.shape[3]
    cout = wd.shape[depthwise ? 3 : 0]
    kh = wd.shape[1]
    kw = wd.shape[2]
    let g = try WindowGeometry(ctx.attrs, inputH: h, inputW: w, kernelH: kh, kernelW: kw)
    (oh, ow, padT, padL) = (g.oh, g.ow, g.padT, g.padL)
    (sh, sw, dh, dw) = (g.sh, g.sw, g.dh, g.dw)
  }

  /// Output pixels (N * OH * OW).
  var pixels: Int { n &* oh &* ow }
  /// A 1x1 window without padding: each pixel's patch is an input pixel.
  var direct: Bool { kh == 1 && kw == 1 && padT == 0 && padL == 0 }

  /// The output columns whose window of three columns (dilation 1) lies
  /// inside the image horizontally.
  var inside3: Range<Int> {
    let first = (padL &+ sw &- 1) / sw
    let end = w &- 3 &+ padL >= 0 ? min(ow, (w &- 3 &+ padL) / sw &+ 1) : 0
    return first..<max(first, end)
  }

  /// The first input pixel of an output pixel's window without padding
  /// (its top left corner).
  @inline(__always)
  func inputPixel(_ c: PixelCursor) -> Int { (c.b &* h &+ c.oy &* sh) &* w &+ c.ox &* sw }

  /// The first input pixel of output pixel p's window (no padding).
  @inline(__always)
  func directPixel(_ p: Int) -> Int { inputPixel(PixelCursor(p, oh: oh, ow: ow)) }

  /// Gathers the input window of output pixel (b, oy, ox) into `dst`, laid
  /// out [groups][KH][KW][Cin/groups] (each group's part matches a weight
  /// row of length `k`); cells in the padding hold elements whose bytes are
  /// all `pad` (0 for float32, the input zero point for int8). The
  /// elements move as bytes, so that no generic element copy is left in
  /// the loops after specialization.
  @inline(__always)
  func gatherPatch<T>(
    _ dst: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, b: Int, oy: Int, ox: Int, groups: Int, k: Int, pad: UInt8
  ) {
    let es = MemoryLayout<T>.stride
    let iy0 = oy &* sh &- padT
    let ix0 = ox &* sw &- padL
    let cg = cin / groups
    @inline(__always) func source(_ iy: Int, _ ix: Int) -> UnsafeRawPointer {
      UnsafeRawPointer(x + ((b &* h &+ iy) &* w &+ ix) &* cin)
    }
    if groups == 1 && dw == 1 && ix0 >= 0 && ix0 &+ kw <= w {
      // The window is inside the image horizontally: each of its rows is
      // kw * cin consecutive input values.
      let rowLen = kw &* cin
      for i in 0..<kh {
        let iy = iy0 &+ i &* dh
        let d = UnsafeMutableRawPointer(dst + i &* rowLen)
        if iy >= 0 && iy < h {
          copyBytes(d, source(iy, ix0), rowLen &* es)
        } else {
          fillBytes(d, pad, rowLen &* es)
        }
      }
      return
    }
    for i in 0..<kh {
      let iy = iy0 &+ i &* dh
      let rowInside = iy >= 0 && iy < h
      for j in 0..<kw {
        let ix = ix0 &+ j &* dw
        let tap = (i &* kw &+ j) &* cg
        let inside = rowInside && ix >= 0 && ix < w
        if groups == 1 && cin <= 16 {
          // Few channels (a first layer): plain loops beat a memcpy call.
          let d = UnsafeMutableRawPointer(dst + tap)
          if inside { copyBytes(d, source(iy, ix), cin &* es) } else { fillBytes(d, pad, cin &* es) }
        } else {
          // Inline copies: a memmove call per group's few channels (8
          // floats in a groups=4 layer) cost more than the copy.
          for g in 0..<groups {
            let d = UnsafeMutableRawPointer(dst + (g &* k &+ tap))
            if inside {
              copyBytes(d, source(iy, ix) + g &* cg &* es, cg &* es)
            } else {
              fillBytes(d, pad, cg &* es)
            }
          }
        }
      }
    }
  }
}

/// Copies `n` bytes: blocks of 32 first (a 3x3 window of 3 float channels:
/// 32 + 4), then 4, then 1 at a time.
@inline(__always)
func copyBytes(_ d: UnsafeMutableRawPointer, _ src: UnsafeRawPointer, _ n: Int) {
  var t = 0
  while t &+ 32 <= n {
    d.storeBytes(of: src.loadUnaligned(fromByteOffset: t, as: SIMD8<UInt32>.self), toByteOffset: t, as: SIMD8<UInt32>.self)
    t &+= 32
  }
  while t &+ 4 <= n {
    d.storeBytes(of: src.loadUnaligned(fromByteOffset: t, as: UInt32.self), toByteOffset: t, as: UInt32.self)
    t &+= 4
  }
  while t < n {
    d.storeBytes(of: src.load(fromByteOffset: t, as: UInt8.self), toByteOffset: t, as: UInt8.self)
    t &+= 1
  }
}

/// Sets `n` bytes to `v`: 4 at a time, then 1.
@inline(__always)
func fillBytes(_ d: UnsafeMutableRawPointer, _ v: UInt8, _ n: Int) {
  let word = UInt32(v) &* 0x0101_0101
  var t = 0
  while t &+ 4 <= n {
    d.storeBytes(of: word, toByteOffset: t, as: UInt32.self)
    t &+= 4
  }
  while t < n {
    d.storeBytes(of: v, toByteOffset: t, as: UInt8.self)
    t &+= 1
  }
}

/// The taps k in k0..<k1 (of 0..<k) of a window starting at `start` with
/// dilation `d` that fall inside 0..<size.
@inline(__always)
func windowTaps(_ start: Int, _ k: Int, _ d: Int, _ size: Int) -> (Int, Int) {
  let k0 = start >= 0 ? 0 : min(k, (0 &- start &+ d &- 1) / d)
  let k1 = start &+ (k &- 1) &* d < size ? k : max(k0, (size &- start &+ d &- 1) / d)
  return (k0, k1)
}

/// Four patch pointers: the pixels of a tile of `ConvDriver.general`.
typealias PatchTile<T> = (UnsafePointer<T>, UnsafePointer<T>, UnsafePointer<T>, UnsafePointer<T>)

/// The inner step of `ConvDriver.general`: the dot products of a tile's
/// patches with the weight rows, and the output stage.
protocol ConvTile {
  associatedtype Element
  associatedtype Output
  /// Once per run, before any pixel (the sums of weights that change
  /// between runs).
  func prepare()
  /// The `cout` outputs of each of the tile's `count` (1...4) pixels, at
  /// `y + s * cout`. `a` holds the pixels' patches (slots past `count`
  /// repeat the last one); group g's part starts at `g * groupStride`.
  /// `chunk` indexes per-thread scratch.
  func run(_ a: PatchTile<Element>, count: Int, groupStride: Int, _ y: UnsafeMutablePointer<Output>, chunk: Int)
}

enum ConvDriver {
  /// Output pixels in tiles of four (runs of them split over threads): the
  /// patches of 1x1 windows without padding are read in place, others are
  /// gathered into per-thread scratch with bytes `pad` in the padding
  /// cells (the input zero point of an int8 convolution), then `step` computes
  /// the tile's outputs.
  static func general<Step: ConvTile>(
    _ d: ConvDims, groups: Int, x: UnsafePointer<Step.Element>, pad: UInt8,
    y: UnsafeMutablePointer<Step.Output>, pool: ThreadPool, _ step: Step
  ) throws(TinfError) -> KernelFn {
    let tile = 4
    let k = d.kh &* d.kw &* (d.cin / groups)  // a weight row
    let patch = d.kh &* d.kw &* d.cin
    let direct = d.direct
    let cout = d.cout
    let cin = d.cin
    let (oh, ow) = (d.oh, d.ow)
    let pixels = d.pixels
    let scratch = try Scratch<Step.Element>(count: direct ? 1 : pool.threads &* tile &* patch)
    let minChunk = max(tile, minChunkFor(perItem: k &* cout))
    return { () throws(TinfError) in
      step.prepare()
      forEachChunk(pool, pixels, minChunk: minChunk) { chunk, range in
        let buf = scratch.base + chunk &* tile &* patch
        var pp = (x, x, x, x)
        var p = range.lowerBound
        while p < range.upperBound {
          let count = min(tile, range.upperBound &- p)
          for s in 0..<tile {
            let q = p &+ min(s, count &- 1)
            let ptr: UnsafePointer<Step.Element>
            if direct {
              ptr = x + d.directPixel(q) &* cin
            } else {
              let dst = buf + s &* patch
              if s < count {
                let b = q / (oh &* ow)
                let r = q &- b &* (oh &* ow)
                let oy = r / ow
                d.gatherPatch(dst, x, b: b, oy: oy, ox: r &- oy &* ow, groups: groups, k: k, pad: pad)
              }
              ptr = UnsafePointer(dst)
            }
            switch s {
            case 0: pp.0 = ptr
            case 1: pp.1 = ptr
            case 2: pp.2 = ptr
            default: pp.3 = ptr
            }
          }
          // For a tile with fewer pixels, the extra slots repeat the last
          // one's patch (gathered into its own slot only when s < count).
          if !direct && count < tile {
            let last = UnsafePointer(buf + (count &- 1) &* patch)
            if count <= 1 { pp.1 = last }
            if count <= 2 { pp.2 = last }
            if count <= 3 { pp.3 = last }
          }
          step.run(pp, count: count, groupStride: direct ? cin / groups : k, y + p &* cout, chunk: chunk)
          p &+= tile
        }
      }
    }
  }
}

/// The inner step of `ConvDriver.depthwise`: accumulators of one output
/// pixel (C * M channels), one tap at a time, then the output stage.
protocol DepthwiseTaps {
  associatedtype Element
  associatedtype Output
  associatedtype Accumulator
  /// The accumulators of the output pixel at `y` (per-thread scratch, or
  /// the output itself), set to the bias.
  func begin(_ y: UnsafeMutablePointer<Output>, chunk: Int) -> UnsafeMutablePointer<Accumulator>
  /// Adds one tap: input pixel `x` (C channels) times weights `w` (C * M).
  func tap(_ acc: UnsafeMutablePointer<Accumulator>, _ x: UnsafePointer<Element>, _ w: UnsafePointer<Element>)
  /// Writes the pixel's outputs from its accumulators.
  func finish(_ acc: UnsafeMutablePointer<Accumulator>, _ y: UnsafeMutablePointer<Output>)
}

extension ConvDriver {
  /// DepthwiseConv2D, any depth multiplier: output rows split over threads;
  /// each output pixel accumulates, in order, the taps of its window that
  /// lie inside the image (padding contributes nothing).
  static func depthwise<Step: DepthwiseTaps>(
    _ d: ConvDims, x: UnsafePointer<Step.Element>, w: UnsafePointer<Step.Element>,
    y: UnsafeMutablePointer<Step.Output>, pool: ThreadPool, minChunk: Int, _ step: Step
  ) -> KernelFn {
    let rows = d.n &* d.oh
    return { () throws(TinfError) in
      forEachChunk(pool, rows, minChunk: minChunk) { chunk, range in
        let (c, cm) = (d.cin, d.cout)
        for row in range {
          let b = row / d.oh
          let oy = row &- b &* d.oh
          let iy0 = oy &* d.sh &- d.padT
          let (i0, i1) = windowTaps(iy0, d.kh, d.dh, d.h)
          let ximg = x + b &* d.h &* d.w &* c
          for ox in 0..<d.ow {
            let yo = y + (row &* d.ow &+ ox) &* cm
            let ix0 = ox &* d.sw &- d.padL
            let (j0, j1) = windowTaps(ix0, d.kw, d.dw, d.w)
            let acc = step.begin(yo, chunk: chunk)
            if j0 < j1 {
              for i in i0..<i1 {
                for j in j0..<j1 {
                  step.tap(
                    acc, ximg + ((iy0 &+ i &* d.dh) &* d.w &+ ix0 &+ j &* d.dw) &* c, w + (i &* d.kw &+ j) &* cm)
                }
              }
            }
            step.finish(acc, yo)
          }
        }
      }
    }
  }
}
