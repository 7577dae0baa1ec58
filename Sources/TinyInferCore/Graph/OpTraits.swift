/// What the passes, the planner, the quantizer and the kernel registry ask
/// of an op, declared once per op in `OpKind.traits` (one exhaustive switch:
/// a new op does not compile until it says all of this). Code that needs a
/// per-op fact reads it here instead of listing ops.
public struct OpTraits: Sendable {
  /// How many inputs the kernel takes (absent optional inputs count, as -1).
  public var inputs: ClosedRange<Int>
  /// How many outputs it makes.
  public var outputs: ClosedRange<Int> = 1...1
  /// Input slots that hold parameters (weights, bias, statistics, a lookup
  /// table): constants in a converted model.
  public var weightSlots: InputSlots = .none
  /// Input slots that hold integer indices (never quantized).
  public var indexSlots: InputSlots = .none
  /// Output 0 may share input 0's buffer (the planner's in-place reuse):
  /// the kernel is correct when the two pointers are equal.
  public var inPlace = false
  /// The float32 kernel reads the `activation` attribute and applies it
  /// (ActivationFusion fuses a following Relu / Relu6 into it).
  public var fusedActivation = false
  /// The fused activation this op is, when ActivationFusion may fold it
  /// into the op before it (Relu, Relu6).
  public var asFusedActivation: Activation? = nil
  /// Whether it has an integer kernel that computes with quantization
  /// parameters (its int8 outputs then need parameters from the file).
  public var int8: Int8Kernel = .none
  /// int8-dynamic and int4 rewrite it into the hybrid FullyConnected
  /// kernel (int8 / int4 weights, float activations) when its weights are
  /// constant.
  public var hybrid = false
  /// Weight slots that the fp16 mode stores as float16 (when constant float32).
  public var fp16Slots: InputSlots = .none
  /// Weights packed once at load for the GEMM micro-kernel.
  public var prepack: Prepack = .none
  /// How the int8-static rewrite treats it (nil: the op stays float32).
  public var staticInt8: StaticInt8Kind? = nil
  /// Its output values are input values moved (no arithmetic): not counted
  /// as a layer in the int8-static report.
  public var movesData = false
  /// What the load-time passes may rewrite around it.
  public var family: OpFamily = .compute
  /// Why int8-static may destroy a model through it: the quantizer keeps the
  /// ops concerned in float32 by default (Quantization/Sensitivity.swift).
  public var int8Risk: Int8Risk = .none
  /// Whether it reads or writes the session's variables (Runtime/Variables.swift):
  /// never folded at load nor merged with another op; a writer is never removed.
  public var state: StateAccess = .none
  /// It runs subgraphs (If, While; Runtime/ControlFlow.swift): its output
  /// types come from their signatures; never folded at load.
  public var subgraphs = false
}

/// The float-sensitive facts of an op (docs/quantization.md, "Kept in float32").
public enum Int8Risk: Sendable, Equatable {
  case none
  /// Attention-mask arithmetic flows through it (Add, Sub, Mul, Softmax, ...):
  /// it stays float32 when a tensor it reads or makes has a range set by a
  /// mask or padding constant (-1e4, -1e9) while its other values lie within
  /// an int8 step of zero.
  case maskedRange
  /// Its constant weights may be applied again to a value they produced (an
  /// unrolled recurrence: FullyConnected, MatMul, Conv2D): then the ops from
  /// one use to the next (the recurrent state's update) stay float32, as int8
  /// error compounds step after step.
  case sharedWeights
  /// It magnifies small values (Log): every op upstream of its input stays
  /// float32, back to the graph inputs or to an op of fixed output range
  /// (Softmax, Logistic, Tanh; kept in float32 too, its input not followed).
  case smallValues
  /// It takes the square root of what it reads (Sqrt): when that is a sum of
  /// two squares (a spectrogram's magnitude from an STFT's real and
  /// imaginary parts), the squares and their sum stay float32 (one int8 scale
  /// for a power spectrum erases its quiet bins, which the root magnifies).
  case magnitude
}

/// An op's access to the session's variables.
public enum StateAccess: Sendable, Equatable {
  case none
  /// Reads a variable (ReadVariable).
  case reads
  /// Writes a variable (AssignVariable): kept even when nothing reads its output.
  case writes
}

/// A set of input slots (0...31), bit i for slot i.
public struct InputSlots: Sendable, Equatable {
  public var mask: UInt32
  public init(mask: UInt32) { self.mask = mask }
  public static let none = InputSlots(mask: 0)
  /// The given slots (fixed arguments: no array in the table).
  public static func slots(_ a: Int, _ b: Int = -1, _ c: Int = -1, _ d: Int = -1) -> InputSlots {
    func bit(_ s: Int) -> UInt32 { s >= 0 && s < 32 ? (1 as UInt32) &<< UInt32(truncatingIfNeeded: s) : 0 }
    return InputSlots(mask: bit(a) | bit(b) | bit(c) | bit(d))
  }
  public func contains(_ slot: Int) -> Bool {
    slot >= 0 && slot < 32 && (mask &>> UInt32(truncatingIfNeeded: slot)) & 1 != 0
  }
  public var isEmpty: Bool { mask == 0 }
}

public enum Int8Kernel: Sendable, Equatable {
  /// None: int8 input is refused by the kernel, or moved as raw bytes.
  case none
  /// An integer kernel when input 0 is int8.
  case always
  /// An integer kernel when input 0 is int8 with quantization parameters; a
  /// raw copy of int8 data without them (Concat).
  case withParams
  /// Quantize: its integer output needs parameters whatever its input.
  case quantize
}

public enum Prepack: Sendable, Equatable {
  case none
  /// Constant float32 weights [Cout, KH, KW, Cin] with one group.
  case conv2D
  /// Constant float32 weights [N, K] (plain weight format).
  case fullyConnected
}

/// The int8-static rewrite's treatment (Quantization/StaticInt8Pass.swift).
public enum StaticInt8Kind: Sendable, Equatable {
  /// Weights int8 per channel, bias int32 (MatMul with a constant b becomes FullyConnected).
  case weighted
  /// Output parameters from calibration.
  case calibrated
  /// Output parameters fixed by the TFLite int8 spec.
  case fixed(scale: Float, zeroPoint: Int32)
  /// Output parameters equal the input's; runs in int8 only when its input is int8 already.
  case sameParams
  /// Inputs requantized to the calibrated output parameters.
  case concat
  /// Output parameters equal those of its int8 activation input(s), which
  /// must share them; a constant operand is quantized with them
  /// (saturating where that changes no result: Maximum of a constant below
  /// the range, Minimum above; otherwise the op stays float32). Runs in int8
  /// only when its activation is int8 already (Maximum, Minimum: TFLite's
  /// int8 kernels compare raw values).
  case commonParams
}

/// The load-time passes' view of an op.
public enum OpFamily: Sendable, Equatable {
  /// Computes new values.
  case compute
  /// Output is input 0 with another shape (Reshape, Squeeze, ExpandDims):
  /// an identity when the shapes are equal; a Reshape of one reads its input.
  case reshape
  /// Transpose: an identity for the identity permutation.
  case transpose
  /// A convolution with constant weights and a per-output-channel bias:
  /// BatchNorm folds into it; `channelLast`: the weights' output channel is
  /// their last dim (DepthwiseConv2D), else the first. `pads`: it has an
  /// explicit `pads` attribute a zero Pad may fold into.
  case linear(channelLast: Bool, pads: Bool)
}

extension OpKind {
  /// Everything the core asks of this op. docs/architecture.md, "Adding an op".
  public var traits: OpTraits {
    switch self {
    case .fullyConnected:
      return OpTraits(
        inputs: 2...3, weightSlots: .slots(1, 2), fusedActivation: true, int8: .always, hybrid: true,
        fp16Slots: .slots(1), prepack: .fullyConnected, staticInt8: .weighted, family: .linear(channelLast: false, pads: false),
        int8Risk: .sharedWeights)
    case .matMul:
      return OpTraits(inputs: 2...2, hybrid: true, fp16Slots: .slots(0, 1), staticInt8: .weighted, int8Risk: .sharedWeights)
    case .conv2D:
      return OpTraits(
        inputs: 2...3, weightSlots: .slots(1, 2), fusedActivation: true, int8: .always, fp16Slots: .slots(1),
        prepack: .conv2D, staticInt8: .weighted, family: .linear(channelLast: false, pads: true), int8Risk: .sharedWeights)
    case .depthwiseConv2D:
      return OpTraits(
        inputs: 2...3, weightSlots: .slots(1, 2), fusedActivation: true, int8: .always, fp16Slots: .slots(1),
        staticInt8: .weighted, family: .linear(channelLast: true, pads: true))
    case .transposeConv2D:
      // Weights [Cout,KH,KW,Cin]: the output channel is the first dim, as
      // for Conv2D. Its `pads` crop the output (not padding of the input):
      // a Pad before it does not fold into them.
      return OpTraits(
        inputs: 2...3, weightSlots: .slots(1, 2), fusedActivation: true, int8: .always, fp16Slots: .slots(1),
        staticInt8: .weighted, family: .linear(channelLast: false, pads: false))
    case .maxPool2D, .averagePool2D:
      return OpTraits(inputs: 1...1, fusedActivation: true, int8: .always, staticInt8: .sameParams)
    case .mean:
      return OpTraits(inputs: 1...1, int8: .always, staticInt8: .calibrated, int8Risk: .maskedRange)
    case .reduceMax:
      return OpTraits(inputs: 1...1, int8: .always, staticInt8: .sameParams)
    case .add, .sub, .mul:
      return OpTraits(
        inputs: 2...2, inPlace: true, fusedActivation: true, int8: .always, staticInt8: .calibrated, int8Risk: .maskedRange)
    case .div:
      return OpTraits(inputs: 2...2, inPlace: true, fusedActivation: true)
    case .maximum, .minimum:
      return OpTraits(inputs: 2...2, inPlace: true, int8: .always, staticInt8: .commonParams)
    case .prelu:
      return OpTraits(inputs: 2...2, weightSlots: .slots(1), inPlace: true, int8: .always, staticInt8: .calibrated)
    case .relu:
      return OpTraits(inputs: 1...1, inPlace: true, asFusedActivation: .relu, int8: .always, staticInt8: .calibrated)
    case .relu6:
      return OpTraits(inputs: 1...1, inPlace: true, asFusedActivation: .relu6, int8: .always, staticInt8: .calibrated)
    case .leakyRelu, .hardSwish:
      return OpTraits(inputs: 1...1, inPlace: true, int8: .always, staticInt8: .calibrated)
    case .logistic:
      return OpTraits(inputs: 1...1, inPlace: true, int8: .always, staticInt8: .fixed(scale: 1.0 / 256, zeroPoint: -128))
    case .tanh:
      return OpTraits(inputs: 1...1, inPlace: true, int8: .always, staticInt8: .fixed(scale: 1.0 / 128, zeroPoint: 0))
    case .log:
      return OpTraits(inputs: 1...1, inPlace: true, int8Risk: .smallValues)
    case .gelu, .exp, .rsqrt:
      return OpTraits(inputs: 1...1, inPlace: true)
    case .sqrt:
      return OpTraits(inputs: 1...1, inPlace: true, int8Risk: .magnitude)
    case .softmax:
      return OpTraits(
        inputs: 1...1, int8: .always, staticInt8: .fixed(scale: 1.0 / 256, zeroPoint: -128), int8Risk: .maskedRange)
    case .logSoftmax:
      return OpTraits(inputs: 1...1)
    case .layerNorm:
      return OpTraits(inputs: 2...3, weightSlots: .slots(1, 2))
    case .batchNorm:
      return OpTraits(inputs: 5...5, weightSlots: .slots(1, 2, 3, 4), inPlace: true)
    case .reshape, .squeeze, .expandDims:
      return OpTraits(inputs: 1...1, inPlace: true, staticInt8: .sameParams, movesData: true, family: .reshape)
    case .transpose:
      return OpTraits(inputs: 1...1, staticInt8: .sameParams, movesData: true, family: .transpose)
    case .concat:
      return OpTraits(inputs: 1...(1 << 16), int8: .withParams, staticInt8: .concat, int8Risk: .maskedRange)
    case .split:
      return OpTraits(inputs: 1...1, outputs: 1...(1 << 16), staticInt8: .sameParams, movesData: true)
    case .slice, .stridedSlice, .pad, .depthToSpace, .spaceToDepth:
      return OpTraits(inputs: 1...1, staticInt8: .sameParams, movesData: true)
    case .gather:
      return OpTraits(inputs: 2...2, indexSlots: .slots(1), staticInt8: .sameParams, movesData: true)
    case .resizeBilinear:
      return OpTraits(inputs: 1...1, int8: .always, staticInt8: .sameParams)
    case .resizeNearest:
      return OpTraits(inputs: 1...1, staticInt8: .sameParams, movesData: true)
    case .quantize:
      return OpTraits(inputs: 1...1, int8: .quantize)
    case .dequantize:
      return OpTraits(inputs: 1...1)
    case .equal, .notEqual, .less, .lessEqual, .greater, .greaterEqual, .logicalAnd, .logicalOr, .logicalXor:
      return OpTraits(inputs: 2...2)
    case .logicalNot, .floor, .ceil, .round, .erf:
      return OpTraits(inputs: 1...1, inPlace: true)
    case .select:
      return OpTraits(inputs: 3...3)
    case .cast, .shape, .reduceMin, .reduceProd, .reduceSum:
      return OpTraits(inputs: 1...1)
    case .expand, .tile:
      return OpTraits(inputs: 1...1, staticInt8: .sameParams, movesData: true)
    case .range:
      return OpTraits(inputs: 0...0)
    case .lstm:
      // Stays float32 in int8-static (the recurrent state is float-sensitive).
      return OpTraits(inputs: 3...8, outputs: 1...3, weightSlots: .slots(1, 2, 3, 6), fp16Slots: .slots(1, 2))
    case .gru:
      return OpTraits(inputs: 3...6, outputs: 1...2, weightSlots: .slots(1, 2, 3), fp16Slots: .slots(1, 2))
    case .readVariable:
      return OpTraits(inputs: 1...1, state: .reads)
    case .assignVariable:
      return OpTraits(inputs: 2...2, state: .writes)
    case .ifThenElse:
      return OpTraits(inputs: 1...(1 << 16), outputs: 1...(1 << 16), subgraphs: true)
    case .whileLoop:
      return OpTraits(inputs: 1...(1 << 16), outputs: 1...(1 << 16), subgraphs: true)
    case .dynamicUpdateSlice:
      // The output over the operand when the operand dies here: only the update's elements move.
      return OpTraits(inputs: 3...3, indexSlots: .slots(2), inPlace: true, movesData: true)
    }
  }
}
