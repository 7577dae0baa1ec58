/// Every op the runtime knows. The raw value is the op code in .tinf files
/// and in the C API: append-only, a number never changes meaning.
/// Semantics: docs/ops.md. What the core asks of each op: `traits`
/// (OpTraits.swift). Adding an op: docs/architecture.md.
public enum OpKind: UInt16, Sendable, CaseIterable {
  case fullyConnected = 1
  case matMul = 2
  case conv2D = 3
  case depthwiseConv2D = 4
  case transposeConv2D = 5
  case maxPool2D = 6
  case averagePool2D = 7
  case mean = 8
  case add = 9
  case sub = 10
  case mul = 11
  case div = 12
  case maximum = 13
  case minimum = 14
  case relu = 15
  case relu6 = 16
  case leakyRelu = 17
  case prelu = 18
  case hardSwish = 19
  case logistic = 20
  case tanh = 21
  case gelu = 22
  case exp = 23
  case log = 24
  case sqrt = 25
  case rsqrt = 26
  case softmax = 27
  case logSoftmax = 28
  case layerNorm = 29
  case batchNorm = 30
  case reshape = 31
  case squeeze = 32
  case expandDims = 33
  case transpose = 34
  case concat = 35
  case split = 36
  case slice = 37
  case stridedSlice = 38
  case pad = 39
  case gather = 40
  case resizeBilinear = 41
  case resizeNearest = 42
  case depthToSpace = 43
  case spaceToDepth = 44
  case quantize = 45
  case dequantize = 46
  case reduceMax = 47
  case equal = 48
  case notEqual = 49
  case less = 50
  case lessEqual = 51
  case greater = 52
  case greaterEqual = 53
  case logicalAnd = 54
  case logicalOr = 55
  case logicalXor = 56
  case logicalNot = 57
  case select = 58
  case floor = 59
  case ceil = 60
  case round = 61
  case cast = 62
  case shape = 63
  case reduceMin = 64
  case reduceProd = 65
  case reduceSum = 66
  case expand = 67
  case tile = 68
  case range = 69
  case erf = 70
  case lstm = 71
  case gru = 72
  // Resource variables (session state; Runtime/Variables.swift): 76-77.
  case readVariable = 76
  case assignVariable = 77
  // Control flow (subgraphs; Runtime/ControlFlow.swift): 78-79.
  case ifThenElse = 78
  case whileLoop = 79
  // Data movement at a run-time position (issue 14, TFLite WHILE-loop LSTMs).
  case dynamicUpdateSlice = 80

  /// The op's name (FileCode).
  public var staticName: StaticString {
    switch self {
    case .fullyConnected: return "FullyConnected"
    case .matMul: return "MatMul"
    case .conv2D: return "Conv2D"
    case .depthwiseConv2D: return "DepthwiseConv2D"
    case .transposeConv2D: return "TransposeConv2D"
    case .maxPool2D: return "MaxPool2D"
    case .averagePool2D: return "AveragePool2D"
    case .mean: return "Mean"
    case .add: return "Add"
    case .sub: return "Sub"
    case .mul: return "Mul"
    case .div: return "Div"
    case .maximum: return "Maximum"
    case .minimum: return "Minimum"
    case .relu: return "Relu"
    case .relu6: return "Relu6"
    case .leakyRelu: return "LeakyRelu"
    case .prelu: return "PRelu"
    case .hardSwish: return "HardSwish"
    case .logistic: return "Logistic"
    case .tanh: return "Tanh"
    case .gelu: return "Gelu"
    case .exp: return "Exp"
    case .log: return "Log"
    case .sqrt: return "Sqrt"
    case .rsqrt: return "Rsqrt"
    case .softmax: return "Softmax"
    case .logSoftmax: return "LogSoftmax"
    case .layerNorm: return "LayerNorm"
    case .batchNorm: return "BatchNorm"
    case .reshape: return "Reshape"
    case .squeeze: return "Squeeze"
    case .expandDims: return "ExpandDims"
    case .transpose: return "Transpose"
    case .concat: return "Concat"
    case .split: return "Split"
    case .slice: return "Slice"
    case .stridedSlice: return "StridedSlice"
    case .pad: return "Pad"
    case .gather: return "Gather"
    case .resizeBilinear: return "ResizeBilinear"
    case .resizeNearest: return "ResizeNearest"
    case .depthToSpace: return "DepthToSpace"
    case .spaceToDepth: return "SpaceToDepth"
    case .quantize: return "Quantize"
    case .dequantize: return "Dequantize"
    case .reduceMax: return "ReduceMax"
    case .equal: return "Equal"
    case .notEqual: return "NotEqual"
    case .less: return "Less"
    case .lessEqual: return "LessEqual"
    case .greater: return "Greater"
    case .greaterEqual: return "GreaterEqual"
    case .logicalAnd: return "LogicalAnd"
    case .logicalOr: return "LogicalOr"
    case .logicalXor: return "LogicalXor"
    case .logicalNot: return "LogicalNot"
    case .select: return "Where"
    case .floor: return "Floor"
    case .ceil: return "Ceil"
    case .round: return "Round"
    case .cast: return "Cast"
    case .shape: return "Shape"
    case .reduceMin: return "ReduceMin"
    case .reduceProd: return "ReduceProd"
    case .reduceSum: return "ReduceSum"
    case .expand: return "Expand"
    case .tile: return "Tile"
    case .range: return "Range"
    case .erf: return "Erf"
    case .lstm: return "LSTM"
    case .gru: return "GRU"
    case .readVariable: return "ReadVariable"
    case .assignVariable: return "AssignVariable"
    case .ifThenElse: return "If"
    case .whileLoop: return "While"
    case .dynamicUpdateSlice: return "DynamicUpdateSlice"
    }
  }

}

extension OpKind: FileCode {}

/// The codes of a .tinf file that name things (ops, attribute keys):
/// append-only UInt16 codes 1...maxCode with a static name each.
public protocol FileCode: RawRepresentable, CaseIterable where RawValue == UInt16 {
  /// The name used in files, docs, errors and the Python builder, as a
  /// static C string (for the C API).
  var staticName: StaticString { get }
}

extension FileCode {
  public var name: String { String(staticName) }

  /// The largest code.
  public static var maxCode: UInt16 {
    var m: UInt16 = 0
    for k in allCases where k.rawValue > m { m = k.rawValue }
    return m
  }

  /// The case with code `code`; nil when no case has it (any Int is safe).
  public static func from(code: Int) -> Self? {
    guard code > 0 && code <= Int(maxCode) else { return nil }
    return Self(rawValue: UInt16(code))
  }
}
