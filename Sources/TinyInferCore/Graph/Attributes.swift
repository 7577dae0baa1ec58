/// Attribute keys: the raw value is the key id in .tinf files and in the
/// C API. Append-only. Meanings: docs/ops.md.
public enum AttrKey: UInt16, Sendable, CaseIterable {
  case activation = 1
  case padding = 2
  case pads = 3
  case strides = 4
  case dilations = 5
  case groups = 6
  case depthMultiplier = 7
  case outputPadding = 8
  case filter = 9
  case countIncludePad = 10
  case axes = 11
  case keepDims = 12
  case axis = 13
  case transposeA = 14
  case transposeB = 15
  case alpha = 16
  case approximate = 17
  case beta = 18
  case epsilon = 19
  case shape = 20
  case perm = 21
  case sizes = 22
  case begin = 23
  case size = 24
  case end = 25
  case beginMask = 26
  case endMask = 27
  case shrinkAxisMask = 28
  case ellipsisMask = 29
  case newAxisMask = 30
  case mode = 31
  case value = 32
  case alignCorners = 33
  case halfPixelCenters = 34
  case blockSize = 35
  case dtype = 36
  case weightFormat = 37
  case inputForget = 38
  case linearBeforeReset = 39
  case clip = 40
  /// Control flow (issue 14): the subgraph indices an If / While runs. A
  /// code apart from the sequence, so that keys added in parallel do not collide.
  case subgraphs = 76
  /// Issue 20 (float32 speed): a PRelu fused into the float32 Add that
  /// produces its input (Passes/PReluFusion.swift), one slope per channel
  /// of the last axis.
  case preluSlopes = 43
  /// int8 Conv2D, DepthwiseConv2D, TransposeConv2D and Mul: the output stage,
  /// 0 TFLite's fixed-point multipliers (the default, bit for bit LiteRT's
  /// reference kernels), 1 float32 (XNNPACK's and onnxruntime's, cheaper on
  /// x86; set by tinyinfer's quantizer, `QRequantTable`).
  case requantization = 44

  /// The key's name (FileCode).
  public var staticName: StaticString {
    switch self {
    case .activation: return "activation"
    case .padding: return "padding"
    case .pads: return "pads"
    case .strides: return "strides"
    case .dilations: return "dilations"
    case .groups: return "groups"
    case .depthMultiplier: return "depth_multiplier"
    case .outputPadding: return "output_padding"
    case .filter: return "filter"
    case .countIncludePad: return "count_include_pad"
    case .axes: return "axes"
    case .keepDims: return "keep_dims"
    case .axis: return "axis"
    case .transposeA: return "transpose_a"
    case .transposeB: return "transpose_b"
    case .alpha: return "alpha"
    case .approximate: return "approximate"
    case .beta: return "beta"
    case .epsilon: return "epsilon"
    case .shape: return "shape"
    case .perm: return "perm"
    case .sizes: return "sizes"
    case .begin: return "begin"
    case .size: return "size"
    case .end: return "end"
    case .beginMask: return "begin_mask"
    case .endMask: return "end_mask"
    case .shrinkAxisMask: return "shrink_axis_mask"
    case .ellipsisMask: return "ellipsis_mask"
    case .newAxisMask: return "new_axis_mask"
    case .mode: return "mode"
    case .value: return "value"
    case .alignCorners: return "align_corners"
    case .halfPixelCenters: return "half_pixel_centers"
    case .blockSize: return "block_size"
    case .dtype: return "dtype"
    case .weightFormat: return "weight_format"
    case .inputForget: return "input_forget"
    case .linearBeforeReset: return "linear_before_reset"
    case .clip: return "clip"
    case .subgraphs: return "subgraphs"
    case .preluSlopes: return "prelu_slopes"
    case .requantization: return "requantization"
    }
  }

}

extension AttrKey: FileCode {}

/// A typed attribute value. Type codes in files: 1 int, 2 float, 3 ints, 4 floats, 5 string.
public enum AttrValue: Sendable, Equatable {
  case int(Int64)
  case float(Float)
  case ints([Int64])
  case floats([Float])
  case string(String)

  var typeCode: UInt8 {
    switch self {
    case .int: return 1
    case .float: return 2
    case .ints: return 3
    case .floats: return 4
    case .string: return 5
    }
  }
}

/// The attributes of one op, with typed getters that check types and ranges
/// and name the op and attribute in their errors.
public struct Attributes: Sendable {
  public private(set) var entries: [(key: AttrKey, value: AttrValue)] = []

  public init() {}

  public subscript(key: AttrKey) -> AttrValue? {
    get {
      for e in entries where e.key == key { return e.value }
      return nil
    }
    set {
      for i in entries.indices where entries[i].key == key {
        if let newValue { entries[i].value = newValue } else { entries.remove(at: i) }
        return
      }
      if let newValue { entries.append((key, newValue)) }
    }
  }

  /// Int attribute within `range`, or `defaultValue` when absent.
  public func int(_ key: AttrKey, default defaultValue: Int, in range: ClosedRange<Int> = -attrLimit...attrLimit)
    throws(TinfError) -> Int
  {
    guard let v = self[key] else { return defaultValue }
    guard case .int(let x) = v else { throw .format("attribute \(key.name) must be an int") }
    guard x >= Int64(range.lowerBound) && x <= Int64(range.upperBound) else {
      throw .unsupported("attribute \(key.name) = \(x) is out of range \(range.lowerBound)...\(range.upperBound)")
    }
    return Int(x)
  }

  /// Float attribute (an int value is accepted and converted), or the default.
  public func float(_ key: AttrKey, default defaultValue: Float) throws(TinfError) -> Float {
    guard let v = self[key] else { return defaultValue }
    switch v {
    case .float(let x):
      return x
    case .int(let x):
      return Float(x)
    default:
      throw .format("attribute \(key.name) must be a float")
    }
  }

  /// Int list attribute, each element within `range`; nil when absent. A
  /// single int is accepted as a list of one.
  public func ints(_ key: AttrKey, in range: ClosedRange<Int> = -attrLimit...attrLimit) throws(TinfError) -> [Int]? {
    guard let v = self[key] else { return nil }
    var out: [Int] = []
    switch v {
    case .ints(let xs):
      out.reserveCapacity(xs.count)
      for x in xs {
        guard x >= Int64(range.lowerBound) && x <= Int64(range.upperBound) else {
          throw .unsupported("attribute \(key.name) has \(x), out of range \(range.lowerBound)...\(range.upperBound)")
        }
        out.append(Int(x))
      }
    case .int(let x):
      guard x >= Int64(range.lowerBound) && x <= Int64(range.upperBound) else {
        throw .unsupported("attribute \(key.name) = \(x) is out of range")
      }
      out.append(Int(x))
    default:
      throw .format("attribute \(key.name) must be a list of ints")
    }
    return out
  }

  /// Int list of exactly `count` elements, or the default.
  public func ints(_ key: AttrKey, count: Int, default defaultValue: [Int], in range: ClosedRange<Int>)
    throws(TinfError) -> [Int]
  {
    guard let xs = try ints(key, in: range) else { return defaultValue }
    guard xs.count == count else {
      throw .unsupported("attribute \(key.name) must have \(count) values, has \(xs.count)")
    }
    return xs
  }

  public func floats(_ key: AttrKey) throws(TinfError) -> [Float]? {
    guard let v = self[key] else { return nil }
    switch v {
    case .floats(let xs): return xs
    case .float(let x): return [x]
    default: throw .format("attribute \(key.name) must be a list of floats")
    }
  }
}
