/// Element types. Raw values are the dtype codes of the .tinf format and of
/// the C API's `tinf_dtype`: append-only.
public enum DType: UInt8, Sendable {
  case float32 = 1
  case float16 = 2
  case int8 = 3
  case uint8 = 4
  case int32 = 5
  case int64 = 6
  case int16 = 7
  case bool = 8

  /// Bytes per element.
  public var size: Int {
    switch self {
    case .float32, .int32: return 4
    case .float16, .int16: return 2
    case .int8, .uint8, .bool: return 1
    case .int64: return 8
    }
  }

  public var name: String {
    switch self {
    case .float32: return "float32"
    case .float16: return "float16"
    case .int8: return "int8"
    case .uint8: return "uint8"
    case .int32: return "int32"
    case .int64: return "int64"
    case .int16: return "int16"
    case .bool: return "bool"
    }
  }
}

/// Quantization parameters of a tensor: `real = (q - zeroPoint) * scale`.
/// `axis` is nil for per-tensor parameters (one scale), else the dimension
/// along which scales and zero points vary.
public struct Quantization: Sendable, Equatable {
  public var axis: Int?
  public var scales: [Float]
  public var zeroPoints: [Int32]

  public init(axis: Int?, scales: [Float], zeroPoints: [Int32]) {
    self.axis = axis
    self.scales = scales
    self.zeroPoints = zeroPoints
  }
}
