import TinyInferShims

/// A bound kernel: runs one op on pointers fixed when the session was made.
/// It must not allocate. It throws only for data-dependent failures (for
/// example a Gather index out of range).
public typealias KernelFn = () throws(TinfError) -> Void

/// What a kernel sees when it is bound to a session: the node, the tensors'
/// descriptions, and the addresses of their data (constants in the model
/// file, everything else in the session's arena).
public struct KernelContext {
  public let node: Node
  /// nil for an absent optional input.
  public let inputs: [TensorDesc?]
  public let outputs: [TensorDesc]
  public let inputData: [UnsafeMutableRawPointer?]
  public let outputData: [UnsafeMutableRawPointer]
  /// The session's threads; `parallelFor` splits work over them.
  public let pool: ThreadPool
  /// The op's weights packed at model load (`Registry.prepack`), if any.
  public var packed: PackedWeights? = nil
  /// The op's weights in sparse form, when its sparse kernel was chosen at load (SparseGemm.swift).
  public var sparse: SparseWeights? = nil
  /// The session's variables, for ReadVariable and AssignVariable (Runtime/Variables.swift).
  public var variables: VariableStore? = nil
  /// The model (for a control-flow op: its subgraphs and constants) and the
  /// session's work meter (Runtime/ControlFlow.swift).
  public var model: Model? = nil
  public var meter: WorkMeter? = nil

  var attrs: Attributes { node.attrs }

  /// The data of input `i` (present) as elements of type T.
  func input<T>(_ i: Int, _: T.Type) -> UnsafePointer<T> {
    UnsafePointer(inputData[i]!.assumingMemoryBound(to: T.self))
  }
  /// The data of an optional input, or nil when it is absent.
  func optionalInput<T>(_ i: Int, _: T.Type) -> UnsafePointer<T>? {
    guard i < inputData.count, let p = inputData[i] else { return nil }
    return UnsafePointer(p.assumingMemoryBound(to: T.self))
  }
  func output<T>(_ i: Int, _: T.Type) -> UnsafeMutablePointer<T> {
    outputData[i].assumingMemoryBound(to: T.self)
  }
  func floatIn(_ i: Int) -> UnsafePointer<Float> { input(i, Float.self) }
  func optionalFloatIn(_ i: Int) -> UnsafePointer<Float>? { optionalInput(i, Float.self) }
  func floatOut(_ i: Int) -> UnsafeMutablePointer<Float> { output(i, Float.self) }
}

// MARK: - Checks shared by shape inference

/// The required input `i` (present), or an error naming it.
func required(_ inputs: [TensorDesc?], _ i: Int, _ what: String) throws(TinfError) -> TensorDesc {
  guard i < inputs.count, let t = inputs[i] else { throw .format("missing required input \(i) (\(what))") }
  return t
}

/// Checks the number of inputs is within `range`.
func arity(_ inputs: [TensorDesc?], _ range: ClosedRange<Int>) throws(TinfError) {
  guard range.contains(inputs.count) else {
    throw .format("takes \(range.lowerBound)...\(range.upperBound) inputs, got \(inputs.count)")
  }
}

/// Refuses a dtype other than float32.
func requireFloat(_ t: TensorDesc, _ what: String) throws(TinfError) {
  guard t.dtype == .float32 else {
    throw TinfError(.unsupportedDType, "\(what) '\(t.name)' is \(t.dtype.name); only float32 is supported")
  }
}

/// The first two inputs of an op taking `count` inputs, present and
/// float32 (`first` and `second` name them in errors).
func floatInputs(_ inputs: [TensorDesc?], _ count: ClosedRange<Int>, _ first: String, _ second: String)
  throws(TinfError) -> (TensorDesc, TensorDesc)
{
  try arity(inputs, count)
  let a = try required(inputs, 0, first)
  let b = try required(inputs, 1, second)
  try requireFloat(a, first)
  try requireFloat(b, second)
  return (a, b)
}

/// Normalizes an axis that may be negative against `rank`.
func normalizeAxis(_ axis: Int, rank: Int, _ what: String = "axis") throws(TinfError) -> Int {
  let a = axis < 0 ? axis + rank : axis
  guard a >= 0 && a < rank else { throw .unsupported("\(what) \(axis) is out of range for rank \(rank)") }
  return a
}

// MARK: - Fused activations

/// Fused activation codes (attribute `activation`).
public enum Activation: Int, Sendable {
  case none = 0
  case relu = 1
  case relu6 = 2
  case reluN1To1 = 3

  static func from(_ attrs: Attributes) throws(TinfError) -> Activation {
    let v = try attrs.int(.activation, default: 0, in: 0...3)
    return Activation(rawValue: v)!
  }

  /// The clamp range: [lo, hi].
  var range: (lo: Float, hi: Float) {
    switch self {
    case .none: return (-Float.infinity, Float.infinity)
    case .relu: return (0, Float.infinity)
    case .relu6: return (0, 6)
    case .reluN1To1: return (-1, 1)
    }
  }

  /// Applies the clamp in place to `n` floats. NaN stays NaN.
  func apply(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    if self == .none { return }
    let (lo, hi) = range
    for i in 0..<n {
      let v = p[i]
      p[i] = v < lo ? lo : (v > hi ? hi : v)
    }
  }
}

@inline(__always)
func clampActivation(_ v: Float, _ lo: Float, _ hi: Float) -> Float {
  v < lo ? lo : (v > hi ? hi : v)
}

// MARK: - Windows (convolution and pooling)

/// Output size and leading padding of one spatial dimension.
struct WindowDim {
  var out: Int
  var padBefore: Int
}

/// Resolves padding for one spatial dim (docs/ops.md): `padding` 0 VALID,
/// 1 SAME, 2 EXPLICIT with (before, after).
func windowDim(input: Int, kernel: Int, stride: Int, dilation: Int, padding: Int, explicit: (Int, Int))
  throws(TinfError) -> WindowDim
{
  let eff = (kernel - 1) * dilation + 1
  switch padding {
  case 0:
    guard input >= eff else {
      throw .shape("window of effective size \(eff) is larger than the input (\(input)) with VALID padding")
    }
    return WindowDim(out: (input - eff) / stride + 1, padBefore: 0)
  case 1:
    let out = (input + stride - 1) / stride
    let total = max((out - 1) * stride + eff - input, 0)
    return WindowDim(out: out, padBefore: total / 2)
  default:
    // A pad larger than the input and the window together only adds
    // outputs that read nothing but padding (a tiny file could ask for a
    // huge output that way): out of proportion, refused (64 of slack).
    let maxPad = input + eff + 64
    guard explicit.0 <= maxPad && explicit.1 <= maxPad else {
      throw .shape(
        "explicit pads (\(explicit.0), \(explicit.1)) are out of proportion: each must be at most the input (\(input)) plus the window (\(eff)) plus 64")
    }
    let padded = input + explicit.0 + explicit.1
    guard padded >= eff else { throw .shape("window of effective size \(eff) is larger than the padded input (\(padded))") }
    return WindowDim(out: (padded - eff) / stride + 1, padBefore: explicit.0)
  }
}

/// The window attributes shared by Conv2D, DepthwiseConv2D and pooling.
struct WindowAttrs {
  var strides: [Int]
  var dilations: [Int]
  var padding: Int
  var pads: [Int]

  init(_ a: Attributes) throws(TinfError) {
    strides = try a.ints(.strides, count: 2, default: [1, 1], in: 1...(1 << 20))
    dilations = try a.ints(.dilations, count: 2, default: [1, 1], in: 1...(1 << 20))
    padding = try a.int(.padding, default: 0, in: 0...2)
    pads = padding == 2 ? try a.ints(.pads, count: 4, default: [0, 0, 0, 0], in: 0...(1 << 20)) : [0, 0, 0, 0]
  }

  func dims(inputH: Int, inputW: Int, kernelH: Int, kernelW: Int) throws(TinfError) -> (h: WindowDim, w: WindowDim) {
    let h = try windowDim(
      input: inputH, kernel: kernelH, stride: strides[0], dilation: dilations[0], padding: padding,
      explicit: (pads[0], pads[1]))
    let w = try windowDim(
      input: inputW, kernel: kernelW, stride: strides[1], dilation: dilations[1], padding: padding,
      explicit: (pads[2], pads[3]))
    return (h, w)
  }
}

/// Output size, leading padding, strides and dilations of a 2-D window op
/// (Conv2D, DepthwiseConv2D, their integer forms, pooling), from its
/// attributes and the input and window sizes.
struct WindowGeometry {
  let oh: Int, ow: Int, padT: Int, padL: Int
  let sh: Int, sw: Int, dh: Int, dw: Int

  init(_ attrs: Attributes, inputH: Int, inputW: Int, kernelH: Int, kernelW: Int) throws(TinfError) {
    let win = try WindowAttrs(attrs)
    let d = try win.dims(inputH: inputH, inputW: inputW, kernelH: kernelH, kernelW: kernelW)
    oh = d.h.out
    ow = d.w.out
    padT = d.h.padBefore
    padL = d.w.padBefore
    sh = win.strides[0]
    sw = win.strides[1]
    dh = win.dilations[0]
    dw = win.dilations[1]
  }
}

// MARK: - Broadcasting

/// numpy broadcasting of two shapes.
func broadcastShapes(_ a: [Int], _ b: [Int]) throws(TinfError) -> [Int] {
  let r = max(a.count, b.count)
  var out = [Int](repeating: 1, count: r)
  for i in 0..<r {
    let da = i < r - a.count ? 1 : a[i - (r - a.count)]
    let db = i < r - b.count ? 1 : b[i - (r - b.count)]
    guard da == db || da == 1 || db == 1 else {
      throw .shape("shapes \(describe(a)) and \(describe(b)) do not broadcast")
    }
    out[i] = max(da, db)
  }
  return out
}

/// Element strides of `shape` seen through broadcasting to `out` (0 on
/// broadcast dims), right-aligned.
func broadcastStrides(_ shape: [Int], to out: [Int]) -> [Int] {
  let s = stridesOf(shape)
  var r = [Int](repeating: 0, count: out.count)
  let off = out.count - shape.count
  for i in 0..<shape.count where shape[i] != 1 { r[i + off] = s[i] }
  return r
}

// MARK: - Math helpers (libm through the shim)

@inline(__always) func fexp(_ x: Float) -> Float { ti_shim_expf(x) }
@inline(__always) func flog(_ x: Float) -> Float { ti_shim_logf(x) }
@inline(__always) func ftanh(_ x: Float) -> Float { ti_shim_tanhf(x) }
@inline(__always) func ffloor(_ x: Float) -> Float { ti_shim_floorf(x) }
@inline(__always) func fceil(_ x: Float) -> Float { ti_shim_ceilf(x) }
/// Rounds half away from zero (C `roundf`).
@inline(__always) func fround(_ x: Float) -> Float { ti_shim_roundf(x) }

// MARK: - Scratch memory

/// Scratch memory owned by a bound kernel: allocated (zeroed) once at bind
/// time, never during a run, and freed with the kernel closure that
/// captures it. At least one element. Element is a plain numeric type.
final class Scratch<Element> {
  let base: UnsafeMutablePointer<Element>
  let count: Int

  init(count: Int) throws(TinfError) {
    let n = max(count, 1)
    guard let bytes = checkedMul(n, MemoryLayout<Element>.stride), let p = ti_shim_alloc_zeroed(bytes) else {
      throw TinfError(.outOfMemory, "cannot allocate \(count) elements of scratch memory")
    }
    base = p.bindMemory(to: Element.self, capacity: n)
    self.count = n
  }

  deinit { ti_shim_free(base) }
}

/// A bound kernel as the executors keep it (in arrays, one per op). A
/// closure stored in an array directly is kept at the array's generic
/// abstraction, behind a reabstraction thunk that every call goes through
/// (and that Registry.bind's result is wrapped in when appended); a
/// struct's field keeps the closure as it is.
public struct BoundKernel {
  public let run: KernelFn
  public init(run: @escaping KernelFn) { self.run = run }
}
